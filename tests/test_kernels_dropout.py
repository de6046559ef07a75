"""Dropout inside the Triton kernels (train mode), on CPU through the Triton interpreter (or on CUDA if present).

The hidden dropout fused into bias + residual + LayerNorm (:mod:`fastbert.kernels.layernorm`): p = 0 is the
no-dropout kernel exactly; the Philox mask (written out by :func:`~fastbert.kernels.layernorm.dropout_keep`, the
same ``_keep`` the kernels call) keeps a fraction within 5 binomial sigmas of ``1 - p``, is a function of the seed
alone, and the forward and backward kernels apply exactly that mask (against the float references given the mask,
with the 1 / (1 - p) scale); buffers the launchers allocate are poisoned with NaN. Last, a tiny BERT's train step
with hidden dropout on ``backend="triton"``: the fused kernels run, loss and gradients are finite and reproducible
under ``torch.manual_seed``.
"""
import math
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from test_kernels import _PoisonedTorch  # noqa: E402

from fastbert.kernels import layernorm as ln  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RTOL32 = 2e-5  # fp32: max error <= RTOL32 x max(1, max |reference|)


@pytest.fixture
def poisoned(monkeypatch):
    monkeypatch.setattr(ln, "torch", _PoisonedTorch())


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
# The differentiable op and a tiny BERT's train step
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


def test_tiny_bert_train_step_with_hidden_dropout_on_triton(monkeypatch, seed):
    import fastbert
    from fastbert.encoder.backends import torch_ops

    model = _tiny_bert(0.2, 0.0)
    fastbert.optimize(model, backend="triton")
    batch = _batch()
    fused = []
    real = ln.bias_residual_layernorm
    monkeypatch.setattr(ln, "bias_residual_layernorm",
                        lambda *a, **k: fused.append(k.get("dropout", 0.0)) or real(*a, **k))
    for name in ("attention", "linear", "linear_residual_layernorm", "bias_residual_layernorm"):
        monkeypatch.setattr(torch_ops, name, lambda *a, _name=name, **k: pytest.fail(f"torch_ops.{_name} ran"))

    def step():
        model.zero_grad()
        torch.manual_seed(5)
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = step()
    assert fused and all(p == 0.2 for p in fused), fused  # 2 layers x 2 fused dropouts, at the model's rate
    assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads.values())
    assert len(grads) == len(list(model.parameters()))
    loss2, grads2 = step()  # the same torch seed: the same masks
    assert torch.equal(loss, loss2) and all(torch.equal(grads[n], grads2[n]) for n in grads)
    model.eval()
    with torch.no_grad():
        assert not torch.equal(model(**batch).loss, loss)  # dropout did something in train mode


def test_tiny_bert_with_attention_dropout_takes_the_torch_backend(monkeypatch, seed):
    import fastbert
    from fastbert.encoder.backends import torch_ops

    model = _tiny_bert(0.1, 0.1)
    fastbert.optimize(model, backend="triton")
    ran = []
    real = torch_ops.attention
    monkeypatch.setattr(torch_ops, "attention", lambda *a, **k: ran.append(1) or real(*a, **k))
    loss = model(**_batch()).loss
    loss.backward()
    assert ran and torch.isfinite(loss)
