"""Bias + residual + LayerNorm in one pass over memory.

For each row ``i`` of ``x`` ``[N, H]``::

    h      = x[i] + bias + residual[i]                 (bias optional)
    mean   = sum(h) / H
    var    = sum((h - mean)^2) / H                     (biased, as torch.nn.functional.layer_norm)
    y[i]   = (h - mean) / sqrt(var + eps) * weight + ln_bias

Everything after the loads is fp32 whatever the storage dtype, so BERT's ``eps = 1e-12`` is meaningful in fp16.
Each program owns ``BLOCK_ROWS`` whole rows of width ``BLOCK_H = next_pow2(H)`` (masked past ``H``): the row is read
once, normalised in registers and written once -- 3 reads + 1 write of ``N * H`` elements in all.

:func:`_layernorm_rows` (the row statistics and affine part) is shared with :mod:`fastbert.kernels.embedding`.
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
    HAS_BIAS: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # [BLOCK_ROWS]
    offs_h = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    rows64 = rows.to(tl.int64)
    mask = (rows < N)[:, None] & (offs_h < H)[None, :]

    h = tl.load(X_ptr + rows64[:, None] * stride_xm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
    h += tl.load(R_ptr + rows64[:, None] * stride_rm + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        h += tl.load(Bias_ptr + offs_h, mask=offs_h < H, other=0.0).to(tl.float32)[None, :]

    y = _layernorm_rows(h, W_ptr, LnB_ptr, offs_h, H, eps)
    tl.store(Y_ptr + rows64[:, None] * stride_ym + offs_h[None, :], y.to(Y_ptr.dtype.element_ty), mask=mask)


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


def bias_residual_layernorm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """LayerNorm(x + bias + residual) over the last dim. x, residual ``[N, H]``; bias (or None), weight, ln_bias
    ``[H]``. Returns a new contiguous ``[N, H]`` tensor of x's dtype."""
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
        HAS_BIAS=bias is not None,
        BLOCK_ROWS=block_rows,
        BLOCK_H=block_h,
        num_warps=num_warps,
    )
    return y


def bias_residual_layernorm_ref(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """PyTorch reference, computed in fp32 (float64 for float64 inputs) and returned in x's dtype."""
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.to(work) + residual.to(work)
    if bias is not None:
        h = h + bias.to(work)
    y = torch.nn.functional.layer_norm(h, (h.shape[-1],), weight.to(work), ln_bias.to(work), eps)
    return y.to(x.dtype)
