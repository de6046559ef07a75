"""The CPU path: length-bucketed packed attention and row layout, the fused oneDNN linears, CPU feature
detection, and the exact mode's fidelity bound on real text (min cosine >= 0.99999 against
sentence-transformers fp32)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastbert.encoder import ops
from fastbert.encoder.backends import cpu_features as cpu
from fastbert.encoder.backends import torch_ops
from fastbert.encoder.layout import BUCKET_WASTE, length_buckets

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
    buckets = length_buckets(lengths)
    members = sorted(i for b in buckets for i in b)
    assert members == [i for i, n in enumerate(lengths) if n > 0]
    for b in buckets:
        top = lengths[b[0]]
        assert all(lengths[i] <= top for i in b)
        if len(b) > 1:
            assert len(b) * top * top <= BUCKET_WASTE * sum(lengths[i] ** 2 for i in b)


@pytest.mark.parametrize("lengths", [[1], [7, 7, 7], [129, 1, 0, 7, 64, 63, 511], [0, 5, 0], [3, 200, 2, 90, 91]])
def test_bucketed_layout_runs_attention_like_per_sequence(lengths, seed):
    """packed_layout on the torch backend: rows are buckets of padded sequences; gathering the packed tokens into
    those rows, attending, and reading the tokens back gives per-sequence attention, and the padding rows read
    real tokens (finite)."""
    heads, dim = 3, 16
    cu = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    cu_seqlens = torch.tensor(cu, dtype=torch.int32)
    layout = ops.packed_layout(len(lengths), max(lengths), cu_seqlens, "torch")
    assert layout.buckets is not None and ops.packed_layout(2, 5, cu_seqlens, "triton").buckets is None
    assert layout.slots.shape[0] == sum(b.count * b.span for b in layout.buckets)
    assert sorted(layout.token_rows.tolist()) == sorted(set(layout.token_rows.tolist()))  # distinct rows
    assert torch.equal(layout.slots[layout.token_rows], torch.arange(cu[-1]))  # token t sits in a row reading t
    q, k, v = (torch.randn(cu[-1], heads, dim) for _ in range(3))
    rows = [t.index_select(0, layout.slots) for t in (q, k, v)]  # [N, heads, dim]
    out = layout.tokens(ops.attention(*rows, layout, backend="torch"))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, _attention_per_sequence(q, k, v, cu), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("rows", [1, 7, 129])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_residual_layernorm_matches_reference(rows, dtype, seed):
    """The fused GEMM + bias + residual (+ LayerNorm) against float64; bfloat16 within 1.5x the error of the
    unfused bf16 ops (each rounding to bf16) against the same float64 reference."""
    x, w, b, res = torch.randn(rows, 96), torch.randn(160, 96) / 10, torch.randn(160), torch.randn(rows, 160)
    lw, lb = torch.rand(160) + 0.5, torch.randn(160)
    ref = F.layer_norm(F.linear(x.double(), w.double(), b.double()) + res.double(), (160,), lw.double(),
                       lb.double(), 1e-12)
    args = [t.to(dtype) for t in (x, w, b, res, lw, lb)]
    out = ops.linear_residual_layernorm(*args[:4], args[4], args[5], 1e-12)
    assert out.dtype == dtype
    if dtype == torch.float32:
        torch.testing.assert_close(out.double(), ref, atol=2e-5, rtol=1e-5)
    else:
        xb, wb, bb, rb, lwb, lbb = args
        unfused = F.layer_norm(F.linear(xb, wb) + bb + rb, (160,), lwb, lbb, 1e-12)
        err = (out.double() - ref).abs().max()
        assert err <= 1.5 * (unfused.double() - ref).abs().max(), float(err)


@pytest.mark.parametrize("rows", [1, 7, 129])
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh", "relu"])
def test_onednn_linear_matches_reference(rows, activation, seed):
    if not torch_ops._onednn_dtypes():
        pytest.skip("this PyTorch build has no oneDNN")
    x, w, b = torch.randn(rows, 96), torch.randn(160, 96) / 10, torch.randn(160)
    assert torch_ops._onednn_linear_ok(x, w)
    out = ops.linear(x, w, b, activation)
    ref = torch_ops._activate(F.linear(x.double(), w.double(), b.double()), activation).float()
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)


def test_onednn_linear_stays_out_of_autograd():
    x, w = torch.randn(4, 8), torch.randn(6, 8, requires_grad=True)
    assert not torch_ops._onednn_linear_ok(x, w)
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


@pytest.mark.parametrize("cap, allowed", [(None, True), ("ALL", True), ("avx512_core_amx", True),
                                         ("AVX10_1_512_AMX_FP16", True), ("AVX512_CORE_BF16", False),
                                         ("avx2_vnni", False), ("AVX512_CORE", False)])
def test_auto_respects_onednn_isa_cap(monkeypatch, cap, allowed):
    """``ONEDNN_MAX_CPU_ISA`` below AMX makes an AMX CPU choose as one without AMX (oneDNN would not use the tiles)."""
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert cpu.has_amx_bf16() is allowed
    assert cpu.reduced_precision_choice() == ("bfloat16" if allowed else None)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert cpu.reduced_precision_choice() is None  # no tiles: float32 whatever the cap


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
