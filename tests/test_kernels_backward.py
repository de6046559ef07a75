"""The Triton backward kernels (training) against PyTorch autograd, on CPU through the Triton interpreter (or on CUDA
if present).

Each backward launcher is compared with its ``*_backward_ref`` (autograd through the forward's reference, float64
attention math) in fp32, on fresh random inputs, with every buffer the launchers allocate poisoned with NaN (the
``poisoned`` fixture of ``tests/test_kernels.py``), at awkward sizes: right and left padding, holes, a sequence with
no valid key, packed sequences of length 0, 1 and more. The launchers take fp32/fp16/bf16 only, so float64
``gradcheck`` is out of reach; ``torch.autograd.gradcheck`` runs in fp32 (fast mode: one random direction, central
differences against the analytic backward) through the differentiable Triton ops of
:mod:`fastbert.encoder.backends.triton_ops`. Last, tiny BERT / RoBERTa / ALBERT classifiers' ``loss.backward()`` on
``backend="triton"`` (packed and, for BERT, padded) against the torch backend: every parameter's gradient within 1e-4
relative norm.
"""
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from test_kernels import _PoisonedTorch, lowp_bound  # noqa: E402

from fastbert.kernels import attention as attn  # noqa: E402
from fastbert.kernels import gemm  # noqa: E402
from fastbert.kernels import layernorm as ln  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RTOL32 = 2e-5  # fp32 gradients: max error <= RTOL32 x max(1, max |reference|)


@pytest.fixture
def poisoned(monkeypatch):
    for module in (attn, gemm, ln):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())


def _close(got, want, rtol=RTOL32):
    assert got is not None and want is not None
    assert torch.isfinite(got).all(), "non-finite gradient"
    bound = rtol * max(1.0, want.abs().max().item()) if want.numel() else 0.0
    error = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
    assert error <= bound, (error, bound)


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------

def _mask(pattern: str, batch: int, seqlen: int) -> torch.Tensor | None:
    """[B, S] bool: row 0 right-padded, row 1 left-padded, row 2 holes; "empty" adds a row with no valid key."""
    if pattern == "none":
        return None
    mask = torch.ones(batch, seqlen, dtype=torch.bool)
    mask[0, max(1, seqlen // 2):] = False
    if batch > 1:
        mask[1, : seqlen // 3] = False
    if batch > 2:
        mask[2, torch.randperm(seqlen)[: seqlen // 3]] = False
    if pattern == "empty":
        mask[-1] = False
    return mask.to(DEVICE)


def _qkv(shape, dtype=torch.float32):
    """q, k, v views into one fused projection (token stride 3 x heads x D), as the encoder passes them."""
    fused = torch.randn(*shape[:-2], 3, *shape[-2:], dtype=dtype, device=DEVICE)
    return fused.unbind(-3)


@pytest.mark.parametrize("batch,seqlen,heads,head_dim,pattern", [
    (1, 1, 1, 16, "none"),
    (2, 7, 2, 24, "none"),
    (3, 7, 2, 16, "mixed"),
    (4, 40, 2, 32, "mixed"),
    (4, 19, 1, 16, "empty"),
    (3, 129, 1, 16, "mixed"),
])
def test_attention_backward(batch, seqlen, heads, head_dim, pattern, poisoned, seed):
    q, k, v = _qkv((batch, seqlen, heads, head_dim))
    mask = _mask(pattern, batch, seqlen)
    out, lse = attn.attention(q, k, v, mask, return_lse=True)
    do = torch.randn_like(out)
    got = attn.attention_backward(do, q, k, v, out, lse, mask)
    want = attn.attention_backward_ref(do, q, k, v, mask)
    for g, w in zip(got, want):
        _close(g, w)


def test_attention_backward_fp16(poisoned, seed):
    """fp16 gradients within 1.5x the error of eager fp16 autograd (both against float64)."""
    q, k, v = _qkv((3, 33, 2, 32), torch.float16)
    mask = _mask("mixed", 3, 33)
    out, lse = attn.attention(q, k, v, mask, return_lse=True)
    do = torch.randn_like(out)
    got = attn.attention_backward(do, q, k, v, out, lse, mask)
    exact = attn.attention_backward_ref(do.double(), q.double(), k.double(), v.double(), mask)
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    eager = torch.autograd.grad(attn.attention_ref(*leaves, mask, upcast=False), leaves, do)
    for g, e, x in zip(got, eager, exact):
        assert torch.isfinite(g).all()
        base = (e.double() - x).abs().max().item()
        assert (g.double() - x).abs().max().item() <= lowp_bound(base, x, torch.float16, ulps=2)


@pytest.mark.parametrize("lengths", [(1,), (7, 0, 1), (40, 3, 129)])
def test_attention_varlen_backward(lengths, poisoned, seed):
    total, heads, head_dim = sum(lengths), 2, 16
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    q, k, v = _qkv((total, heads, head_dim))
    out, lse = attn.attention_varlen(q, k, v, cu, max(lengths), return_lse=True)
    do = torch.randn_like(out)
    got = attn.attention_varlen_backward(do, q, k, v, out, lse, cu, max(lengths))
    want = attn.attention_varlen_backward_ref(do, q, k, v, cu, max(lengths))
    for g, w in zip(got, want):
        _close(g, w)


def test_attention_lse_does_not_change_the_output(seed):
    q, k, v = _qkv((3, 19, 2, 16))
    mask = _mask("empty", 3, 19)
    out, lse = attn.attention(q, k, v, mask, return_lse=True)
    assert torch.equal(out, attn.attention(q, k, v, mask))
    assert torch.isinf(lse[-1]).all() and (lse[-1] > 0).all()  # no valid key: P = 0, no gradient


def test_attention_backward_checks_its_inputs():
    q, k, v = _qkv((2, 5, 1, 16))
    out, lse = attn.attention(q, k, v, None, return_lse=True)
    with pytest.raises(ValueError, match="lse must be a float32"):
        attn.attention_backward(torch.randn_like(out), q, k, v, out, lse[:, :, :4], None)
    with pytest.raises(ValueError, match="gradient must match"):
        attn.attention_backward(torch.randn_like(out).half(), q, k, v, out, lse, None)


# ----------------------------------------------------------------------------------------------------------------
# bias + residual + LayerNorm, GEMM + bias + activation
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,hidden,has_bias", [(1, 32, True), (7, 48, False), (129, 96, True), (1100, 24, True)])
def test_bias_residual_layernorm_backward(rows, hidden, has_bias, poisoned, seed):
    x, res, dy = (torch.randn(rows, hidden, device=DEVICE) for _ in range(3))
    bias = torch.randn(hidden, device=DEVICE) if has_bias else None
    weight, ln_bias = torch.randn(hidden, device=DEVICE), torch.randn(hidden, device=DEVICE)
    dh, dbias, dweight, dln_bias = ln.bias_residual_layernorm_backward(dy, x, bias, res, weight, 1e-5)
    want = ln.bias_residual_layernorm_backward_ref(dy, x, bias, res, weight, ln_bias, 1e-5)
    for g, w in zip((dh, dh, dbias, dweight, dln_bias), want):
        if w is None:
            assert g is None
        else:
            _close(g, w)


@pytest.mark.parametrize("rows,k,n,activation,has_bias", [
    (1, 16, 24, None, True),
    (7, 40, 33, "gelu", True),
    (129, 32, 70, "gelu_tanh", False),
    (9, 17, 20, "relu", True),
])
def test_linear_backward(rows, k, n, activation, has_bias, poisoned, seed):
    x = torch.randn(rows, k, device=DEVICE)
    weight = torch.randn(n, k, device=DEVICE) / k**0.5
    bias = torch.randn(n, device=DEVICE) if has_bias else None
    y, pre = gemm.linear(x, weight, bias, activation, save_pre=True)
    torch.testing.assert_close(pre, gemm.linear_ref(x, weight, bias, None), rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    got = gemm.linear_backward(dy, x, weight, pre if activation else None, activation, (True, True, has_bias))
    want = gemm.linear_backward_ref(dy, x, weight, bias, activation)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            _close(g, w)


# ----------------------------------------------------------------------------------------------------------------
# The differentiable Triton ops: gradcheck (fp32, fast mode) and a tiny BERT's loss.backward()
# ----------------------------------------------------------------------------------------------------------------

def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-2, atol=1e-2, rtol=1e-2, fast_mode=True)


@pytest.mark.filterwarnings("ignore:Input #:UserWarning")  # gradcheck's advice to use float64: see the docstring
def test_gradcheck_triton_ops(seed):
    from fastbert.encoder.backends import triton_ops
    from fastbert.encoder.layout import AttentionLayout

    def leaf(*shape):
        return torch.randn(*shape, device=DEVICE).requires_grad_()

    _gradcheck(lambda x, w, b: triton_ops.linear(x, w, b, "gelu"), leaf(7, 16), leaf(20, 16), leaf(20))
    _gradcheck(lambda x, b, r, w, lb: triton_ops.bias_residual_layernorm(x, b, r, w, lb, 1e-5),
               leaf(7, 24), leaf(24), leaf(7, 24), leaf(24), leaf(24))
    mask = torch.tensor([[True] * 5 + [False] * 2, [False, True, True, False, True, True, True]], device=DEVICE)
    padded = AttentionLayout(batch=2, seqlen=7, key_mask=mask)
    _gradcheck(lambda q, k, v: triton_ops.attention(q, k, v, padded), leaf(14, 2, 16), leaf(14, 2, 16),
               leaf(14, 2, 16))
    packed = AttentionLayout(batch=2, seqlen=6, cu_seqlens=torch.tensor([0, 3, 9], dtype=torch.int32, device=DEVICE))
    _gradcheck(lambda q, k, v: triton_ops.attention(q, k, v, packed), leaf(9, 1, 16), leaf(9, 1, 16),
               leaf(9, 1, 16))


def test_triton_ops_refuse_grad_through_the_relative_bias():
    from fastbert.encoder.backends import triton_ops
    from fastbert.encoder.layout import AttentionLayout

    q = torch.randn(7, 2, 16, device=DEVICE, requires_grad=True)
    layout = triton_ops.position_bias(AttentionLayout(batch=1, seqlen=7), torch.randn(2, 9, device=DEVICE), None)
    with pytest.raises(ValueError, match="relative-position bias has no Triton backward"):
        triton_ops.attention(q, q, q, layout)


_TINY = dict(vocab_size=97, hidden_size=64, num_attention_heads=4, intermediate_size=96, num_hidden_layers=2,
             max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
TINY = {  # families whose differences reach the backward: padding-aware positions, an embedding projection
    "bert": lambda t: t.BertForSequenceClassification(t.BertConfig(**_TINY)),
    "roberta": lambda t: t.RobertaForSequenceClassification(t.RobertaConfig(**dict(_TINY, max_position_embeddings=42))),
    "albert": lambda t: t.AlbertForSequenceClassification(t.AlbertConfig(**_TINY, embedding_size=32,
                                                                          classifier_dropout_prob=0.0)),
}


def _tiny(family):
    import transformers

    model = TINY[family](transformers).train()
    with torch.no_grad():  # draw biases and LayerNorm weights too (0 and 1 would hide a misplaced one)
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.1)
    return model.to(DEVICE)


@pytest.mark.parametrize("family,padding_free", [("bert", True), ("bert", False), ("roberta", True),
                                                 ("albert", True)])
def test_tiny_bert_loss_backward_matches_the_torch_backend(family, padding_free, monkeypatch, seed):
    import copy

    import fastbert
    from fastbert.encoder.backends import torch_ops

    ref = _tiny(family)
    model = copy.deepcopy(ref)
    fastbert.optimize(ref, backend="torch", padding_free=padding_free)
    fastbert.optimize(model, backend="triton", padding_free=padding_free)
    ids = torch.randint(3, 97, (3, 11), device=DEVICE)
    mask = torch.ones(3, 11, dtype=torch.long, device=DEVICE)
    mask[0, 6:] = 0  # right padding
    mask[1, :3] = 0  # left padding (keeps the padded path)
    ids[mask == 0] = ref.config.pad_token_id
    labels = torch.tensor([0, 1, 1], device=DEVICE)
    ref(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()

    calls = []
    for name in ("attention_backward", "attention_varlen_backward"):
        real = getattr(attn, name)
        monkeypatch.setattr(attn, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    for name in ("attention", "linear", "linear_residual_layernorm", "bias_residual_layernorm"):
        monkeypatch.setattr(torch_ops, name, lambda *a, _name=name, **k: pytest.fail(f"torch_ops.{_name} ran"))
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    assert calls, "the Triton attention backward never ran"
    named = dict(ref.named_parameters())
    # The key bias's exact gradient is 0 (softmax ignores a per-query constant): both sides hold rounding noise, so
    # norms below a thousandth of the largest gradient's are compared against that floor instead.
    floor = 1e-3 * max(p.grad.norm() for p in ref.parameters() if p.grad is not None)
    for name, p in model.named_parameters():
        want = named[name].grad
        if want is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        rel = (p.grad - want).norm() / torch.maximum(want.norm(), floor)
        assert rel <= 1e-4, (name, rel.item())
