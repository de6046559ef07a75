"""The CPU path: length-bucketed packed attention, the fused oneDNN linear, CPU feature detection, and the exact
mode's fidelity bound on real text (min cosine >= 0.99999 against sentence-transformers fp32)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastbert import cpu, ops

from cpu_texts import encode_fastbert, real_text_reference


def _attention_per_sequence(q, k, v, cu):
    out = torch.full_like(q, float("nan"))
    for start, end in zip(cu[:-1], cu[1:]):
        if end > start:
            qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # [h, L, D]
            out[start:end] = F.scaled_dot_product_attention(qs, ks, vs).transpose(0, 1)
    return out


@pytest.mark.parametrize("lengths", [[1], [7, 7, 7], [129, 1, 0, 7, 64, 63, 511], [0, 5, 0], [3, 200, 2, 90, 91]])
def test_packed_attention_matches_per_sequence(lengths, seed):
    heads, dim = 3, 16
    cu = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    total = cu[-1]
    q, k, v = (torch.randn(total, heads, dim) for _ in range(3))
    cu_seqlens = torch.tensor(cu, dtype=torch.int32)
    layout = ops.AttentionLayout(batch=len(lengths), seqlen=max(lengths), cu_seqlens=cu_seqlens)
    out = ops.attention(q, k, v, layout, backend="torch")
    ref = _attention_per_sequence(q, k, v, cu)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("lengths", [[5], [256, 9, 9, 9, 9], [100, 90, 80, 10, 9, 1, 0, 3], list(range(40))])
def test_length_buckets_cover_each_sequence_once_within_the_waste_bound(lengths):
    buckets = ops._length_buckets(lengths)
    members = sorted(i for b in buckets for i in b)
    assert members == [i for i, n in enumerate(lengths) if n > 0]
    for b in buckets:
        top = lengths[b[0]]
        assert all(lengths[i] <= top for i in b)
        if len(b) > 1:
            assert len(b) * top * top <= ops.BUCKET_WASTE * sum(lengths[i] ** 2 for i in b)


@pytest.mark.parametrize("rows", [1, 7, 129])
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh", "relu"])
def test_onednn_linear_matches_reference(rows, activation, seed):
    if not ops._onednn_dtypes():
        pytest.skip("this PyTorch build has no oneDNN")
    x, w, b = torch.randn(rows, 96), torch.randn(160, 96) / 10, torch.randn(160)
    assert ops._onednn_linear_ok(x, w)
    out = ops.linear(x, w, b, activation)
    ref = ops._activate(F.linear(x.double(), w.double(), b.double()), activation).float()
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


def test_onednn_linear_stays_out_of_autograd():
    x, w = torch.randn(4, 8), torch.randn(6, 8, requires_grad=True)
    assert not ops._onednn_linear_ok(x, w)
    ops.linear(x, w, None, "gelu").sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_cpu_features_read_proc_cpuinfo():
    feats = cpu.cpu_features()
    assert feats["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        flags = set()
    assert feats["flags"] == [f for f in cpu.FLAGS if f in flags]
    assert feats["amx_bf16"] == ("amx_bf16" in flags and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_reduced_precision_choice_follows_amx(monkeypatch):
    monkeypatch.setattr(cpu, "has_amx_bf16", lambda: True)
    assert cpu.reduced_precision_choice() == "bfloat16"
    monkeypatch.setattr(cpu, "has_amx_bf16", lambda: False)
    assert cpu.reduced_precision_choice() is None


def test_exact_mode_on_real_text(minilm_path):
    """Default mode, the CPU path: min cosine >= 0.99999 against sentence-transformers fp32 on real paragraphs."""
    texts, ref = real_text_reference()
    out = encode_fastbert(minilm_path, texts, mode=None)
    cos = (out.astype(np.float64) * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99999, f"min cosine {cos.min():.7f} at text {int(cos.argmin())}"
