"""fastbert.kernels.disentangled (DeBERTa's attention) against its ``*_ref``, through the Triton interpreter on CPU (or
on CUDA if present), with the conventions of ``tests/test_kernels.py``: fresh random inputs, outputs poisoned with
NaN, awkward sizes, fp32 at 1e-5 and fp16 held to 1.5 x the same-dtype baseline's error. The position tables and
``rows_of`` are random here (any row for any distance, large values), so a wrong row, table or sign shows; the
model's own tables are checked end to end in ``tests/test_deberta.py``. bf16 is left to ``tests/test_kernels_gpu.py``
territory (the interpreter's bf16 ``tl.dot`` is broken).
"""
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from test_kernels import DEVICE, _key_mask, _PoisonedTorch, _qkv, err, lowp_bound  # noqa: E402

from fastbert.kernels import disentangled as dis  # noqa: E402

TERMS = {"c2p+p2c": (True, True), "c2p": (True, False), "p2c": (False, True), "none": (False, False)}


@pytest.fixture
def poisoned(monkeypatch):
    monkeypatch.setattr(dis, "torch", _PoisonedTorch())


def _tables(heads, tokens, rows, width, dtype, terms):
    """Random c2p / p2c ``[heads, tokens, rows]`` (None where the term is off) and ``rows_of`` ``[2 width + 1]``."""
    c2p_on, p2c_on = TERMS[terms]
    c2p = (torch.randn(heads, tokens, rows, device=DEVICE) * 4).to(dtype) if c2p_on else None
    p2c = (torch.randn(heads, tokens, rows, device=DEVICE) * 4).to(dtype) if p2c_on else None
    rows_of = torch.randint(0, rows, (2 * width + 1,), device=DEVICE)
    return c2p, p2c, rows_of


def _check(out, q, check_ref):
    assert out.shape == q.shape and out.dtype == q.dtype and out.is_contiguous()
    assert torch.isfinite(out).all(), "non-finite (or unwritten) output"
    ref = check_ref(upcast=True)
    if q.dtype == torch.float32:
        assert err(out, ref) <= 1e-5 * max(1.0, ref.abs().max().item())
    else:
        base = check_ref(upcast=False)
        assert err(out, ref) <= lowp_bound(err(base, ref), ref, q.dtype), (err(out, ref), err(base, ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes", "fully_masked_row"])
@pytest.mark.parametrize("seqlen,head_dim,terms", [(1, 32, "c2p+p2c"), (7, 64, "c2p+p2c"), (129, 64, "c2p+p2c"),
                                                   (20, 48, "c2p"), (20, 48, "p2c"), (7, 16, "none")])
def test_padded(poisoned, seed, seqlen, head_dim, terms, mask_kind, dtype):
    """Padding queries (left padding, holes, trailing padding, a sequence of padding only) attend to all S rows with
    equal weight, as transformers' DeBERTa; real queries to their real keys."""
    batch, heads = 2, 3
    q, k, v = _qkv(batch, seqlen, heads, head_dim, dtype, scale=2.0)
    key_mask = _key_mask(mask_kind, batch, seqlen)
    c2p, p2c, rows_of = _tables(heads, batch * seqlen, 11, seqlen - 1 + (seqlen % 3), dtype, terms)
    scale = 1 / (3 * head_dim) ** 0.5
    out = dis.disentangled_attention(q, k, v, key_mask, c2p, p2c, rows_of, scale)
    _check(out, q, lambda upcast: dis.disentangled_attention_ref(q, k, v, key_mask, c2p, p2c, rows_of, scale,
                                                                 upcast=upcast))
    if key_mask is not None and not key_mask[0].any():  # nothing real: the plain mean of the values
        assert err(out[0], v[0].float().mean(0, keepdim=True).expand_as(out[0])) <= 2e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("lengths,head_dim,terms", [([1], 32, "c2p+p2c"), ([7, 0, 129, 1], 64, "c2p+p2c"),
                                                    ([33, 5], 48, "p2c"), ([20, 9], 32, "c2p")])
def test_varlen(poisoned, seed, lengths, head_dim, terms, dtype):
    """Packed sequences whose columns skip (holes packed out keep their distances): columns read per token."""
    heads, total = 2, sum(lengths)
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    q, k, v = (torch.randn(total, 3, heads, head_dim, device=DEVICE).mul(2).to(dtype)).unbind(1)
    columns = torch.cat([torch.sort(torch.randperm(2 * n + 1)[:n]).values for n in lengths]).to(DEVICE)
    width = int(columns.max()) if total else 0
    c2p, p2c, rows_of = _tables(heads, total, 13, width, dtype, terms)
    max_seqlen = max(lengths) + 3  # a loose bound
    out = dis.disentangled_attention_varlen(q, k, v, cu_seqlens, max_seqlen, columns, c2p, p2c, rows_of, 0.2)
    _check(out, q, lambda upcast: dis.disentangled_attention_varlen_ref(
        q, k, v, cu_seqlens, max_seqlen, columns, c2p, p2c, rows_of, 0.2, upcast=upcast))


def test_padded_and_packed_agree(seed):
    """The same right-padded sequences through both layouts give the same real-token outputs."""
    lengths, seqlen, heads, head_dim = [5, 17, 1], 17, 2, 32
    q, k, v = _qkv(len(lengths), seqlen, heads, head_dim, torch.float32)
    key_mask = torch.arange(seqlen, device=DEVICE)[None, :] < torch.tensor(lengths, device=DEVICE)[:, None]
    c2p, p2c, rows_of = _tables(heads, len(lengths) * seqlen, 7, seqlen - 1, torch.float32, "c2p+p2c")
    padded = dis.disentangled_attention(q, k, v, key_mask, c2p, p2c, rows_of, 0.3)
    flat = key_mask.flatten()
    cu_seqlens = torch.tensor([0, 5, 22, 23], dtype=torch.int32, device=DEVICE)
    columns = torch.cat([torch.arange(n) for n in lengths]).to(DEVICE)
    packed = dis.disentangled_attention_varlen(q[key_mask], k[key_mask], v[key_mask], cu_seqlens, seqlen, columns,
                                               c2p[:, flat], p2c[:, flat], rows_of, 0.3)
    assert err(packed, padded[key_mask]) <= 1e-6


def test_position_scores(seed):
    q = torch.randn(9, 3, 2, 16, device=DEVICE)[:, 0]  # a strided view, as q is in the fused projection
    pos = torch.randn(5, 2, 16, device=DEVICE)
    assert err(dis.position_scores(q, pos), torch.einsum("nhd,rhd->hnr", q, pos)) <= 1e-5


def test_rejects_bad_input():
    q, k, v = _qkv(2, 4, 2, 16, torch.float32)
    c2p, p2c, rows_of = _tables(2, 8, 5, 3, torch.float32, "c2p+p2c")
    with pytest.raises(ValueError, match=r"c2p must be a float \[heads=2, tokens=8, R\]"):
        dis.disentangled_attention(q, k, v, None, c2p[:, :7], p2c, rows_of, 1.0)
    with pytest.raises(ValueError, match="c2p and p2c must have one shape"):
        dis.disentangled_attention(q, k, v, None, c2p, p2c[..., :4], rows_of, 1.0)
    with pytest.raises(ValueError, match="rows_of covers distances up to 2, but the sequences reach 3"):
        dis.disentangled_attention(q, k, v, None, c2p, p2c, rows_of[1:-1], 1.0)
    with pytest.raises(ValueError, match=r"rows_of must be an integer \[2W \+ 1\]"):
        dis.disentangled_attention(q, k, v, None, c2p, p2c, None, 1.0)
    with pytest.raises(ValueError, match=r"key_mask must be a \[2, 4\] bool"):
        dis.disentangled_attention(q, k, v, torch.ones(2, 4, device=DEVICE), c2p, p2c, rows_of, 1.0)
    cu = torch.tensor([0, 4], dtype=torch.int32, device=DEVICE)
    with pytest.raises(ValueError, match=r"columns must be an integer \[4\]"):
        dis.disentangled_attention_varlen(q[0], k[0], v[0], cu, 4, torch.zeros(4, device=DEVICE), c2p[:, :4],
                                          None, rows_of, 1.0)
    with pytest.raises(ValueError, match="int32"):
        dis.disentangled_attention_varlen(q[0], k[0], v[0], cu.long(), 4, torch.arange(4, device=DEVICE),
                                          c2p[:, :4], None, rows_of, 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["left", "packed"])
def test_real_sizes_gpu(seed, layout, dtype):
    """DeBERTa-v3-base's attention (12 heads, D=64, 256 position buckets: 512 relative rows) on sequences up to 512,
    bf16 included (the interpreter cannot test bf16 dots); the tables are the model's kind (position_scores of q and
    k with random Qr, Kr; rows_of from the real bucket function). Not run yet: no GPU has been available."""
    from fastbert.encoder.families import Disentangled
    from fastbert.encoder.position_bias import deberta_rows

    lengths, heads, head_dim = [512, 300, 77, 1], 12, 64
    spec = Disentangled(span=256, buckets=256, max_position=512, c2p=True, p2c=True, norm=True)
    rows_of = deberta_rows(511, spec).to(DEVICE)
    rows_of = rows_of - rows_of[0]
    pos_q, pos_k = (torch.randn(int(rows_of[-1]) + 1, heads, head_dim, device=DEVICE).to(dtype) for _ in range(2))
    scale = 1 / (3 * head_dim) ** 0.5
    if layout == "left":
        q, k, v = _qkv(len(lengths), 512, heads, head_dim, dtype)
        key_mask = torch.arange(512, device=DEVICE)[None, :] >= 512 - torch.tensor(lengths, device=DEVICE)[:, None]
        c2p, p2c = dis.position_scores(q.flatten(0, 1), pos_k), dis.position_scores(k.flatten(0, 1), pos_q)
        out = dis.disentangled_attention(q, k, v, key_mask, c2p, p2c, rows_of, scale)
        _check(out, q, lambda upcast: dis.disentangled_attention_ref(q, k, v, key_mask, c2p, p2c, rows_of, scale,
                                                                     upcast=upcast))
    else:
        total = sum(lengths)
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
        q, k, v = torch.randn(total, 3, heads, head_dim, device=DEVICE).to(dtype).unbind(1)
        columns = torch.cat([torch.arange(n) for n in lengths]).to(DEVICE)
        c2p, p2c = dis.position_scores(q, pos_k), dis.position_scores(k, pos_q)
        out = dis.disentangled_attention_varlen(q, k, v, cu, 512, columns, c2p, p2c, rows_of, scale)
        _check(out, q, lambda upcast: dis.disentangled_attention_varlen_ref(q, k, v, cu, 512, columns, c2p, p2c,
                                                                            rows_of, scale, upcast=upcast))
