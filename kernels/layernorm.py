"""Bias + residual + LayerNorm in one pass over memory.

For each row ``i`` of ``x`` ``[N, H]``::

    h      = dropout(x[i] + bias) + residual[i]        (bias optional; dropout in train mode, p = 0 otherwise)
    mean   = sum(h) / H
    var    = sum((h - mean)^2) / H                     (biased, as torch.nn.functional.layer_norm)
    y[i]   = (h - mean) / sqrt(var + eps) * weight + ln_bias

Everything after the loads is fp32 whatever the storage dtype, so BERT's ``eps = 1e-12`` is meaningful in fp16.
Each program owns ``BLOCK_ROWS`` whole rows of width ``BLOCK_H = next_pow2(H)`` (masked past ``H``): the row is read
once, normalised in registers and written once -- 3 reads + 1 write of ``N * H`` elements in all.

:func:`_layernorm_rows` (the row statistics and affine part) is shared with :mod:`fastbert.kernels.embedding`.
:func:`bias_residual_layernorm_backward` (training) recomputes the statistics and returns every input's gradient.

Dropout (transformers' hidden dropout: on the dense output, bias included, before the residual add) keeps an element
when ``tl.rand(seed, row * H + col) >= p`` (Triton's Philox, counter = the element's index in the logical ``[N, H]``)
and scales kept values by ``1 / (1 - p)``. The backward regenerates the same mask from ``(seed, offsets)``; no mask
is stored. The seed is drawn per call from torch's CPU generator (:func:`dropout_seed`), so ``torch.manual_seed``
makes runs reproducible; the masks have transformers' distribution, not its values for the same seed.
:func:`dropout_keep` writes the mask out (tests).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _layernorm_rows(h, W_ptr, B_ptr, offs_h, H, eps):
    """LayerNorm of the fp32 tile ``h`` ``[BLOCK_ROWS, BLOCK_H]`` over its columns ``< H`` (other columns must be
    0); weight/bias ``[H]`` at ``W_ptr``/``B_ptr``. Returns fp32 ``[BLOCK_ROWS, BLOCK_H]``."""
    col_ok = offs_h < H  # [BLOCK_H]
    mean = tl.sum(h, axis=1) / H  # [BLOCK_ROWS]
    centered = tl.where(col_ok[None, :], h - mean[:, None], 0.0)
    var = tl.sum(centered * centered, axis=1) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W_ptr + offs_h, mask=col_ok, other=0.0).to(tl.float32)
    b = tl.load(B_ptr + offs_h, mask=col_ok, other=0.0).to(tl.float32)
    return centered * rstd[:, None] * w[None, :] + b[None, :]


@triton.jit
def _keep(seed, rows64, offs_h, H, p):
    """The dropout mask of the tile: True where the element of row ``rows64`` ``[BLOCK_ROWS]`` (int64), column
    ``offs_h`` ``[BLOCK_H]`` is kept (probability ``1 - p``)."""
    return tl.rand(seed, rows64[:, None] * H + offs_h[None, :]) >= p


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _dropout_keep_kernel(
    Keep_ptr,  # [N, H] int8 output, contiguous
    N, H, seed, p,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # [BLOCK_ROWS]
    offs_h = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    rows64 = rows.to(tl.int64)
    mask = (rows < N)[:, None] & (offs_h < H)[None, :]
    keep = _keep(seed, rows64, offs_h, H, p)
    tl.store(Keep_ptr + rows64[:, None] * H + offs_h[None, :], keep.to(tl.int8), mask=mask)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _bias_residual_layernorm_kernel(
    X_ptr,  # [N, H] projection output
    Bias_ptr,  # [H] projection bias (unused when HAS_BIAS is False)
    R_ptr,  # [N, H] residual
    W_ptr,  # [H] LayerNorm weight
    LnB_ptr,  # [H] LayerNorm bias
    Y_ptr,  # [N, H] output, contiguous
    N, H,
    stride_xm, stride_rm, stride_ym,
    eps,
    seed, p, scale,  # dropout: Philox seed, probability, 1 / (1 - p) (0 when p = 1); read when HAS_DROPOUT
    HAS_BIAS: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # [BLOCK_ROWS]
    offs_h = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    rows64 = rows.to(tl.int64)
    mask = (rows < N)[:, None] & (offs_h < H)[None, :]

    h = tl.load(X_ptr + rows64[:, None] * stride_xm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        h += tl.load(Bias_ptr + offs_h, mask=offs_h < H, other=0.0).to(tl.float32)[None, :]
    if HAS_DROPOUT:
        h = tl.where(_keep(seed, rows64, offs_h, H, p), h * scale, 0.0)
    h += tl.load(R_ptr + rows64[:, None] * stride_rm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)

    y = _layernorm_rows(h, W_ptr, LnB_ptr, offs_h, H, eps)
    tl.store(Y_ptr + rows64[:, None] * stride_ym + offs_h[None, :], y.to(Y_ptr.dtype.element_ty), mask=mask)


# Backward (training). With ``xhat = (h - mean) * rstd`` and ``g = dy * weight``, per row::
#
#     dh      = rstd * (g - mean(g) - xhat * mean(g * xhat))      (= dresidual)
#     dx      = dh * keep / (1 - p)   (= dh without dropout),      dbias = sum over rows of dx
#     dweight = sum over rows of dy * xhat,   dln_bias = sum over rows of dy
#
# mean and rstd are recomputed from dropout(x + bias) + residual (the row is in registers anyway; the mask is
# regenerated from the seed), so the forward saves nothing. Each program walks a strided set of row blocks and writes its column sums to one row of fp32 partials
# ``[programs, H]``, which the launcher sums (no atomics: the result does not depend on scheduling).


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _bias_residual_layernorm_bwd_kernel(
    dY_ptr,  # [N, H] gradient of the output
    X_ptr, Bias_ptr, R_ptr, W_ptr,  # the forward's inputs ([N, H], [H], [N, H], [H])
    dH_ptr,  # [N, H] gradient of the residual (and of x without dropout), contiguous
    dX_ptr,  # [N, H] gradient of x, contiguous (written when HAS_DROPOUT)
    dW_ptr, dB_ptr, dBias_ptr,  # [programs, H] fp32 partial column sums of dy * xhat, dy, dx
    N, H,
    stride_dym, stride_xm, stride_rm,
    eps,
    seed, p, scale,  # dropout, as the forward's
    HAS_BIAS: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    offs_h = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    col_ok = offs_h < H
    w = tl.load(W_ptr + offs_h, mask=col_ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(Bias_ptr + offs_h, mask=col_ok, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_H,), dtype=tl.float32)
    db = tl.zeros((BLOCK_H,), dtype=tl.float32)
    dbias = tl.zeros((BLOCK_H,), dtype=tl.float32)
    for block in range(pid, tl.cdiv(N, BLOCK_ROWS), programs):
        rows = block * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # [BLOCK_ROWS]
        rows64 = rows.to(tl.int64)
        mask = (rows < N)[:, None] & col_ok[None, :]
        h = tl.load(X_ptr + rows64[:, None] * stride_xm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            h += tl.where(mask, bias[None, :], 0.0)
        if HAS_DROPOUT:
            keep = _keep(seed, rows64, offs_h, H, p)
            h = tl.where(keep, h * scale, 0.0)
        h += tl.load(R_ptr + rows64[:, None] * stride_rm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dY_ptr + rows64[:, None] * stride_dym + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(h, axis=1) / H  # [BLOCK_ROWS]
        centered = tl.where(mask, h - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=1) / H + eps)
        xhat = centered * rstd[:, None]
        g = dy * w[None, :]
        c1 = tl.sum(g * xhat, axis=1) / H
        c2 = tl.sum(g, axis=1) / H
        dh = tl.where(mask, (g - c2[:, None] - xhat * c1[:, None]) * rstd[:, None], 0.0)
        tl.store(dH_ptr + rows64[:, None] * H + offs_h[None, :], dh.to(dH_ptr.dtype.element_ty), mask=mask)
        if HAS_DROPOUT:
            dh = tl.where(keep, dh * scale, 0.0)  # now dx
            tl.store(dX_ptr + rows64[:, None] * H + offs_h[None, :], dh.to(dX_ptr.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
        db += tl.sum(dy, axis=0)
        dbias += tl.sum(dh, axis=0)
    tl.store(dW_ptr + pid * H + offs_h, dw, mask=col_ok)
    tl.store(dB_ptr + pid * H + offs_h, db, mask=col_ok)
    if HAS_BIAS:
        tl.store(dBias_ptr + pid * H + offs_h, dbias, mask=col_ok)


def row_launch_config(hidden: int) -> tuple[int, int, int]:
    """Deterministic ``(BLOCK_H, BLOCK_ROWS, num_warps)`` for row-wise kernels over rows of width ``hidden``:
    about 2K elements per program (so narrow rows are batched), 4 to 8 elements per thread."""
    block_h = triton.next_power_of_2(hidden)
    block_rows = max(1, min(16, 2048 // block_h))
    num_warps = max(1, min(8, block_rows * block_h // 256))
    return block_h, block_rows, num_warps


def _check_row_vector(name: str, t: torch.Tensor | None, hidden: int, x: torch.Tensor) -> None:
    if t is None:
        return
    if t.shape != (hidden,):
        raise ValueError(f"{name} must have shape [{hidden}], got {list(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}")
    if t.stride(0) != 1:
        raise ValueError(f"{name} must be contiguous, got stride {t.stride()}")


def dropout_seed() -> int:
    """A Philox seed for one dropout call, drawn from torch's CPU generator (no device sync; ``torch.manual_seed``
    seeds it)."""
    return int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))


def _dropout_args(p: float) -> tuple[float, float]:
    """``(p, scale)`` for the kernels; ``ValueError`` outside [0, 1]."""
    if isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p!r}")
    return float(p), (1.0 / (1.0 - p) if p < 1.0 else 0.0)


def dropout_keep(n: int, hidden: int, p: float, seed: int, device) -> torch.Tensor:
    """The mask (bool ``[n, hidden]``, True: kept) that :func:`bias_residual_layernorm` and its backward apply for
    ``dropout=p, seed=seed`` on ``[n, hidden]`` rows. For tests; the kernels never store it."""
    p, _ = _dropout_args(p)
    keep = torch.empty((n, hidden), dtype=torch.int8, device=device)
    if n:
        block_h, block_rows, num_warps = row_launch_config(hidden)
        _dropout_keep_kernel[(triton.cdiv(n, block_rows),)](keep, n, hidden, seed, p, BLOCK_ROWS=block_rows,
                                                            BLOCK_H=block_h, num_warps=num_warps)
    return keep.bool()


def bias_residual_layernorm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    dropout: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    """LayerNorm(dropout(x + bias) + residual) over the last dim. x, residual ``[N, H]``; bias (or None), weight,
    ln_bias ``[H]``; ``dropout``: probability, with the Philox ``seed`` (:func:`dropout_seed`; the backward needs the
    same one). Returns a new contiguous ``[N, H]`` tensor of x's dtype."""
    if x.dim() != 2 or residual.shape != x.shape:
        raise ValueError(f"x and residual must both be [N, H], got {list(x.shape)} and {list(residual.shape)}")
    if residual.dtype != x.dtype:
        raise ValueError(f"x and residual dtypes differ: {x.dtype} vs {residual.dtype}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {x.dtype}; expected float32, float16 or bfloat16")
    n, hidden = x.shape
    for name, t in (("bias", bias), ("weight", weight), ("ln_bias", ln_bias)):
        _check_row_vector(name, t, hidden, x)
    if x.stride(-1) != 1 or residual.stride(-1) != 1:
        raise ValueError(f"x and residual need unit stride on the last dim, got {x.stride()} and {residual.stride()}")

    p, scale = _dropout_args(dropout)

    y = torch.empty((n, hidden), dtype=x.dtype, device=x.device)
    if n == 0:
        return y

    block_h, block_rows, num_warps = row_launch_config(hidden)
    grid = (triton.cdiv(n, block_rows),)
    _bias_residual_layernorm_kernel[grid](
        x, bias if bias is not None else x, residual, weight, ln_bias, y,
        n, hidden,
        x.stride(0), residual.stride(0), y.stride(0),
        float(eps),
        int(seed), p, scale,
        HAS_BIAS=bias is not None,
        HAS_DROPOUT=p > 0,
        BLOCK_ROWS=block_rows,
        BLOCK_H=block_h,
        num_warps=num_warps,
    )
    return y


BACKWARD_PROGRAMS = 512  # at most this many programs (and rows of partial sums) in the backward


def bias_residual_layernorm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
):
    """Gradients of :func:`bias_residual_layernorm` without dropout: ``(dh, dbias, dweight, dln_bias)`` with ``dh``
    ``[N, H]`` (x's dtype, the gradient of both x and the residual), ``dbias`` (None without a bias), ``dweight``,
    ``dln_bias`` ``[H]`` in the weight's dtype."""
    return bias_dropout_residual_layernorm_backward(dy, x, bias, residual, weight, eps)[1:]


def bias_dropout_residual_layernorm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    *,
    dropout: float = 0.0,
    seed: int = 0,
):
    """Gradients of :func:`bias_residual_layernorm` with ``dropout`` and ``seed`` as the forward's: ``(dx,
    dresidual, dbias, dweight, dln_bias)``, ``dx`` and ``dresidual`` ``[N, H]`` in x's dtype (the same tensor
    without dropout), ``dbias`` (None without a bias), ``dweight``, ``dln_bias`` ``[H]`` in the weight's dtype."""
    if x.dim() != 2 or residual.shape != x.shape or dy.shape != x.shape:
        raise ValueError(f"dy, x and residual must all be [N, H], got {list(dy.shape)}, {list(x.shape)} and "
                         f"{list(residual.shape)}")
    if dy.dtype != x.dtype or residual.dtype != x.dtype:
        raise ValueError(f"dy, x and residual dtypes differ: {dy.dtype}, {x.dtype}, {residual.dtype}")
    n, hidden = x.shape
    for name, t in (("bias", bias), ("weight", weight)):
        _check_row_vector(name, t, hidden, x)
    dy, x, residual = (t if t.stride(-1) == 1 else t.contiguous() for t in (dy, x, residual))
    p, scale = _dropout_args(dropout)

    block_h, block_rows, num_warps = row_launch_config(hidden)
    programs = max(1, min(BACKWARD_PROGRAMS, triton.cdiv(n, block_rows)))
    dh = torch.empty((n, hidden), dtype=x.dtype, device=x.device)
    dx = torch.empty((n, hidden), dtype=x.dtype, device=x.device) if p > 0 else dh
    partials = torch.empty((3 if bias is not None else 2, programs, hidden), dtype=torch.float32, device=x.device)
    if n == 0:
        partials.zero_()
    else:
        _bias_residual_layernorm_bwd_kernel[(programs,)](
            dy, x, bias if bias is not None else x, residual, weight,
            dh, dx, partials[0], partials[1], partials[-1],
            n, hidden,
            dy.stride(0), x.stride(0), residual.stride(0),
            float(eps),
            int(seed), p, scale,
            HAS_BIAS=bias is not None,
            HAS_DROPOUT=p > 0,
            BLOCK_ROWS=block_rows,
            BLOCK_H=block_h,
            num_warps=num_warps,
        )
    sums = partials.sum(1)  # [2 or 3, H] fp32
    dbias = sums[2].to(bias.dtype) if bias is not None else None
    return dx, dh, dbias, sums[0].to(weight.dtype), sums[1].to(weight.dtype)


def bias_residual_layernorm_backward_ref(
    dy: torch.Tensor,
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    keep: torch.Tensor | None = None,
    p: float = 0.0,
):
    """Reference for :func:`bias_dropout_residual_layernorm_backward`: autograd through
    :func:`bias_residual_layernorm_ref` (with its dropout ``keep`` mask and ``p``), returning ``(dx, dresidual,
    dbias, dweight, dln_bias)``."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, bias, residual, weight, ln_bias)]
    y = bias_residual_layernorm_ref(*leaves, eps, keep, p)
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, dy))
    dx, dbias, dres, dw, db = (next(grads) if t is not None else None for t in leaves)
    return dx, dres, dbias, dw, db


def bias_residual_layernorm_ref(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    keep: torch.Tensor | None = None,
    p: float = 0.0,
) -> torch.Tensor:
    """PyTorch reference, computed in fp32 (float64 for float64 inputs) and returned in x's dtype; ``keep`` (bool
    ``[N, H]``, e.g. :func:`dropout_keep`'s) with probability ``p``: dropout applied with that mask."""
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.to(work)
    if bias is not None:
        h = h + bias.to(work)
    if keep is not None:
        h = h * (keep.to(work) * (1.0 / (1.0 - p) if p < 1 else 0.0))
    h = h + residual.to(work)
    y = torch.nn.functional.layer_norm(h, (h.shape[-1],), weight.to(work), ln_bias.to(work), eps)
    return y.to(x.dtype)
