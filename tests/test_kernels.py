"""fastbert.kernels against their ``*_ref`` references, on CPU through the Triton interpreter (or on CUDA if present).

Every case draws fresh random inputs, poisons the kernel's output buffer with NaN (the launchers allocate through
``torch.empty``; the ``poisoned`` fixture makes that return NaN-filled memory), and uses awkward sizes. Low-precision
results are held to the *reference's own* error: err(kernel vs fp32/fp64 reference) <= 1.5 x err(eager PyTorch in
the same dtype vs that reference), plus half an ulp of the output's magnitude.
bf16 is exercised only for dot-free kernels on CPU (the interpreter's bf16 ``tl.dot`` is broken, triton #11584);
``tests/test_kernels_gpu.py`` covers bf16 attention and GEMM on a GPU.
"""
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fastbert.kernels import attention as attn  # noqa: E402
from fastbert.kernels import embedding as emb  # noqa: E402
from fastbert.kernels import gemm  # noqa: E402
from fastbert.kernels import layernorm as ln  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
K_LOWP = 1.5  # low-precision error may be at most this multiple of eager PyTorch's error in the same dtype


class _PoisonedTorch:
    """Stands in for ``torch`` inside a kernel module: ``empty`` returns NaN-filled (or -1 for integer) memory."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def empty(*args, **kwargs):
        t = torch.empty(*args, **kwargs)
        return t.fill_(float("nan") if t.dtype.is_floating_point else -1)


@pytest.fixture
def poisoned(monkeypatch):
    for module in (attn, emb, gemm, ln):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())


def lowp_bound(ref_err: float, ref: torch.Tensor, dtype: torch.dtype, ulps: float = 0.5) -> float:
    """K_LOWP x the same-dtype baseline's error, plus ``ulps`` units in the last place of max |ref|."""
    return K_LOWP * ref_err + ulps * torch.finfo(dtype).eps * max(1.0, ref.abs().max().item())


def err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------

def _qkv(batch, seqlen, heads, head_dim, dtype, scale=1.0):
    """Views into one fused projection [B, S, 3, heads, D], as the model passes them (token stride 3 * H)."""
    qkv = (torch.randn(batch, seqlen, 3, heads, head_dim, device=DEVICE) * scale).to(dtype)
    return qkv.unbind(2)


def _key_mask(kind, batch, seqlen):
    if kind == "none":
        return None
    m = torch.ones(batch, seqlen, dtype=torch.bool, device=DEVICE)
    lengths = torch.randint(1, seqlen + 1, (batch,)).tolist()
    for i, n in enumerate(lengths):
        if kind == "right":
            m[i, n:] = False
        elif kind == "left":
            m[i, : seqlen - n] = False
    if kind == "right":
        m[0, max(1, seqlen // 3):] = False  # at least one sequence padded whenever S > 1
    elif kind == "left":
        m[0, : seqlen - max(1, seqlen // 3)] = False
    elif kind == "holes":
        m = torch.rand(batch, seqlen, device=DEVICE) > 0.4
        m[:, 0] = True
    elif kind == "fully_masked_row":
        m[0] = False
    return m


def _check_attention(out, q, k, v, check_ref):
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
@pytest.mark.parametrize("seqlen,head_dim", [(1, 32), (7, 64), (129, 64), (40, 128), (20, 48)])
def test_attention_padded(poisoned, seed, seqlen, head_dim, mask_kind, dtype):
    q, k, v = _qkv(2, seqlen, 2, head_dim, dtype, scale=2.0)
    key_mask = _key_mask(mask_kind, 2, seqlen)
    out = attn.attention(q, k, v, key_mask)
    _check_attention(out, q, k, v, lambda upcast: attn.attention_ref(q, k, v, key_mask, upcast=upcast))
    if key_mask is not None:
        for i in range(2):  # contract: no valid key, or past the last one -> exactly zero
            real = key_mask[i].nonzero()
            end = int(real.max()) + 1 if real.numel() else 0
            assert (out[i, end:] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_attention_right_padding_is_never_read(poisoned, seed, dtype):
    """Keys/values/queries past each sequence's length are skipped, not masked: NaN there must not reach the output."""
    batch, seqlen, heads, head_dim = 3, 129, 2, 64
    q, k, v = _qkv(batch, seqlen, heads, head_dim, dtype)
    lengths = [129, 70, 3]
    key_mask = torch.arange(seqlen, device=DEVICE)[None, :] < torch.tensor(lengths, device=DEVICE)[:, None]
    clean = [t.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t[~key_mask] = float("nan")  # writes through the views into the shared projection
    out = attn.attention(q, k, v, key_mask)
    assert torch.isfinite(out).all()
    ref = attn.attention_ref(*clean, key_mask)
    bound = 1e-5 if dtype == torch.float32 else 4e-3
    assert err(out, ref) <= bound * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("lengths,head_dim", [([1], 32), ([7, 0, 129, 1], 64), ([33, 64, 5], 128)])
def test_attention_varlen(poisoned, seed, lengths, head_dim, dtype):
    heads = 2
    total = sum(lengths)
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    qkv = torch.randn(total, 3, heads, head_dim, device=DEVICE).mul(2).to(dtype)  # [T, 3, heads, D]
    q, k, v = qkv.unbind(1)
    max_seqlen = max(lengths) + 3  # a loose bound, as the padded length is
    out = attn.attention_varlen(q, k, v, cu_seqlens, max_seqlen)
    _check_attention(
        out, q, k, v, lambda upcast: attn.attention_varlen_ref(q, k, v, cu_seqlens, max_seqlen, upcast=upcast)
    )


def test_attention_matches_padded_and_packed(seed):
    """The same sequences through both layouts give the same real-token outputs."""
    lengths = [5, 17, 1]
    batch, seqlen, heads, head_dim = len(lengths), 17, 2, 32
    q, k, v = _qkv(batch, seqlen, heads, head_dim, torch.float32)
    key_mask = torch.arange(seqlen, device=DEVICE)[None, :] < torch.tensor(lengths, device=DEVICE)[:, None]
    padded = attn.attention(q, k, v, key_mask)
    cu_seqlens = torch.tensor([0, 5, 22, 23], dtype=torch.int32, device=DEVICE)
    packed = attn.attention_varlen(q[key_mask], k[key_mask], v[key_mask], cu_seqlens, seqlen)
    assert err(packed, padded[key_mask]) <= 1e-6


def _distance_bias(heads, max_distance=128):
    """A random relative-position bias per clamped distance [heads, 2 * max_distance + 1], large enough to matter."""
    return torch.randn(heads, 2 * max_distance + 1, device=DEVICE) * 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("mask_kind", ["none", "right", "left", "holes"])
@pytest.mark.parametrize("seqlen,head_dim", [(1, 32), (7, 64), (129, 64), (140, 48)])
def test_attention_relative_bias_padded(poisoned, seed, seqlen, head_dim, mask_kind, dtype):
    """MPNet's bias by key - query distance (clamped at 128: 129 and 140 reach it), position = row index."""
    q, k, v = _qkv(2, seqlen, 3, head_dim, dtype, scale=2.0)
    key_mask, bias = _key_mask(mask_kind, 2, seqlen), _distance_bias(3)
    out = attn.attention(q, k, v, key_mask, bias)
    _check_attention(out, q, k, v, lambda upcast: attn.attention_ref(q, k, v, key_mask, upcast=upcast, bias=bias))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("lengths,head_dim", [([1], 32), ([7, 0, 129, 1], 64), ([140, 5], 48)])
def test_attention_relative_bias_varlen(poisoned, seed, lengths, head_dim, dtype):
    """Packed sequences whose positions skip (holes packed out keep their distances): positions read per token."""
    heads, total = 2, sum(lengths)
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    q, k, v = (torch.randn(total, 3, heads, head_dim, device=DEVICE).mul(2).to(dtype)).unbind(1)
    positions = torch.cat([torch.sort(torch.randperm(2 * n + 1)[:n]).values for n in lengths]).to(DEVICE)
    bias = _distance_bias(heads)
    out = attn.attention_varlen(q, k, v, cu_seqlens, max(lengths), bias, positions)
    _check_attention(out, q, k, v, lambda upcast: attn.attention_varlen_ref(
        q, k, v, cu_seqlens, max(lengths), upcast=upcast, bias=bias, positions=positions))


def test_attention_relative_bias_rejects_bad_input():
    q, k, v = _qkv(1, 4, 2, 16, torch.float32)
    with pytest.raises(ValueError, match=r"bias must be a float \[heads=2, 2 \* max_distance \+ 1\]"):
        attn.attention(q, k, v, None, torch.zeros(3, 257, device=DEVICE))
    with pytest.raises(ValueError, match="bias and positions go together"):
        attn.attention_varlen(q[0], k[0], v[0], torch.tensor([0, 4], dtype=torch.int32, device=DEVICE), 4,
                              _distance_bias(2))


def test_attention_rejects_bad_input():
    q, k, v = _qkv(2, 4, 2, 16, torch.float32)
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        attn.attention(q, k, v, torch.ones(2, 5, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="int32"):
        attn.attention_varlen(q[0], k[0], v[0], torch.tensor([0, 4], device=DEVICE), 4)
    with pytest.raises(ValueError, match="dtype"):
        attn.attention(q, k.half(), v, None)


# ----------------------------------------------------------------------------------------------------------------
# GEMM + epilogue
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh", "relu"])
@pytest.mark.parametrize("rows,k,out_features", [(1, 7, 5), (7, 129, 33), (129, 64, 130), (37, 384, 96)])
def test_linear(poisoned, seed, rows, k, out_features, activation, dtype):
    x = torch.randn(rows, k, device=DEVICE).to(dtype)
    weight = (torch.randn(out_features, k, device=DEVICE) / k**0.5).to(dtype)
    bias = torch.randn(out_features, device=DEVICE).to(dtype)
    for b in (bias, None):
        y = gemm.linear(x, weight, b, activation)
        assert y.shape == (rows, out_features) and y.dtype == dtype and torch.isfinite(y).all()
        base = gemm.linear_ref(x, weight, b, activation, upcast=False)  # eager PyTorch in dtype
        if dtype == torch.float32:  # against float64; 1 ulp of slack: at K = 7 both errors are ulp-sized
            ref = gemm.linear_ref(x.double(), weight.double(), b.double() if b is not None else None, activation,
                                  upcast=False)
            assert err(y, ref) <= lowp_bound(err(base, ref), ref, dtype, ulps=1.0), (err(y, ref), err(base, ref))
        else:
            # fp32 math rounded once; 1 ulp of slack: an fp32 sum a hair away from the reference's can round to the
            # neighbouring fp16 value (seen at M=7, K=129: 0.00195 = 1 ulp at |y| in [2, 4), baseline error 0)
            ref = gemm.linear_ref(x, weight, b, activation)
            assert err(y, ref) <= lowp_bound(err(base, ref), ref, dtype, ulps=1.0), (err(y, ref), err(base, ref))


def test_linear_strided_input(poisoned, seed):
    """x read through its strides (a column-sliced view, and a transposed one)."""
    x = torch.randn(40, 130, device=DEVICE)[:, 1:129:2]  # [40, 64], stride (130, 2)
    weight = torch.randn(70, 64, device=DEVICE) / 8
    bias = torch.randn(70, device=DEVICE)
    ref = gemm.linear_ref(x, weight, bias, "gelu")
    assert err(gemm.linear(x, weight, bias, "gelu"), ref) <= 1e-5 * max(1.0, ref.abs().max().item())
    xt = torch.randn(64, 40, device=DEVICE).T  # [40, 64], stride (1, 40)
    ref = gemm.linear_ref(xt, weight, None)
    assert err(gemm.linear(xt, weight, None), ref) <= 1e-5 * max(1.0, ref.abs().max().item())


def test_fp32_is_not_tf32(seed):
    """True fp32 products: 16 x (1 + 2^-12) is exact in fp32 (every partial sum is), but TF32 (10 mantissa bits)
    would drop the 2^-12 and give 16."""
    x = torch.full((16, 16), 1.0 + 2.0**-12, device=DEVICE)
    weight = torch.ones(16, 16, device=DEVICE)
    assert (gemm.linear(x, weight, None) == 16 + 2.0**-8).all()
    q = torch.full((1, 16, 1, 16), 1.0 + 2.0**-12, device=DEVICE)
    v = torch.randn(1, 16, 1, 16, device=DEVICE)
    out = attn.attention(q, torch.ones_like(q), v, None)  # equal scores: the plain mean of v
    assert err(out, v.mean(dim=1, keepdim=True).expand_as(v)) <= 1e-6


def test_linear_rejects_bad_input():
    x = torch.randn(4, 8, device=DEVICE)
    with pytest.raises(ValueError, match=r"\[4, 8\].*\[3, 9\]"):
        gemm.linear(x, torch.randn(3, 9, device=DEVICE), None)
    with pytest.raises(ValueError, match="activation"):
        gemm.linear(x, torch.randn(3, 8, device=DEVICE), None, "swish")
    with pytest.raises(ValueError, match="bias"):
        gemm.linear(x, torch.randn(3, 8, device=DEVICE), torch.randn(4, device=DEVICE))


# ----------------------------------------------------------------------------------------------------------------
# Bias + residual + LayerNorm
# ----------------------------------------------------------------------------------------------------------------

def _assert_rowwise_close(y, ref):
    """fp32: 1e-5 relative; fp16/bf16: within the dtype's own rounding of the fp32 result (1-2 ulps)."""
    assert torch.isfinite(y).all()
    if y.dtype == torch.float32:
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    else:
        torch.testing.assert_close(y, ref)  # torch's per-dtype defaults: fp16 rtol 1e-3, bf16 rtol 1.6e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("hidden", [7, 129, 384, 768, 1024])
@pytest.mark.parametrize("with_bias", [True, False])
def test_bias_residual_layernorm(poisoned, seed, hidden, dtype, with_bias):
    rows = 37
    base = torch.randn(rows, hidden + 3, device=DEVICE).to(dtype)
    x = base[:, 2 : 2 + hidden]  # a row-strided view
    residual = (torch.randn(rows, hidden, device=DEVICE) * 3 + 1).to(dtype)
    bias = torch.randn(hidden, device=DEVICE).to(dtype) if with_bias else None
    weight = torch.randn(hidden, device=DEVICE).to(dtype)
    ln_bias = torch.randn(hidden, device=DEVICE).to(dtype)
    y = ln.bias_residual_layernorm(x, bias, residual, weight, ln_bias, 1e-12)
    assert y.shape == (rows, hidden) and y.dtype == dtype and y.is_contiguous()
    _assert_rowwise_close(y, ln.bias_residual_layernorm_ref(x, bias, residual, weight, ln_bias, 1e-12))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_layernorm_large_and_constant_rows(poisoned, seed, dtype):
    """Sums of squares past the fp16 range, tiny-variance rows (where eps = 1e-12 vs a wrong eps shows) and
    zero-variance rows stay right."""
    hidden = 768
    x = (torch.randn(4, hidden, device=DEVICE) * 300).to(dtype)
    x[1] = 500.0  # constant row: var = 0 -> output is ln_bias
    x[2] = (torch.randn(hidden, device=DEVICE) * 1e-3).to(dtype)  # var ~ 1e-6: eps 1e-5 would shrink it 3x
    residual = torch.zeros_like(x)
    weight = torch.randn(hidden, device=DEVICE).to(dtype)
    ln_bias = torch.randn(hidden, device=DEVICE).to(dtype)
    y = ln.bias_residual_layernorm(x, None, residual, weight, ln_bias, 1e-12)
    _assert_rowwise_close(y, ln.bias_residual_layernorm_ref(x, None, residual, weight, ln_bias, 1e-12))
    assert torch.equal(y[1], ln_bias)


def test_layernorm_single_row_and_rejects_bad_input(poisoned, seed):
    x, r = torch.randn(1, 129, device=DEVICE), torch.randn(1, 129, device=DEVICE)
    w, b = torch.randn(129, device=DEVICE), torch.randn(129, device=DEVICE)
    _assert_rowwise_close(ln.bias_residual_layernorm(x, None, r, w, b, 1e-5),
                          ln.bias_residual_layernorm_ref(x, None, r, w, b, 1e-5))
    with pytest.raises(ValueError, match=r"\[1, 129\].*\[1, 128\]"):
        ln.bias_residual_layernorm(x, None, r[:, :128], w, b, 1e-5)
    with pytest.raises(ValueError, match=r"weight.*\[129\]"):
        ln.bias_residual_layernorm(x, None, r, w[:7], b, 1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Embeddings + LayerNorm
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch,seqlen,hidden", [(1, 1, 7), (3, 7, 384), (2, 129, 129)])
def test_embed_layernorm(poisoned, seed, batch, seqlen, hidden, dtype):
    vocab, max_pos, type_vocab = 50, 200, 2
    word = torch.randn(vocab, hidden, device=DEVICE).to(dtype)
    position = torch.randn(max_pos, hidden, device=DEVICE).to(dtype)
    token_type = torch.randn(type_vocab, hidden, device=DEVICE).to(dtype)
    weight = torch.randn(hidden, device=DEVICE).to(dtype)
    bias = torch.randn(hidden, device=DEVICE).to(dtype)
    ids = torch.randint(0, vocab, (batch, seqlen), device=DEVICE)
    position_ids = torch.arange(3, 3 + seqlen, device=DEVICE).expand(batch, seqlen)  # stride 0 on the batch dim
    for token_type_ids in (
        torch.zeros(1, 1, dtype=torch.long, device=DEVICE).expand(batch, seqlen),  # all strides 0
        torch.randint(0, type_vocab, (batch, seqlen), device=DEVICE),
    ):
        args = (ids, token_type_ids, position_ids, word, position, token_type, weight, bias, 1e-12)
        y = emb.embed_layernorm(*args)
        assert y.shape == (batch, seqlen, hidden) and y.dtype == dtype
        _assert_rowwise_close(y, emb.embed_layernorm_ref(*args))


def test_embed_rejects_bad_input():
    word = torch.randn(10, 8, device=DEVICE)
    ids = torch.zeros(2, 3, dtype=torch.long, device=DEVICE)
    with pytest.raises(ValueError, match=r"position_ids.*\[2, 3\].*\[2, 4\]"):
        emb.embed_layernorm(ids, ids, ids[:, :1].expand(2, 4), word, word, word, word[0], word[0], 1e-12)
    with pytest.raises(ValueError, match="integer"):
        emb.embed_layernorm(ids, ids.float(), ids, word, word, word, word[0], word[0], 1e-12)
