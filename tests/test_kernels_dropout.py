"""Dropout inside the Triton kernels (train mode), on CPU through the Triton interpreter (or on CUDA if present).

The hidden dropout fused into bias + residual + LayerNorm (:mod:`fastbert.kernels.layernorm`) and the probability
dropout fused into attention (:mod:`fastbert.kernels.attention`), each: p = 0 is the no-dropout kernel exactly; the
Philox mask (written out by ``dropout_keep`` / ``attention_dropout_keep``, which call the same jitted mask function
as the kernels) keeps a fraction within 5 binomial sigmas of ``1 - p``, is a function of the seed alone, and the
forward and backward kernels apply exactly that mask (against the float references given the mask, with the
1 / (1 - p) scale); buffers the launchers allocate are poisoned with NaN. Last, a tiny BERT's train step with both
dropouts on ``backend="triton"``: the fused kernels run, loss and gradients are finite and reproducible under
``torch.manual_seed``.
"""
import math
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from test_kernels import _PoisonedTorch  # noqa: E402

from fastbert.kernels import attention as attn  # noqa: E402
from fastbert.kernels import layernorm as ln  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RTOL32 = 2e-5  # fp32: max error <= RTOL32 x max(1, max |reference|)


@pytest.fixture
def poisoned(monkeypatch):
    for module in (attn, ln):
        monkeypatch.setattr(module, "torch", _PoisonedTorch())


def _close(got, want, rtol=RTOL32):
    assert got is not None and want is not None
    assert torch.isfinite(got).all(), "non-finite output"
    bound = rtol * max(1.0, want.abs().max().item())
    assert (got.double() - want.double()).abs().max().item() <= bound


def _rows(rows, hidden, has_bias=True):
    x, res = torch.randn(rows, hidden, device=DEVICE), torch.randn(rows, hidden, device=DEVICE)
    bias = torch.randn(hidden, device=DEVICE) if has_bias else None
    return x, bias, res, torch.randn(hidden, device=DEVICE), torch.randn(hidden, device=DEVICE)


def _new_seed() -> int:
    return int(torch.randint(0, 2**31 - 1, ()))


# ----------------------------------------------------------------------------------------------------------------
# The mask
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask_keeps_one_minus_p(p, poisoned, seed):
    rows, hidden = 129, 300  # 38,700 draws: 5 sigma is under 0.013 of the fraction
    s = _new_seed()
    keep = ln.dropout_keep(rows, hidden, p, s, DEVICE)
    n = keep.numel()
    kept = keep.sum().item()
    assert abs(kept - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p)), (kept, n, p)
    # no structure along rows or columns: every row and every column keeps something and drops something
    assert keep.any(1).all() and (~keep).any(1).all() and keep.any(0).all() and (~keep).any(0).all()
    assert torch.equal(keep, ln.dropout_keep(rows, hidden, p, s, DEVICE))  # a function of the seed
    assert not torch.equal(keep, ln.dropout_keep(rows, hidden, p, s + 1, DEVICE))


def test_dropout_seed_follows_torch_manual_seed():
    torch.manual_seed(123)
    a = [ln.dropout_seed() for _ in range(3)]
    torch.manual_seed(123)
    assert [ln.dropout_seed() for _ in range(3)] == a
    assert len(set(a)) == 3


def test_dropout_probability_is_checked():
    x, bias, res, w, b = _rows(3, 8)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="dropout probability"):
            ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5, dropout=p, seed=1)


# ----------------------------------------------------------------------------------------------------------------
# bias + dropout + residual + LayerNorm, forward and backward
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows,hidden,has_bias", [(1, 32, True), (7, 48, False), (129, 96, True)])
def test_layernorm_dropout_zero_is_the_plain_kernel(rows, hidden, has_bias, poisoned, seed):
    x, bias, res, w, b = _rows(rows, hidden, has_bias)
    plain = ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5)
    assert torch.equal(ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5, dropout=0.0, seed=_new_seed()), plain)
    dy = torch.randn_like(x)
    dh, dbias, dw, dlb = ln.bias_residual_layernorm_backward(dy, x, bias, res, w, 1e-5)
    dx, dres, *rest = ln.bias_dropout_residual_layernorm_backward(dy, x, bias, res, w, 1e-5, dropout=0.0, seed=7)
    assert dx is dres and torch.equal(dx, dh)
    for got, want in zip(rest, (dbias, dw, dlb)):
        assert (got is None and want is None) or torch.equal(got, want)


@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("rows,hidden,has_bias", [(1, 32, True), (7, 48, False), (129, 96, True)])
def test_layernorm_dropout_forward_and_backward_apply_one_mask(rows, hidden, has_bias, p, poisoned, seed):
    x, bias, res, w, b = _rows(rows, hidden, has_bias)
    s = _new_seed()
    keep = ln.dropout_keep(rows, hidden, p, s, DEVICE)
    y = ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5, dropout=p, seed=s)
    _close(y, ln.bias_residual_layernorm_ref(x, bias, res, w, b, 1e-5, keep, p))
    assert torch.equal(y, ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5, dropout=p, seed=s))
    if p < 1:
        other = ln.bias_residual_layernorm(x, bias, res, w, b, 1e-5, dropout=p, seed=s + 1)
        assert not torch.equal(y, other)  # another seed, another mask
        # the 1 / (1 - p) scale: the reference with an unscaled mask is far off
        unscaled = ln.bias_residual_layernorm_ref(x * (1 - p), None if bias is None else bias * (1 - p), res, w, b,
                                                  1e-5, keep, p)
        assert (y - unscaled).abs().max() > 1e-2

    dy = torch.randn_like(x)
    got = ln.bias_dropout_residual_layernorm_backward(dy, x, bias, res, w, 1e-5, dropout=p, seed=s)
    want = ln.bias_residual_layernorm_backward_ref(dy, x, bias, res, w, b, 1e-5, keep, p)
    for g, wt in zip(got, want):
        if wt is None:
            assert g is None
        else:
            _close(g, wt)
    assert not got[0][~keep].any()  # dropped elements get no gradient


# ----------------------------------------------------------------------------------------------------------------
# Attention-probability dropout, forward and backward
# ----------------------------------------------------------------------------------------------------------------

def _qkv(shape):
    """q, k, v views into one fused projection (token stride 3 x heads x D), as the encoder passes them."""
    return torch.randn(*shape[:-2], 3, *shape[-2:], device=DEVICE).unbind(-3)


def _key_mask(batch, seqlen):
    """[B, S] bool: row 0 right-padded, row 1 left-padded, row 2 holes."""
    mask = torch.ones(batch, seqlen, dtype=torch.bool)
    mask[0, max(1, seqlen // 2):] = False
    if batch > 1:
        mask[1, : seqlen // 3] = False
    if batch > 2:
        mask[2, torch.randperm(seqlen)[: seqlen // 3]] = False
    return mask.to(DEVICE)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_attention_dropout_mask_keeps_one_minus_p(p, poisoned, seed):
    batch, heads, length = 2, 3, 81  # 39,366 draws
    s = _new_seed()
    keep = attn.attention_dropout_keep(batch, heads, length, p, s, DEVICE)
    n = keep.numel()
    kept = keep.sum().item()
    assert abs(kept - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p)), (kept, n, p)
    per_head = keep.flatten(2).float().mean(-1)  # [B, heads]: no (sequence, head) is degenerate
    assert (per_head - (1 - p)).abs().max() < 0.1
    assert torch.equal(keep, attn.attention_dropout_keep(batch, heads, length, p, s, DEVICE))
    assert not torch.equal(keep, attn.attention_dropout_keep(batch, heads, length, p, s + 1, DEVICE))
    # the transposed pair (j, i) is another draw, not the same one
    assert not torch.equal(keep, keep.transpose(-1, -2))


def test_attention_dropout_zero_is_the_plain_kernel(poisoned, seed):
    q, k, v = _qkv((3, 19, 2, 16))
    mask = _key_mask(3, 19)
    out, lse = attn.attention(q, k, v, mask, return_lse=True)
    out0, lse0 = attn.attention(q, k, v, mask, return_lse=True, dropout=0.0, seed=_new_seed())
    assert torch.equal(out, out0) and torch.equal(lse, lse0)
    do = torch.randn_like(out)
    for g, g0 in zip(attn.attention_backward(do, q, k, v, out, lse, mask),
                     attn.attention_backward(do, q, k, v, out, lse, mask, dropout=0.0, seed=3)):
        assert torch.equal(g, g0)


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("batch,seqlen,heads,head_dim,masked", [
    (1, 1, 1, 16, False),
    (3, 7, 2, 16, True),
    (2, 40, 2, 24, True),
    (3, 129, 1, 16, True),
])
def test_attention_dropout_forward_and_backward_apply_one_mask(batch, seqlen, heads, head_dim, masked, p, poisoned,
                                                               seed):
    q, k, v = _qkv((batch, seqlen, heads, head_dim))
    mask = _key_mask(batch, seqlen) if masked else None
    s = _new_seed()
    keep = attn.attention_dropout_keep(batch, heads, seqlen, p, s, DEVICE)
    out, lse = attn.attention(q, k, v, mask, return_lse=True, dropout=p, seed=s)
    _close(out, attn.attention_ref(q, k, v, mask, keep=keep, p=p))
    _, lse_plain = attn.attention(q, k, v, mask, return_lse=True)
    assert torch.equal(lse, lse_plain)  # the LSE is the un-dropped softmax's
    assert torch.equal(out, attn.attention(q, k, v, mask, dropout=p, seed=s))
    if seqlen > 1:
        assert not torch.equal(out, attn.attention(q, k, v, mask, dropout=p, seed=s + 1))
        unscaled = attn.attention_ref(q, k, v, mask, keep=keep, p=0.0)  # mask without the 1 / (1 - p)
        assert (out - unscaled).abs().max() > 1e-3
    do = torch.randn_like(out)
    got = attn.attention_backward(do, q, k, v, out, lse, mask, dropout=p, seed=s)
    want = attn.attention_backward_ref(do, q, k, v, mask, keep, p)
    for g, w in zip(got, want):
        _close(g, w)


@pytest.mark.parametrize("lengths", [(1,), (7, 0, 1), (40, 3, 129)])
def test_attention_varlen_dropout_forward_and_backward_apply_one_mask(lengths, poisoned, seed):
    total, heads, head_dim, p = sum(lengths), 2, 16, 0.3
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    q, k, v = _qkv((total, heads, head_dim))
    s = _new_seed()
    keep = attn.attention_dropout_keep(len(lengths), heads, max(lengths), p, s, DEVICE)
    out, lse = attn.attention_varlen(q, k, v, cu, max(lengths), return_lse=True, dropout=p, seed=s)
    _close(out, attn.attention_varlen_ref(q, k, v, cu, max(lengths), keep=keep, p=p))
    do = torch.randn_like(out)
    got = attn.attention_varlen_backward(do, q, k, v, out, lse, cu, max(lengths), dropout=p, seed=s)
    want = attn.attention_varlen_backward_ref(do, q, k, v, cu, max(lengths), keep, p)
    for g, w in zip(got, want):
        _close(g, w)


def test_attention_dropout_probability_is_checked():
    q, k, v = _qkv((1, 5, 1, 16))
    with pytest.raises(ValueError, match="dropout probability"):
        attn.attention(q, k, v, None, dropout=1.5, seed=1)


# ----------------------------------------------------------------------------------------------------------------
# The differentiable ops and a tiny BERT's train step
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Input #:UserWarning")  # gradcheck's advice to use float64
def test_gradcheck_linear_residual_layernorm_with_dropout(seed):
    from fastbert.encoder.backends import triton_ops

    def leaf(*shape):
        return torch.randn(*shape, device=DEVICE).requires_grad_()

    def fn(x, weight, bias, res, w, b):
        torch.manual_seed(11)  # every evaluation draws the same seed, hence the same mask
        return triton_ops.linear_residual_layernorm(x, weight, bias, res, w, b, 1e-5, 0.3)

    assert torch.autograd.gradcheck(fn, (leaf(7, 16), leaf(24, 16), leaf(24), leaf(7, 24), leaf(24), leaf(24)),
                                    eps=1e-2, atol=1e-2, rtol=1e-2, fast_mode=True)

    from fastbert.encoder.layout import AttentionLayout

    padded = AttentionLayout(batch=2, seqlen=7, key_mask=_key_mask(2, 7))
    packed = AttentionLayout(batch=2, seqlen=6, cu_seqlens=torch.tensor([0, 3, 9], dtype=torch.int32, device=DEVICE))
    for layout, rows in ((padded, 14), (packed, 9)):
        def attend(q, k, v, layout=layout):
            torch.manual_seed(11)
            return triton_ops.attention(q, k, v, layout, 0.3)

        assert torch.autograd.gradcheck(attend, (leaf(rows, 2, 16), leaf(rows, 2, 16), leaf(rows, 2, 16)),
                                        eps=1e-2, atol=1e-2, rtol=1e-2, fast_mode=True)


def _tiny_bert(hidden_dropout, attention_dropout):
    import transformers

    config = transformers.BertConfig(vocab_size=97, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                                     num_hidden_layers=2, max_position_embeddings=40,
                                     hidden_dropout_prob=hidden_dropout,
                                     attention_probs_dropout_prob=attention_dropout)
    return transformers.BertForSequenceClassification(config).train().to(DEVICE)


def _batch():
    ids = torch.randint(3, 97, (3, 11), device=DEVICE)
    mask = torch.ones(3, 11, dtype=torch.long, device=DEVICE)
    mask[0, 6:] = 0
    ids[mask == 0] = 0
    return dict(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 1], device=DEVICE))


@pytest.mark.parametrize("padding_free", [True, False])
def test_tiny_bert_train_step_with_dropout_on_triton(padding_free, monkeypatch, seed):
    import fastbert
    from fastbert.encoder.backends import torch_ops

    model = _tiny_bert(0.2, 0.3)
    fastbert.optimize(model, backend="triton", padding_free=padding_free)
    batch = _batch()
    if not padding_free:
        batch["attention_mask"][1, :2] = 0  # left padding keeps the padded path
    fused, attended = [], []
    real = ln.bias_residual_layernorm
    monkeypatch.setattr(ln, "bias_residual_layernorm",
                        lambda *a, **k: fused.append(k.get("dropout", 0.0)) or real(*a, **k))
    for name in ("attention", "attention_varlen"):
        real_attn = getattr(attn, name)
        monkeypatch.setattr(attn, name, lambda *a, _real=real_attn, **k: attended.append(k.get("dropout", 0.0))
                            or _real(*a, **k))
    for name in ("attention", "linear", "linear_residual_layernorm", "bias_residual_layernorm"):
        monkeypatch.setattr(torch_ops, name, lambda *a, _name=name, **k: pytest.fail(f"torch_ops.{_name} ran"))

    def step():
        model.zero_grad()
        torch.manual_seed(5)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = step()
    assert len(fused) == 4 and all(p == 0.2 for p in fused), fused  # 2 layers x 2 fused dropouts, the model's rate
    assert len(attended) == 2 and all(p == 0.3 for p in attended), attended
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert len(grads) == len(list(model.parameters()))
    loss2, grads2 = step()  # the same torch seed: the same masks
    assert torch.equal(loss, loss2) and all(torch.equal(grads[n], grads2[n]) for n in grads)
    torch.manual_seed(6)
    assert not torch.equal(model(**batch).loss, loss)  # another seed, other masks
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model(**batch).loss, loss)  # dropout did something in train mode


def test_disentangled_attention_refuses_dropout():
    from fastbert.encoder.backends import triton_ops
    from fastbert.encoder.layout import AttentionLayout

    q = torch.randn(7, 2, 16, device=DEVICE)
    layout = AttentionLayout(batch=1, seqlen=7)
    layout = triton_ops.disentangled(layout, torch.randn(4, 32, device=DEVICE),
                                     torch.tensor([0, 1, 2, 3], device=DEVICE), None, 16, 1.0, True, True)
    with pytest.raises(ValueError, match="disentangled attention kernel has no dropout"):
        triton_ops.attention(q, q, q, layout, 0.1)
