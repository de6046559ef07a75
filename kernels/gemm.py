"""Linear layer with a fused epilogue: ``y = act(x @ W^T + b)``.

Shapes (nn.Linear layout): ``x`` ``[M, K]`` (M token rows), ``W`` ``[N, K]``, ``b`` ``[N]`` or None, ``y`` ``[M, N]``.
(The op seam calls these ``[N, K]``, ``[M, K]`` and ``[N, M]``; inside this file M is rows, N is output features.)

Activations, applied in fp32 to the fp32 accumulator before the single rounding to the output dtype:

* ``None``        -- identity
* ``"gelu"``      -- exact GELU, ``0.5 z (1 + erf(z / sqrt(2)))``
* ``"gelu_tanh"`` -- HF ``gelu_new``, ``0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))``, evaluated as
  ``z * sigmoid(2u)``, which is the same function and needs no ``tanh`` (not portable across Triton versions)
* ``"relu"``      -- ``max(z, 0)``

Design: one program per ``BLOCK_M x BLOCK_N`` output tile, K streamed in ``BLOCK_K`` slices, tiles visited in
``GROUP_M``-row super-groups so neighbouring programs reuse the same W columns from L2 (Triton tutorial 03).
fp16/bf16 operands accumulate in fp32 on tensor cores. fp32 operands use ``input_precision="tf32x3"``: each operand
is split into a TF32 high part and a TF32 remainder, and ``hi*hi + hi*lo + lo*hi`` run as three TF32 tensor-core
MMAs with fp32 accumulation -- fp32-level accuracy (never plain TF32) at tensor-core rates instead of FFMA loops.
Emulated on the CPU (``benchmarks/results/static/README.md``), its error against fp64 is 1.0-1.3x that of true fp32
products, against 300-1000x for plain TF32. The epilogue saves a full read + write of the ``[M, N]`` activation (the
FFN up-projection's output is the largest tensor in a BERT layer).

On speed versus cuBLAS: ``benchmarks/bench_kernels.py`` measures this kernel against bare ``torch.mm`` and against
``torch.addmm`` + ``F.gelu``. Tuning: a short per-target candidate list (:data:`_TILES`) per operand size and row
class, filtered by :func:`_prune_gemm_configs`, keyed by row class (not every token count) and cached on disk.

Training: ``linear(..., save_pre=True)`` also stores the pre-activation, and :func:`linear_backward` turns the
output's gradient into ``dX``, ``dW`` and ``db`` (the activation's derivative in one elementwise kernel, both products
on the kernel above).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .target import current_target

ACTIVATIONS = (None, "gelu", "gelu_tanh", "relu")

_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


# Candidate tiles per tensor-core kind and row class: (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages). A few per
# class, so a first call times at most a handful. "wgmma" (sm_90) tiles have >= 64 rows per warp group of 4 warps,
# the smallest tile Hopper's warp-group MMA takes (smaller ones fall back to mma.sync); "mma" is Ampere's mma.sync.
# fp32 operands run as tf32x3 (three tensor-core products each); on sm_80 their split operands live in registers, and
# tiles with 64 accumulators per thread spill (0.3-1 KB), so Ampere's fp32 tiles keep at most 32.
# benchmarks/static_gpu.py compiles every (class, dtype, activation) for sm_80 and sm_90 and the test suite checks
# that none spills or overflows shared memory; benchmarks/results/static/ has the figures.
_TILES = {
    # 16-bit operands (fp16, bf16)
    (2, "wgmma", "small"): [(64, 64, 64, 4, 4), (64, 128, 64, 4, 4)],
    (2, "wgmma", "medium"): [(64, 128, 64, 4, 4), (128, 128, 64, 8, 4), (64, 64, 64, 4, 4)],
    (2, "wgmma", "large"): [(128, 256, 64, 8, 3), (128, 128, 64, 8, 4), (128, 128, 64, 4, 4), (64, 128, 64, 4, 4)],
    (2, "mma", "small"): [(16, 64, 128, 4, 3), (32, 64, 64, 4, 4)],
    (2, "mma", "medium"): [(64, 128, 64, 4, 4), (64, 64, 32, 4, 5), (128, 128, 32, 4, 4)],
    (2, "mma", "large"): [(128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 32, 4, 4), (128, 64, 32, 4, 4)],
    # fp32 operands (tf32x3)
    (4, "wgmma", "small"): [(64, 64, 32, 4, 3), (64, 128, 32, 4, 3)],
    (4, "wgmma", "medium"): [(64, 128, 32, 4, 3), (128, 128, 32, 8, 3), (64, 64, 32, 4, 4)],
    (4, "wgmma", "large"): [(128, 128, 32, 8, 3), (128, 64, 32, 4, 3), (64, 128, 32, 4, 3)],
    (4, "mma", "small"): [(32, 64, 32, 4, 3), (16, 64, 64, 4, 3)],
    (4, "mma", "medium"): [(64, 64, 32, 4, 3), (32, 128, 32, 4, 3)],
    (4, "mma", "large"): [(128, 64, 32, 8, 3), (64, 128, 32, 8, 3), (64, 64, 32, 4, 4)],
}
_ROW_CLASSES = ((64, "small"), (512, "medium"), (None, "large"))  # M <= 64 (pooler, one query), M <= 512, more
# The GELU epilogues (libdevice erff for "gelu", exp for "gelu_tanh") need registers per element; at 128 fp32
# accumulators per thread (128x256 and 256x128 tiles on 8 warps, 128x128 on 4) they spill, so both keep tiles with at
# most 64 accumulators per thread.
_GELU_MAX_ACC_PER_THREAD = 64
# The backward's dW = dZ^T X reads both operands transposed (unit stride along rows); on sm_80 the 5-stage 64x64x32
# tile then spills 4 B (benchmarks/results/static/), so transposed activations keep at most 4 stages there.
_TRANSPOSED_MAX_STAGES_MMA = 4


def row_bucket(m: int) -> int:
    """The autotune key for ``m`` rows: the upper bound of its row class (64, 512, or 4096 for anything larger),
    so new token counts reuse the tuning of their class instead of re-tuning per power of two."""
    for bound, _ in _ROW_CLASSES[:-1]:
        if m <= bound:
            return bound
    return 4096


def _row_class(bucket: int) -> str:
    return next(name for bound, name in _ROW_CLASSES if bound is None or bucket <= bound)


def _gemm_configs() -> list[triton.Config]:
    """Every candidate tile once; :func:`_prune_gemm_configs` picks the ones for the target, dtype and rows."""
    if _INTERPRETING:  # one config: the interpreter runs programs one by one, autotuning would only cost time
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "GROUP_M": 4}, num_warps=4,
                              num_stages=1)]
    tiles = sorted({t for group in _TILES.values() for t in group}, reverse=True)
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": 8}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in tiles
    ]


GEMM_CONFIGS = _gemm_configs()


def _tile(cfg: triton.Config) -> tuple[int, int, int, int, int]:
    kw = cfg.kwargs
    return kw["BLOCK_M"], kw["BLOCK_N"], kw["BLOCK_K"], cfg.num_warps, cfg.num_stages


def _prune_gemm_configs(configs, named_args, **kwargs):
    """The candidates of :data:`_TILES` for the target's tensor cores, the operand size and the row class, less
    those whose pipelined A/B tiles exceed the target's shared memory and, for the GELU epilogues, those with more
    than :data:`_GELU_MAX_ACC_PER_THREAD` accumulators per thread (and, on mma, transposed activations' tiles with
    more than :data:`_TRANSPOSED_MAX_STAGES_MMA` stages). Always keeps at least one config."""
    target = current_target()
    elem = named_args["X_ptr"].element_size()
    wanted = _TILES[(elem, "wgmma" if target.wgmma else "mma", _row_class(named_args["M_BUCKET"]))]
    kept = []
    for cfg in configs:
        bm, bn, bk, warps, stages = _tile(cfg)
        if (bm, bn, bk, warps, stages) not in wanted:
            continue
        if stages * (bm + bn) * bk * elem > target.smem:
            continue
        if kwargs.get("ACTIVATION") in ("gelu", "gelu_tanh") and bm * bn > _GELU_MAX_ACC_PER_THREAD * 32 * warps:
            continue
        if not target.wgmma and named_args["stride_xk"] != 1 and stages > _TRANSPOSED_MAX_STAGES_MMA:
            continue
        kept.append(cfg)
    return kept or [min(configs, key=lambda c: (c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"], c.num_stages))]


@triton.jit
def _gelu_tanh(z):
    # 0.5 z (1 + tanh(u)) == z * sigmoid(2u) == z / (1 + exp(-2u)),  u = sqrt(2/pi) (z + 0.044715 z^3)
    u = 0.7978845608028654 * (z + 0.044715 * z * z * z)
    return z / (1.0 + tl.exp(-2.0 * u))


@triton.autotune(
    configs=GEMM_CONFIGS, key=["M_BUCKET", "N", "K"], prune_configs_by={"early_config_prune": _prune_gemm_configs},
    cache_results=True,  # chosen configs persist in Triton's cache dir: a second process does not tune again
)
@triton.heuristics({"EVEN_K": lambda args: args["K"] % args["BLOCK_K"] == 0})
@triton.jit
def _linear_kernel(
    X_ptr,  # [M, K] activations
    W_ptr,  # [N, K] weight (nn.Linear layout), read as W^T tiles [BLOCK_K, BLOCK_N]
    B_ptr,  # [N] bias (unused when HAS_BIAS is False)
    Y_ptr,  # [M, N] output
    Z_ptr,  # [M, N] pre-activation x @ W^T + b, in Y's dtype (SAVE_PRE only: training keeps it for the backward)
    M, N, K,
    M_BUCKET,  # row_bucket(M): autotune key only, so a new token count does not re-tune
    stride_xm, stride_xk,
    stride_wn, stride_wk,
    stride_ym, stride_yn,
    HAS_BIAS: tl.constexpr,
    ACTIVATION: tl.constexpr,  # None | "gelu" | "gelu_tanh" | "relu"
    FP32: tl.constexpr,  # fp32 operands: tf32x3 products (fp32 accuracy on tensor cores)
    SAVE_PRE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    EVEN_K: tl.constexpr,
):
    # Grouped tile order: GROUP_M tile-rows share each W column panel while it is hot in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    group_size = GROUP_M * num_pid_n
    first_pid_m = (pid // group_size) * GROUP_M
    group_rows = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + (pid % group_size) % group_rows
    pid_n = (pid % group_size) // group_rows

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N]
    offs_k = tl.arange(0, BLOCK_K)  # [BLOCK_K]
    # Rows/columns past the edge are wrapped onto valid ones (their results are never stored), so the main loop
    # needs no M/N masks.
    rows = (offs_m % M).to(tl.int64)
    cols = offs_n % N
    x_ptrs = X_ptr + rows[:, None] * stride_xm + offs_k[None, :] * stride_xk  # [BLOCK_M, BLOCK_K]
    w_ptrs = W_ptr + cols[None, :] * stride_wn + offs_k[:, None] * stride_wk  # [BLOCK_K, BLOCK_N]

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        if EVEN_K:
            x = tl.load(x_ptrs)
            w = tl.load(w_ptrs)
        else:
            k_left = K - k * BLOCK_K
            x = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            w = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        if FP32:
            acc = tl.dot(x, w, acc, input_precision="tf32x3")
        else:
            acc = tl.dot(x, w, acc)
        x_ptrs += BLOCK_K * stride_xk
        w_ptrs += BLOCK_K * stride_wk

    # Epilogue in fp32: bias, activation, one rounding.
    if HAS_BIAS:
        acc += tl.load(B_ptr + cols).to(tl.float32)[None, :]
    y_offs = offs_m.to(tl.int64)[:, None] * stride_ym + offs_n[None, :] * stride_yn  # [BLOCK_M, BLOCK_N]
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if SAVE_PRE:  # same strides as Y
        tl.store(Z_ptr + y_offs, acc.to(Z_ptr.dtype.element_ty), mask=mask)
    if ACTIVATION == "gelu":
        acc = 0.5 * acc * (1.0 + tl.math.erf(acc * 0.7071067811865476))
    elif ACTIVATION == "gelu_tanh":
        acc = _gelu_tanh(acc)
    elif ACTIVATION == "relu":
        acc = tl.maximum(acc, 0.0)
    tl.store(Y_ptr + y_offs, acc.to(Y_ptr.dtype.element_ty), mask=mask)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None = None,
    save_pre: bool = False,
):
    """act(x @ weight.T + bias): x ``[rows, K]`` (any strides), weight ``[out, K]`` (any strides), bias ``[out]`` or
    None -> a new contiguous ``[rows, out]`` tensor of x's dtype. ``save_pre`` (training): also return the
    pre-activation ``x @ weight.T + bias`` (same shape and dtype), which :func:`linear_backward` reads."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be [rows, K] and weight [out, K]; got {list(x.shape)} and {list(weight.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or weight.dtype != x.dtype:
        raise ValueError(f"x and weight must share a float32/float16/bfloat16 dtype; got {x.dtype} and {weight.dtype}")
    if bias is not None and (bias.shape != (weight.shape[0],) or bias.dtype != x.dtype or bias.stride(0) != 1):
        raise ValueError(
            f"bias must be a contiguous [{weight.shape[0]}] of {x.dtype}; got {list(bias.shape)} of {bias.dtype}"
        )
    if weight.device != x.device or (bias is not None and bias.device != x.device):
        raise ValueError(f"x, weight and bias must share a device; got {x.device}, {weight.device}")

    m, k = x.shape
    n = weight.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    pre = torch.empty((m, n), dtype=x.dtype, device=x.device) if save_pre else None
    if m == 0 or n == 0:
        return (y, pre) if save_pre else y

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]),)

    _linear_kernel[grid](
        x, weight, bias if bias is not None else y, y, pre if pre is not None else y,
        m, n, k,
        row_bucket(m),
        x.stride(0), x.stride(1),
        weight.stride(0), weight.stride(1),
        y.stride(0), y.stride(1),
        HAS_BIAS=bias is not None,
        ACTIVATION=activation,
        FP32=x.dtype == torch.float32,
        SAVE_PRE=save_pre,
    )
    return (y, pre) if save_pre else y


# ----------------------------------------------------------------------------------------------------------------
# Backward (training): dZ = dY * act'(Z) in one elementwise kernel, then dX = dZ W and dW = dZ^T X on the forward's
# GEMM kernel (through strided views: no transposed copies), db = the column sums of dZ.
# ----------------------------------------------------------------------------------------------------------------

@triton.jit
def _activation_bwd_kernel(
    dY_ptr,  # [M, N] gradient of the activation's output, contiguous
    Z_ptr,  # [M, N] pre-activation (linear(..., save_pre=True)), contiguous
    dZ_ptr,  # [M, N] output, contiguous
    numel,
    ACTIVATION: tl.constexpr,  # "gelu" | "gelu_tanh" | "relu"
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    z = tl.load(Z_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    dy = tl.load(dY_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if ACTIVATION == "gelu":  # d/dz [z Phi(z)] = Phi(z) + z phi(z)
        grad = 0.5 * (1.0 + tl.math.erf(z * 0.7071067811865476)) + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)
    elif ACTIVATION == "gelu_tanh":  # d/dz [z sigmoid(2u)] = sig + z sig (1 - sig) 2 u'
        u = 0.7978845608028654 * (z + 0.044715 * z * z * z)
        sig = 1.0 / (1.0 + tl.exp(-2.0 * u))
        grad = sig + z * sig * (1.0 - sig) * 2.0 * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * z * z)
    else:  # relu
        grad = tl.where(z > 0.0, 1.0, 0.0)
    tl.store(dZ_ptr + offs, (dy * grad).to(dZ_ptr.dtype.element_ty), mask=ok)


def linear_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    pre: torch.Tensor | None,
    activation: str | None = None,
    needs: tuple[bool, bool, bool] = (True, True, True),
):
    """Gradients ``(dx, dweight, dbias)`` of :func:`linear` for the output's gradient ``dy`` ``[rows, out]``;
    ``pre``: the pre-activation the forward returned with ``save_pre`` (None without an activation). ``needs``:
    which of the three to compute (the others are None)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    m, n = x.shape[0], weight.shape[0]
    if dy.shape != (m, n) or dy.dtype != x.dtype:
        raise ValueError(f"dy must be [{m}, {n}] of {x.dtype}, got {list(dy.shape)} of {dy.dtype}")
    if activation is not None and (pre is None or pre.shape != dy.shape):
        raise ValueError(f"activation {activation!r} needs the [{m}, {n}] pre-activation from save_pre=True")
    dz = dy
    if activation is not None:
        dy, pre = dy.contiguous(), pre.contiguous()
        dz = torch.empty((m, n), dtype=dy.dtype, device=dy.device)
        if dz.numel():
            block = 1024
            _activation_bwd_kernel[(triton.cdiv(dz.numel(), block),)](dy, pre, dz, dz.numel(), ACTIVATION=activation,
                                                                    BLOCK=block, num_warps=4)
    dx = linear(dz, weight.t(), None) if needs[0] else None  # [rows, out] @ [out, K]
    dw = linear(dz.t(), x.t(), None) if needs[1] else None  # [out, rows] @ [rows, K]
    db = dz.float().sum(0).to(dz.dtype) if needs[2] else None
    return dx, dw, db


def linear_backward_ref(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        activation: str | None = None):
    """Reference for :func:`linear_backward`: autograd through :func:`linear_ref` (fp32 math)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    y = linear_ref(*leaves, activation)
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, dy))
    return tuple(next(grads) if t is not None else None for t in leaves)


def linear_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None = None,
    upcast: bool = True,
) -> torch.Tensor:
    """PyTorch reference in x's dtype. ``upcast``: computed in fp32 and rounded once. Otherwise eager PyTorch in
    x's dtype (``F.linear``, then the activation on the rounded result) -- the "same dtype" baseline that
    low-precision tolerances are relative to."""
    dtype = x.dtype
    if upcast:
        x, weight, bias = x.float(), weight.float(), bias.float() if bias is not None else None
    y = torch.nn.functional.linear(x, weight, bias)
    if activation == "gelu":
        y = torch.nn.functional.gelu(y)
    elif activation == "gelu_tanh":
        y = torch.nn.functional.gelu(y, approximate="tanh")
    elif activation == "relu":
        y = torch.relu(y)
    return y.to(dtype)
