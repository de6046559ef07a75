"""Flash-style multi-head attention for encoders: padded batches with any key-padding mask, or packed sequences.

Math, per sequence and head, with ``D`` the head dim and ``valid(j)`` whether key ``j`` is a real token::

    s_ij   = q_i . k_j / sqrt(D) + bias_ij            for valid(j), -inf otherwise
    out_i  = sum_j softmax_j(s_ij) v_j

``bias_ij`` is zero unless a relative-position bias is given (MPNet, :mod:`fastbert.encoder.position_bias`):
``bias_ij = distances[h, clamp(p_j - p_i, -M, M) + M]`` with ``distances`` ``[heads, 2M + 1]`` and ``p`` each
token's column in its row -- the row index itself on the padded layout, ``positions[t]`` on the packed one (holes
packed out keep their distances). The kernel computes the clamped distance of each query/key pair of its tile and
gathers the bias from the small table (L1/L2-resident); nothing ``S x S`` is stored.

computed without the ``S x S`` matrix: a program owns ``BLOCK_M`` query rows of one (sequence, head), streams the
keys/values in ``BLOCK_N`` blocks and keeps an online softmax in fp32 -- running max ``m``, running sum ``l`` and
an unnormalised accumulator rescaled by ``exp(m_old - m_new)`` whenever the max grows. Exponentials are base 2 with
``log2(e) / sqrt(D)`` folded into one scale. Products are fp32 (fp16/bf16 operands on tensor cores with fp32
accumulation; fp32 operands with ``input_precision="tf32x3"``: three TF32 tensor-core products per fp32 product,
fp32-level accuracy, never plain TF32 -- see :mod:`fastbert.kernels.gemm`).

Layouts (both read ``q``/``k``/``v`` in place through their strides -- e.g. views into a fused QKV projection
``[tokens, 3, heads, D]`` whose token stride is ``3 * heads * D`` -- and write a contiguous output):

* padded, :func:`attention`: ``[B, S, heads, D]`` plus ``key_mask`` ``[B, S]`` bool (True = real token) or None.
* packed, :func:`attention_varlen`: ``[T, heads, D]``, sequence ``i`` in rows ``cu_seqlens[i]:cu_seqlens[i+1]``.

Work skipping on the padded layout: each program first scans its sequence's mask row (``S`` bytes) for the first
real key ``lo`` and one past the last real key ``hi`` -- on device, no host sync, no extra launch. Key blocks
entirely before ``lo`` or at/after ``hi`` are never loaded (right padding costs nothing past the sequence's length;
holes inside ``[lo, hi)`` are masked). Query rows at or after ``hi`` do no work: a query block entirely past ``hi``
skips the key loop and writes zeros.

Output contract (what :func:`attention_ref` reproduces exactly):

* a query row with at least one valid key (and, padded layout, index ``< hi``): the softmax above;
* a query row whose sequence has no valid key, and padded-layout query rows at index ``>= hi`` (trailing padding):
  zeros. Rows of padding *before* ``hi`` (left padding, holes) are computed like real queries, as in HF's eager
  attention, so e.g. the pooler's first token under left padding matches HF.

Training: ``return_lse=True`` also writes each query row's log-sum-exp, and :func:`attention_backward` /
:func:`attention_varlen_backward` (FlashAttention-2's backward, see "Backward" below) give dQ, dK, dV without bias.

Dropout on the probabilities (train mode, transformers' ``attention_probs_dropout_prob``)::

    out_i = sum_j softmax_j(s_ij) * z_ij v_j,     z_ij = keep_ij / (1 - p)   (0 for every pair when p = 1)

``keep_ij = tl.rand(seed, ((b * heads + h) * L + i) * L + j) >= p`` -- Triton's Philox with the counter of the pair
``(sequence b, head h, query i, key j)`` in a ``[B, heads, L, L]`` grid, ``L`` = the padded length or ``max_seqlen``
-- so the mask depends on the seed and the pair alone, not on tiles: the backward kernels regenerate it (nothing is
stored). The softmax's normaliser and the saved LSE are those of the un-dropped probabilities (as
``dropout(softmax(s))``). :func:`attention_dropout_keep` writes the mask out (tests).
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from .target import current_target

_INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_LOG2E = 1.4426950408889634


@triton.jit
def _attn_keep(seed, p, pid_bh, m, n, L):
    """Dropout mask (True: kept) of query rows ``m`` and key rows ``n`` (within the sequence; ``[M, 1]`` and
    ``[1, N]``, or transposed) of the (sequence, head) ``pid_bh``; ``L``: the side of the counter grid."""
    return tl.rand(seed, (pid_bh.to(tl.int64) * L + m.to(tl.int64)) * L + n.to(tl.int64)) >= p


# Candidate tiles per operand size, tensor-core kind and sequence class: (BLOCK_M, BLOCK_N, num_warps, num_stages).
# "wgmma" (sm_90) needs >= 64 query rows per warp group of 4 warps; "mma" is Ampere's mma.sync. fp32 operands run
# as tf32x3 (three tensor-core products each, split operands in registers), so they get the smaller tiles.
# benchmarks/static_gpu.py compiles every one for sm_80 and sm_90; the test suite checks none spills or overflows.
_TILES = {
    (2, "wgmma", "short"): [(64, 32, 4, 2), (32, 32, 2, 2)],
    (2, "wgmma", "medium"): [(64, 64, 4, 3), (64, 32, 4, 2), (128, 64, 8, 3)],
    (2, "wgmma", "long"): [(128, 64, 4, 3), (128, 128, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3)],
    (2, "mma", "short"): [(32, 32, 2, 2), (16, 32, 2, 2)],
    (2, "mma", "medium"): [(64, 64, 4, 3), (64, 32, 4, 2), (128, 64, 8, 3)],
    (2, "mma", "long"): [(128, 64, 8, 3), (128, 128, 8, 3), (128, 32, 4, 3), (64, 64, 4, 3)],
    (4, "wgmma", "short"): [(64, 32, 4, 2), (16, 32, 2, 2)],
    (4, "wgmma", "medium"): [(64, 32, 4, 2)],
    (4, "wgmma", "long"): [(128, 64, 8, 3), (64, 32, 4, 2)],
    (4, "mma", "short"): [(32, 32, 4, 2), (16, 32, 2, 2)],
    (4, "mma", "medium"): [(64, 32, 4, 3), (64, 32, 8, 2)],
    (4, "mma", "long"): [(64, 32, 4, 3), (64, 32, 8, 2)],
    # fp32 + MPNet's bias at D > 32 on mma, any sequence class (64-row tiles spilled; with a key mask 32x32 too, 12 B)
    (4, "mma", "bias"): [(32, 32, 4, 2), (16, 32, 2, 2)], (4, "mma", "bias-masked"): [(16, 32, 2, 2)],
}
_SEQ_CLASSES = ((32, "short"), (128, "medium"), (None, "long"))
# With probability dropout at D = 64 (triton 3.9 static check, medium class): 16-bit 64x64 spilled on sm_80 and sm_90,
# fp32 64x32 on 8 warps on sm_80. Left out of the candidates for dropout at D > 32.
_DROPOUT_SPILLS = {2: {(64, 64, 4, 3)}, 4: {(64, 32, 8, 2)}}


def seq_bucket(max_seqlen: int) -> int:
    """The autotune key for sequences of up to ``max_seqlen`` tokens: the upper bound of its class (32, 128, or 512
    for anything longer), so every batch of a class shares one tuning."""
    for bound, _ in _SEQ_CLASSES[:-1]:
        if max_seqlen <= bound:
            return bound
    return 512


def _seq_class(bucket: int) -> str:
    return next(name for bound, name in _SEQ_CLASSES if bound is None or bucket <= bound)


def _attention_configs() -> list[triton.Config]:
    """Every candidate tile once; :func:`_prune_attention_configs` picks the ones for the target and problem."""
    if _INTERPRETING:  # the interpreter runs programs one by one: one config, no autotuning
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=1)]
    tiles = sorted({t for group in _TILES.values() for t in group}, reverse=True)
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in tiles]


ATTENTION_CONFIGS = _attention_configs()


def _prune_attention_configs(configs, named_args, **kwargs):
    """The candidates of :data:`_TILES` for the operand size, the target's tensor cores and the sequence class,
    less those whose Q tile and pipelined K/V tiles exceed the target's shared memory, and at head dim > 64 those
    over 128 x 64 (the fp32 accumulator and score tiles no longer fit in registers). Always keeps one config."""
    elem, block_d = named_args["Q_ptr"].element_size(), kwargs["BLOCK_D"]
    kind = "wgmma" if current_target().wgmma else "mma"
    seq_class = _seq_class(named_args["SEQ_BUCKET"])
    if (elem, kind) == (4, "mma") and kwargs.get("HAS_BIAS") and block_d > 32:
        seq_class = "bias-masked" if kwargs.get("HAS_MASK") else "bias"
    wanted = _TILES[(elem, kind, seq_class)]
    if kwargs.get("HAS_DROPOUT") and block_d > 32:  # the mask's Philox rounds need registers: these tiles spilled
        wanted = [t for t in wanted if t not in _DROPOUT_SPILLS[elem]]
    return keep_tiles(configs, wanted, elem, block_d)


def keep_tiles(configs, wanted, elem: int, block_d: int) -> list:
    """The configs among ``wanted`` tiles (``(BLOCK_M, BLOCK_N, num_warps, num_stages)``) that fit the target (see
    :func:`_prune_attention_configs`); shared with :mod:`fastbert.kernels.disentangled`."""
    target = current_target()
    kept = []
    for cfg in configs:
        bm, bn = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"]
        if (bm, bn, cfg.num_warps, cfg.num_stages) not in wanted:
            continue
        if (bm + 2 * cfg.num_stages * bn) * block_d * elem > target.smem:
            continue
        if block_d > 64 and bm * bn > 128 * 64:
            continue
        kept.append(cfg)
    return kept or [min(configs, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]


# Long on purpose: one program's whole life (locate the row block, stream K/V tiles with the online softmax and the
# optional relative-position bias, write out) reads best in one body; about 45 of its lines are the argument list
# with each argument's shape.
@triton.autotune(
    configs=ATTENTION_CONFIGS,
    key=["SEQ_BUCKET", "BLOCK_D", "HAS_MASK", "VARLEN", "HAS_BIAS", "HAS_DROPOUT"],
    prune_configs_by={"early_config_prune": _prune_attention_configs},
    cache_results=True,  # chosen configs persist in Triton's cache dir: a second process does not tune again
)
@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _attention_fwd_kernel(
    Q_ptr, K_ptr, V_ptr,  # [B, S, heads, D] (padded) or [T, heads, D] (VARLEN), any strides
    O_ptr,  # like q, contiguous
    Mask_ptr,  # [B, S] uint8 key mask, 1 = real token (HAS_MASK only)
    CuSeqlens_ptr,  # [B + 1] int32 sequence starts (VARLEN only)
    Pos_ptr,  # [T] int32 column of each packed token (HAS_BIAS and VARLEN only)
    Bias_ptr,  # [heads, 2 * MAX_DISTANCE + 1] fp32 bias per clamped key - query distance (HAS_BIAS only)
    Lse_ptr,  # [B, heads, S] (padded) or [heads, T] (VARLEN) fp32 base-2 log-sum-exp per query row (SAVE_LSE only)
    S,  # padded: sequence length; VARLEN: unused
    num_heads,
    SEQ_BUCKET,  # seq_bucket(max sequence length): autotune key only
    stride_qb, stride_qs, stride_qh, stride_qd,  # VARLEN: stride_*b are 0, the token offset comes from cu_seqlens
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh,
    stride_mb, stride_ms,
    stride_bias_h,
    stride_lb, stride_lh,  # LSE strides (its row stride is 1; VARLEN: stride_lb is 0)
    qk_scale,  # log2(e) / sqrt(D)
    seed, drop_p, drop_scale, drop_len,  # dropout: Philox seed, p, 1 / (1 - p) (0 if p = 1), L (HAS_DROPOUT only)
    HEAD_DIM: tl.constexpr,  # D
    BLOCK_D: tl.constexpr,  # next_pow2(D), >= 16
    HAS_MASK: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    MAX_DISTANCE: tl.constexpr,  # M: distances are clamped to [-M, M]
    FP32: tl.constexpr,  # fp32 operands: tf32x3 products (fp32 accuracy on tensor cores)
    SAVE_LSE: tl.constexpr,  # training: also write each row's log-sum-exp for the backward
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads

    # Which rows exist (seqlen), which keys may be valid ([key_lo, key_hi)), which query rows do work (< row_end).
    if VARLEN:
        tok0 = tl.load(CuSeqlens_ptr + b).to(tl.int64)
        seqlen = tl.load(CuSeqlens_ptr + b + 1) - tok0.to(tl.int32)
        key_lo = 0
        key_hi = seqlen
    else:
        tok0 = tl.zeros((), dtype=tl.int64)
        seqlen = S
        key_lo = 0
        key_hi = S
        if HAS_MASK:
            key_lo = tl.zeros((), dtype=tl.int32) + S
            key_hi = tl.zeros((), dtype=tl.int32)
            for start in range(0, S, BLOCK_N):
                offs = start + tl.arange(0, BLOCK_N)
                real = tl.load(Mask_ptr + b * stride_mb + offs * stride_ms, mask=offs < S, other=0) != 0
                key_lo = tl.minimum(key_lo, tl.min(tl.where(real, offs, S), axis=0))
                key_hi = tl.maximum(key_hi, tl.max(tl.where(real, offs + 1, 0), axis=0))
    row_end = key_hi

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] query rows within the sequence
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    row_ok = offs_m < row_end
    if HAS_BIAS:
        bias_base = Bias_ptr + h * stride_bias_h + MAX_DISTANCE
        if VARLEN:
            pos_m = tl.load(Pos_ptr + tok0 + offs_m, mask=offs_m < seqlen, other=0)  # [BLOCK_M] columns
        else:
            pos_m = offs_m

    q_base = Q_ptr + b.to(tl.int64) * stride_qb + tok0 * stride_qs + h * stride_qh
    k_base = K_ptr + b.to(tl.int64) * stride_kb + tok0 * stride_ks + h * stride_kh
    v_base = V_ptr + b.to(tl.int64) * stride_vb + tok0 * stride_vs + h * stride_vh
    q = tl.load(
        q_base + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
        mask=row_ok[:, None] & d_ok[None, :], other=0.0,
    )  # [BLOCK_M, BLOCK_D]; rows that do no work are not read

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running max of the scaled (base-2) scores
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)  # running sum of exp2(s - m_i) v

    # Key blocks overlapping [key_lo, key_hi); none at all when this query block lies entirely past row_end.
    lo = (key_lo // BLOCK_N) * BLOCK_N
    hi = tl.where(pid_m * BLOCK_M < row_end, key_hi, lo)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # [BLOCK_N]
        n_ok = offs_n < key_hi
        k = tl.load(
            k_base + offs_n[None, :] * stride_ks + offs_d[:, None] * stride_kd,
            mask=n_ok[None, :] & d_ok[:, None], other=0.0,
        )  # [BLOCK_D, BLOCK_N]
        if FP32:
            s = tl.dot(q, k, input_precision="tf32x3")
        else:
            s = tl.dot(q, k)
        s = s * qk_scale  # [BLOCK_M, BLOCK_N] fp32, base-2 logits
        if HAS_BIAS:
            if VARLEN:
                pos_n = tl.load(Pos_ptr + tok0 + offs_n, mask=n_ok, other=0)  # [BLOCK_N] columns
            else:
                pos_n = offs_n
            dist = tl.minimum(tl.maximum(pos_n[None, :] - pos_m[:, None], -MAX_DISTANCE), MAX_DISTANCE)
            s += tl.load(bias_base + dist) * 1.4426950408889634  # [BLOCK_M, BLOCK_N], to base 2
        valid = n_ok
        if HAS_MASK:
            valid = valid & (tl.load(Mask_ptr + b * stride_mb + offs_n * stride_ms, mask=n_ok, other=0) != 0)
        s = tl.where(valid[None, :], s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no valid key yet: keep exp2 finite
        p = tl.math.exp2(s - m_safe[:, None])  # masked keys -> exactly 0
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_base + offs_n[:, None] * stride_vs + offs_d[None, :] * stride_vd,
            mask=n_ok[:, None] & d_ok[None, :], other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None]
        if HAS_DROPOUT:  # the normaliser l_i keeps every probability; the values see the dropped ones
            p = tl.where(_attn_keep(seed, drop_p, pid_bh, offs_m[:, None], offs_n[None, :], drop_len), p * drop_scale, 0.0)
        if FP32:
            acc = tl.dot(p, v, acc, input_precision="tf32x3")
        else:
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new

    has_keys = (l_i > 0.0) & row_ok
    out = tl.where(has_keys[:, None], acc / tl.where(has_keys, l_i, 1.0)[:, None], 0.0)
    o_base = O_ptr + b.to(tl.int64) * stride_ob + tok0 * stride_os + h * stride_oh
    tl.store(
        o_base + offs_m[:, None] * stride_os + offs_d[None, :],
        out.to(O_ptr.dtype.element_ty),
        mask=(offs_m < seqlen)[:, None] & d_ok[None, :],
    )
    if SAVE_LSE:  # base 2, scaled logits; +inf for rows whose output is the constant 0 (their P is 0)
        lse = tl.where(has_keys, m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0)), float("inf"))
        tl.store(Lse_ptr + b.to(tl.int64) * stride_lb + h * stride_lh + tok0 + offs_m, lse, mask=offs_m < seqlen)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ndim: int, layout: str) -> None:
    if q.dim() != ndim or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k, v must all be {layout}; got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}"
        )
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16) or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k, v must share a float32/float16/bfloat16 dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must share a device; got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] > 256:
        raise ValueError(f"head dim {q.shape[-1]} > 256 is not supported")


def _launch(q, k, v, out, mask, cu_seqlens, batch, seqlen_arg, max_seqlen, q_strides, k_strides, v_strides,
            o_strides, mask_strides, bias=None, positions=None, lse=None, lse_strides=(0, 0), dropout=(0.0, 0)):
    heads, head_dim = q.shape[-2], q.shape[-1]
    block_d = max(16, triton.next_power_of_2(head_dim))

    def grid(meta):
        return (triton.cdiv(max_seqlen, meta["BLOCK_M"]), batch * heads)

    _attention_fwd_kernel[grid](
        q, k, v, out,
        mask if mask is not None else out,
        cu_seqlens if cu_seqlens is not None else out,
        positions if positions is not None else out,
        bias if bias is not None else out,
        lse if lse is not None else out,
        seqlen_arg, heads, seq_bucket(max_seqlen),
        *q_strides, *k_strides, *v_strides, *o_strides, *mask_strides,
        bias.stride(0) if bias is not None else 0,
        *lse_strides,
        _LOG2E / math.sqrt(head_dim),
        *_dropout_args(dropout, max_seqlen),
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        HAS_MASK=mask is not None,
        VARLEN=cu_seqlens is not None,
        HAS_BIAS=bias is not None,
        HAS_DROPOUT=dropout[0] > 0,
        MAX_DISTANCE=(bias.shape[1] - 1) // 2 if bias is not None else 0,
        FP32=q.dtype == torch.float32,
        SAVE_LSE=lse is not None,
    )


def _check_dropout(dropout: float, seed: int) -> tuple[float, int]:
    if isinstance(dropout, bool) or not 0.0 <= dropout <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {dropout!r}")
    return float(dropout), int(seed)


def _dropout_args(dropout: tuple[float, int], max_seqlen: int) -> tuple:
    """``(seed, p, scale, L)`` for the kernels from ``(p, seed)``."""
    p, seed = dropout
    return seed, p, (1.0 / (1.0 - p) if p < 1.0 else 0.0), int(max_seqlen)


def _check_bias(bias: torch.Tensor | None, q: torch.Tensor, heads: int) -> torch.Tensor | None:
    """The relative-position bias table ``[heads, 2M + 1]`` as the kernel reads it: fp32, unit column stride."""
    if bias is None:
        return None
    if bias.dim() != 2 or bias.shape[0] != heads or bias.shape[1] % 2 != 1 or not bias.is_floating_point():
        raise ValueError(f"bias must be a float [heads={heads}, 2 * max_distance + 1] tensor, got "
                         f"{list(bias.shape)} of {bias.dtype}")
    if bias.device != q.device:
        raise ValueError(f"bias is on {bias.device} but q is on {q.device}")
    return bias.float().contiguous()


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
              bias: torch.Tensor | None = None, return_lse: bool = False, *, dropout: float = 0.0, seed: int = 0):
    """dropout(softmax(q k^T / sqrt(D) + bias, keys masked by ``key_mask``)) v.

    q, k, v: ``[B, S, heads, D]``, any strides; key_mask: ``[B, S]`` bool (True = real token) or None; bias: None or
    ``[heads, 2M + 1]``, the bias of each key - query distance clamped to ``[-M, M]`` (module docstring).
    Returns ``[B, S, heads, D]`` contiguous, q's dtype. See the module docstring for rows without valid keys.
    ``return_lse`` (training): also return the ``[B, heads, S]`` fp32 log-sum-exp :func:`attention_backward` reads.
    ``dropout``: probability, with the Philox ``seed`` (the backward needs the same; module docstring).
    """
    _check_qkv(q, k, v, 4, "[B, S, heads, D]")
    drop = _check_dropout(dropout, seed)
    batch, seqlen, heads, head_dim = q.shape
    bias = _check_bias(bias, q, heads)
    key_mask = _check_key_mask(key_mask, q)

    out = torch.empty((batch, seqlen, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((batch, heads, seqlen), dtype=torch.float32, device=q.device) if return_lse else None
    if out.numel() > 0:
        _launch(
            q, k, v, out, key_mask, None, batch, seqlen, seqlen,
            q.stride(), k.stride(), v.stride(), out.stride()[:3],
            key_mask.stride() if key_mask is not None else (0, 0), bias,
            lse=lse, lse_strides=lse.stride()[:2] if lse is not None else (0, 0), dropout=drop,
        )
    return (out, lse) if return_lse else out


def _check_key_mask(key_mask: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor | None:
    """``key_mask`` ``[B, S]`` bool checked against q ``[B, S, heads, D]``, as the uint8 view the kernels read."""
    if key_mask is None:
        return None
    batch, seqlen = q.shape[:2]
    if key_mask.shape != (batch, seqlen) or key_mask.dtype != torch.bool:
        raise ValueError(
            f"key_mask must be a [{batch}, {seqlen}] bool tensor, got {list(key_mask.shape)} of {key_mask.dtype}"
        )
    if key_mask.device != q.device:
        raise ValueError(f"key_mask is on {key_mask.device} but q is on {q.device}")
    return key_mask.view(torch.uint8)  # same bytes, a dtype every Triton version loads


def attention_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
    bias: torch.Tensor | None = None, positions: torch.Tensor | None = None, return_lse: bool = False, *,
    dropout: float = 0.0, seed: int = 0,
):
    """Attention within each packed sequence: q, k, v ``[T, heads, D]`` (any strides), sequence ``i`` in rows
    ``cu_seqlens[i]:cu_seqlens[i+1]`` (int32 ``[B + 1]``, non-decreasing, ``cu_seqlens[-1] <= T``), ``max_seqlen``
    >= the longest sequence. ``bias`` ``[heads, 2M + 1]`` (as :func:`attention`) with ``positions`` ``[T]`` (each
    token's column, any integer dtype), or neither. Returns ``[T, heads, D]`` contiguous; rows outside every
    sequence are left unwritten. ``return_lse`` (training): also return the ``[heads, T]`` fp32 log-sum-exp
    :func:`attention_varlen_backward` reads. ``dropout``, ``seed``: as :func:`attention`."""
    _check_qkv(q, k, v, 3, "[T, heads, D]")
    _check_cu_seqlens(cu_seqlens, max_seqlen, q)
    drop = _check_dropout(dropout, seed)
    bias = _check_bias(bias, q, q.shape[1])
    if (bias is None) != (positions is None):
        raise ValueError("bias and positions go together: the bias reads each token's position")
    if positions is not None:
        if positions.shape != (q.shape[0],) or positions.dtype.is_floating_point or positions.device != q.device:
            raise ValueError(f"positions must be an integer [{q.shape[0]}] tensor on {q.device}, got "
                             f"{list(positions.shape)} of {positions.dtype} on {positions.device}")
        positions = positions.to(torch.int32).contiguous()
    cu_seqlens = cu_seqlens.contiguous()
    batch = cu_seqlens.numel() - 1
    total, heads, head_dim = q.shape

    out = torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device)
    lse = torch.empty((heads, total), dtype=torch.float32, device=q.device) if return_lse else None
    if out.numel() > 0 and batch > 0 and max_seqlen > 0:
        _launch(
            q, k, v, out, None, cu_seqlens, batch, 0, int(max_seqlen),
            (0, *q.stride()), (0, *k.stride()), (0, *v.stride()), (0, *out.stride()[:2]), (0, 0), bias, positions,
            lse=lse, lse_strides=(0, lse.stride(0)) if lse is not None else (0, 0), dropout=drop,
        )
    return (out, lse) if return_lse else out


def _check_cu_seqlens(cu_seqlens: torch.Tensor, max_seqlen: int, q: torch.Tensor) -> None:
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1 or cu_seqlens.dtype != torch.int32:
        raise ValueError(f"cu_seqlens must be a 1-D int32 tensor [B + 1], got {list(cu_seqlens.shape)} "
                         f"of {cu_seqlens.dtype}")
    if cu_seqlens.device != q.device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but q is on {q.device}")
    if int(max_seqlen) < 0:
        raise ValueError(f"max_seqlen must be >= 0, got {max_seqlen}")


# ----------------------------------------------------------------------------------------------------------------
# Backward (training)
# ----------------------------------------------------------------------------------------------------------------
#
# FlashAttention-2's backward, with P recomputed from the log-sum-exp the forward saved (``return_lse``): for a query
# row i with ``lse_i`` (base 2, scaled logits) and ``delta_i = dO_i . O_i``,
#
#     P_ij  = exp2(s_ij * log2(e) / sqrt(D) - lse_i)        (0 for invalid keys and for rows whose output is 0)
#     dV_j  = sum_i P_ij z_ij dO_i
#     dS_ij = P_ij (z_ij dO_i . V_j - delta_i)
#     dK_j  = sum_i dS_ij Q_i / sqrt(D)        dQ_i = sum_j dS_ij K_j / sqrt(D)
#
# with dropout's ``z_ij`` (module docstring; 1 without dropout) regenerated from the seed: ``delta_i = dO_i . O_i`` is
# still ``sum_j P_ij z_ij dO_i . V_j``, so the softmax's backward needs nothing else.
# Two kernels, no atomics: one program per (key block, sequence, head) streams the query blocks for dK and dV; one per
# (query block, sequence, head) streams the key blocks for dQ. The key range, masks and rows with no work are those
# of the forward (module docstring): a row whose output is the constant 0 has ``lse = +inf``, hence P = 0 and no
# gradient. The relative-position bias has no backward (training MPNet runs on the PyTorch backend).


@triton.jit
def _mm(a, b, FP32: tl.constexpr):
    """a @ b in fp32: tf32x3 products for fp32 operands (as the forward), tensor cores for 16-bit ones."""
    if FP32:
        return tl.dot(a, b, input_precision="tf32x3")
    else:
        return tl.dot(a, b)


@triton.jit
def _key_range(Mask_ptr, CuSeqlens_ptr, b, S, stride_mb, stride_ms, HAS_MASK: tl.constexpr, VARLEN: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """(first token row, rows, first valid key, one past the last valid key) of sequence ``b``, as the forward."""
    if VARLEN:
        tok0 = tl.load(CuSeqlens_ptr + b).to(tl.int64)
        seqlen = tl.load(CuSeqlens_ptr + b + 1) - tok0.to(tl.int32)
        key_lo = tl.zeros((), dtype=tl.int32)
        key_hi = seqlen
    else:
        tok0 = tl.zeros((), dtype=tl.int64)
        seqlen = tl.zeros((), dtype=tl.int32) + S
        key_lo = tl.zeros((), dtype=tl.int32)
        key_hi = seqlen
        if HAS_MASK:
            key_lo = tl.zeros((), dtype=tl.int32) + S
            key_hi = tl.zeros((), dtype=tl.int32)
            for start in range(0, S, BLOCK_N):
                offs = start + tl.arange(0, BLOCK_N)
                real = tl.load(Mask_ptr + b * stride_mb + offs * stride_ms, mask=offs < S, other=0) != 0
                key_lo = tl.minimum(key_lo, tl.min(tl.where(real, offs, S), axis=0))
                key_hi = tl.maximum(key_hi, tl.max(tl.where(real, offs + 1, 0), axis=0))
    return tok0, seqlen, key_lo, key_hi


# Over 80 lines for the forward kernel's reason: one program's whole life (its key block, the stream of query blocks,
# the two accumulators, the stores) reads best in one body, and a third of it is the argument list with shapes.
@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _attention_bwd_dkdv_kernel(
    Q_ptr, K_ptr, V_ptr,  # [B, S, heads, D] (padded) or [T, heads, D] (VARLEN), any strides
    dO_ptr,  # like q, contiguous: the output's gradient
    Lse_ptr, Delta_ptr,  # [B, heads, S] or [heads, T] fp32: the forward's log-sum-exp, rowsum(dO * O)
    dK_ptr, dV_ptr,  # like q, contiguous
    Mask_ptr,  # [B, S] uint8 key mask (HAS_MASK only)
    CuSeqlens_ptr,  # [B + 1] int32 (VARLEN only)
    S, num_heads,
    stride_qb, stride_qs, stride_qh, stride_qd,  # VARLEN: stride_*b are 0
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh,  # dO, dK and dV (all contiguous, same shape)
    stride_mb, stride_ms,
    stride_lb, stride_lh,  # LSE and delta (row stride 1)
    qk_scale,  # log2(e) / sqrt(D)
    sm_scale,  # 1 / sqrt(D)
    seed, drop_p, drop_scale, drop_len,  # dropout, as the forward's (HAS_DROPOUT only)
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads
    tok0, seqlen, key_lo, key_hi = _key_range(Mask_ptr, CuSeqlens_ptr, b, S, stride_mb, stride_ms, HAS_MASK, VARLEN,
                                              BLOCK_N)
    row_end = key_hi  # query rows at or after it have output 0

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N] key rows within the sequence
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    n_ok = offs_n < key_hi
    valid = n_ok
    if HAS_MASK:
        valid = valid & (tl.load(Mask_ptr + b * stride_mb + offs_n * stride_ms, mask=n_ok, other=0) != 0)

    k_base = K_ptr + b.to(tl.int64) * stride_kb + tok0 * stride_ks + h * stride_kh
    v_base = V_ptr + b.to(tl.int64) * stride_vb + tok0 * stride_vs + h * stride_vh
    kv_mask = n_ok[:, None] & d_ok[None, :]
    k = tl.load(k_base + offs_n[:, None] * stride_ks + offs_d[None, :] * stride_kd, mask=kv_mask, other=0.0)
    v = tl.load(v_base + offs_n[:, None] * stride_vs + offs_d[None, :] * stride_vd, mask=kv_mask, other=0.0)
    # [BLOCK_N, BLOCK_D] each

    q_base = Q_ptr + b.to(tl.int64) * stride_qb + tok0 * stride_qs + h * stride_qh
    o_off = b.to(tl.int64) * stride_ob + tok0 * stride_os + h * stride_oh
    l_base = b.to(tl.int64) * stride_lb + h * stride_lh + tok0
    dk = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    # Query blocks before row_end, and none when this key block holds no valid key.
    has_keys = (pid_n * BLOCK_N < key_hi) & (pid_n * BLOCK_N + BLOCK_N > key_lo)
    hi = tl.where(has_keys, row_end, 0)
    for start_m in range(0, hi, BLOCK_M):
        offs_m = start_m + offs_m0  # [BLOCK_M]
        m_ok = offs_m < row_end
        qd_mask = m_ok[:, None] & d_ok[None, :]
        q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd, mask=qd_mask, other=0.0)
        do = tl.load(dO_ptr + o_off + offs_m[:, None] * stride_os + offs_d[None, :], mask=qd_mask, other=0.0)
        lse = tl.load(Lse_ptr + l_base + offs_m, mask=m_ok, other=float("inf"))  # [BLOCK_M]
        delta = tl.load(Delta_ptr + l_base + offs_m, mask=m_ok, other=0.0)  # [BLOCK_M]
        s_t = _mm(k, tl.trans(q), FP32) * qk_scale  # [BLOCK_N, BLOCK_M] base-2 logits, transposed
        p_t = tl.where(valid[:, None], tl.math.exp2(s_t - lse[None, :]), 0.0)
        pz_t = p_t
        if HAS_DROPOUT:
            keep_t = _attn_keep(seed, drop_p, pid_bh, offs_m[None, :], offs_n[:, None], drop_len)  # [BLOCK_N, BLOCK_M]
            pz_t = tl.where(keep_t, p_t * drop_scale, 0.0)
        if FP32:
            dv += _mm(pz_t, do, FP32)
        else:
            dv += _mm(pz_t.to(do.dtype), do, FP32)
        dp_t = _mm(v, tl.trans(do), FP32)  # [BLOCK_N, BLOCK_M]
        if HAS_DROPOUT:
            dp_t = tl.where(keep_t, dp_t * drop_scale, 0.0)
        ds_t = p_t * (dp_t - delta[None, :])
        if FP32:
            dk += _mm(ds_t, q, FP32)
        else:
            dk += _mm(ds_t.to(q.dtype), q, FP32)

    out_mask = (offs_n < seqlen)[:, None] & d_ok[None, :]
    out_offs = o_off + offs_n[:, None] * stride_os + offs_d[None, :]
    tl.store(dK_ptr + out_offs, (dk * sm_scale).to(dK_ptr.dtype.element_ty), mask=out_mask)
    tl.store(dV_ptr + out_offs, dv.to(dV_ptr.dtype.element_ty), mask=out_mask)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _attention_bwd_dq_kernel(
    Q_ptr, K_ptr, V_ptr,  # as _attention_bwd_dkdv_kernel
    dO_ptr, Lse_ptr, Delta_ptr,
    dQ_ptr,  # like q, contiguous
    Mask_ptr, CuSeqlens_ptr,
    S, num_heads,
    stride_qb, stride_qs, stride_qh, stride_qd,
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh,  # dO and dQ
    stride_mb, stride_ms,
    stride_lb, stride_lh,
    qk_scale, sm_scale,
    seed, drop_p, drop_scale, drop_len,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_MASK: tl.constexpr,
    VARLEN: tl.constexpr,
    HAS_DROPOUT: tl.constexpr,
    FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads
    tok0, seqlen, key_lo, key_hi = _key_range(Mask_ptr, CuSeqlens_ptr, b, S, stride_mb, stride_ms, HAS_MASK, VARLEN,
                                              BLOCK_N)
    row_end = key_hi

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] query rows within the sequence
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    m_ok = offs_m < row_end
    qd_mask = m_ok[:, None] & d_ok[None, :]
    q_base = Q_ptr + b.to(tl.int64) * stride_qb + tok0 * stride_qs + h * stride_qh
    o_off = b.to(tl.int64) * stride_ob + tok0 * stride_os + h * stride_oh
    l_base = b.to(tl.int64) * stride_lb + h * stride_lh + tok0
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd, mask=qd_mask, other=0.0)
    do = tl.load(dO_ptr + o_off + offs_m[:, None] * stride_os + offs_d[None, :], mask=qd_mask, other=0.0)
    lse = tl.load(Lse_ptr + l_base + offs_m, mask=m_ok, other=float("inf"))  # [BLOCK_M]
    delta = tl.load(Delta_ptr + l_base + offs_m, mask=m_ok, other=0.0)  # [BLOCK_M]

    k_base = K_ptr + b.to(tl.int64) * stride_kb + tok0 * stride_ks + h * stride_kh
    v_base = V_ptr + b.to(tl.int64) * stride_vb + tok0 * stride_vs + h * stride_vh
    dq = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    lo = (key_lo // BLOCK_N) * BLOCK_N
    hi = tl.where(pid_m * BLOCK_M < row_end, key_hi, lo)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # [BLOCK_N]
        n_ok = offs_n < key_hi
        kv_mask = n_ok[:, None] & d_ok[None, :]
        k = tl.load(k_base + offs_n[:, None] * stride_ks + offs_d[None, :] * stride_kd, mask=kv_mask, other=0.0)
        v = tl.load(v_base + offs_n[:, None] * stride_vs + offs_d[None, :] * stride_vd, mask=kv_mask, other=0.0)
        valid = n_ok
        if HAS_MASK:
            valid = valid & (tl.load(Mask_ptr + b * stride_mb + offs_n * stride_ms, mask=n_ok, other=0) != 0)
        s = _mm(q, tl.trans(k), FP32) * qk_scale  # [BLOCK_M, BLOCK_N]
        p = tl.where(valid[None, :], tl.math.exp2(s - lse[:, None]), 0.0)
        dp = _mm(do, tl.trans(v), FP32)  # [BLOCK_M, BLOCK_N]
        if HAS_DROPOUT:
            keep = _attn_keep(seed, drop_p, pid_bh, offs_m[:, None], offs_n[None, :], drop_len)
            dp = tl.where(keep, dp * drop_scale, 0.0)
        ds = p * (dp - delta[:, None])
        if FP32:
            dq += _mm(ds, k, FP32)
        else:
            dq += _mm(ds.to(k.dtype), k, FP32)

    tl.store(dQ_ptr + o_off + offs_m[:, None] * stride_os + offs_d[None, :],
             (dq * sm_scale).to(dQ_ptr.dtype.element_ty), mask=(offs_m < seqlen)[:, None] & d_ok[None, :])


def backward_tile(elem: int, head_dim: int) -> tuple[int, int, int, int]:
    """``(BLOCK_M, BLOCK_N, num_warps, num_stages)`` of both backward kernels for operands of ``elem`` bytes: fixed,
    not tuned (no GPU has timed them). Sized so the fp32 accumulators (dK + dV, or dQ) and the transposed score tiles
    stay in registers; ``benchmarks/static_gpu.py`` compiles them for sm_80 and sm_90 and reports spills."""
    if _INTERPRETING:
        return 16, 32, 4, 1
    if elem == 2 and head_dim <= 64:
        return 32, 64, 4, 2
    if elem == 2:
        return 32, 32, 4, 2
    return 16, 32, 4, 2


def _launch_backward(do, q, k, v, out, lse, dq, dk, dv, mask, cu_seqlens, batch, seqlen_arg, max_seqlen, qkv_strides,
                     o_strides, mask_strides, lse_strides, dropout):
    heads, head_dim = q.shape[-2], q.shape[-1]
    block_m, block_n, warps, stages = backward_tile(q.element_size(), head_dim)
    # delta_i = dO_i . O_i in fp32, laid out like the LSE (one PyTorch reduction; small next to the two kernels)
    delta = (do.float() * out.float()).sum(-1)  # [B, S, heads] or [T, heads]
    delta = delta.permute(0, 2, 1).contiguous() if cu_seqlens is None else delta.t().contiguous()
    common = dict(
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), HAS_MASK=mask is not None,
        VARLEN=cu_seqlens is not None, HAS_DROPOUT=dropout[0] > 0, FP32=q.dtype == torch.float32, num_warps=warps,
        num_stages=stages,
    )
    tail = (mask if mask is not None else dq, cu_seqlens if cu_seqlens is not None else dq, seqlen_arg, heads,
            *qkv_strides, *o_strides, *mask_strides, *lse_strides, _LOG2E / math.sqrt(head_dim),
            1.0 / math.sqrt(head_dim), *_dropout_args(dropout, max_seqlen))
    _attention_bwd_dkdv_kernel[(triton.cdiv(max_seqlen, block_n), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, *tail, BLOCK_M=block_m, BLOCK_N=block_n, **common)
    _attention_bwd_dq_kernel[(triton.cdiv(max_seqlen, block_m), batch * heads)](
        q, k, v, do, lse, delta, dq, *tail, BLOCK_M=block_m, BLOCK_N=block_n, **common)


@triton.jit(do_not_specialize=["seed"])  # a fresh seed per call must not recompile
def _attention_keep_kernel(
    Keep_ptr,  # [B * heads, L, L] int8 output, contiguous
    L, seed, p,
    BLOCK: tl.constexpr,
):
    pid_bh = tl.program_id(1)
    offs_m = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] query rows
    for start_n in range(0, L, BLOCK):
        offs_n = start_n + tl.arange(0, BLOCK)  # [BLOCK] key rows
        keep = _attn_keep(seed, p, pid_bh, offs_m[:, None], offs_n[None, :], L)
        offs = (pid_bh.to(tl.int64) * L + offs_m[:, None]) * L + offs_n[None, :]
        tl.store(Keep_ptr + offs, keep.to(tl.int8), mask=(offs_m < L)[:, None] & (offs_n < L)[None, :])


def attention_dropout_keep(batch: int, heads: int, max_seqlen: int, p: float, seed: int, device) -> torch.Tensor:
    """The dropout mask (bool ``[B, heads, L, L]``, True: kept; ``L`` = the padded length or ``max_seqlen``) that
    :func:`attention` / :func:`attention_varlen` and their backward apply for ``dropout=p, seed=seed``: entry
    ``[b, h, i, j]`` is query ``i``, key ``j`` of sequence ``b``, head ``h``. For tests; the kernels store none."""
    p, seed = _check_dropout(p, seed)
    keep = torch.empty((batch * heads, max_seqlen, max_seqlen), dtype=torch.int8, device=device)
    if keep.numel():
        _attention_keep_kernel[(triton.cdiv(max_seqlen, 32), batch * heads)](keep, max_seqlen, seed, p, BLOCK=32)
    return keep.bool().view(batch, heads, max_seqlen, max_seqlen)


def _check_backward(do: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, lse_shape: tuple) -> torch.Tensor:
    if do.shape != out.shape or do.dtype != out.dtype or do.device != out.device:
        raise ValueError(f"the output's gradient must match the output ({list(out.shape)} of {out.dtype}), got "
                         f"{list(do.shape)} of {do.dtype}")
    if lse.shape != lse_shape or lse.dtype != torch.float32:
        raise ValueError(f"lse must be a float32 {list(lse_shape)} tensor from the forward's return_lse, got "
                         f"{list(lse.shape)} of {lse.dtype}")
    return do.contiguous()


def attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                       lse: torch.Tensor, key_mask: torch.Tensor | None, *, dropout: float = 0.0, seed: int = 0):
    """Gradients ``(dq, dk, dv)`` (``[B, S, heads, D]`` contiguous, q's dtype) of :func:`attention` without bias,
    given the output's gradient ``do``, the inputs, and the ``out, lse`` the forward returned with ``return_lse``;
    ``dropout`` and ``seed`` as the forward's."""
    _check_qkv(q, k, v, 4, "[B, S, heads, D]")
    drop = _check_dropout(dropout, seed)
    batch, seqlen, heads, _ = q.shape
    do = _check_backward(do, out, lse, (batch, heads, seqlen))
    key_mask = _check_key_mask(key_mask, q)
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    if q.numel() > 0:
        _launch_backward(do, q, k, v, out, lse, dq, dk, dv, key_mask, None, batch, seqlen, seqlen,
                         (*q.stride(), *k.stride(), *v.stride()), dq.stride()[:3],
                         key_mask.stride() if key_mask is not None else (0, 0), lse.stride()[:2], drop)
    return dq, dk, dv


def attention_varlen_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                              out: torch.Tensor, lse: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, *,
                              dropout: float = 0.0, seed: int = 0):
    """Gradients ``(dq, dk, dv)`` (``[T, heads, D]`` contiguous) of :func:`attention_varlen` without bias; rows
    outside every sequence are left unwritten, as the forward leaves them; ``dropout`` and ``seed`` as the
    forward's."""
    _check_qkv(q, k, v, 3, "[T, heads, D]")
    drop = _check_dropout(dropout, seed)
    _check_cu_seqlens(cu_seqlens, max_seqlen, q)
    total, heads, _ = q.shape
    do = _check_backward(do, out, lse, (heads, total))
    cu_seqlens = cu_seqlens.contiguous()
    batch = cu_seqlens.numel() - 1
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    if q.numel() > 0 and batch > 0 and max_seqlen > 0:
        _launch_backward(do, q, k, v, out, lse, dq, dk, dv, None, cu_seqlens, batch, 0, int(max_seqlen),
                         (0, *q.stride(), 0, *k.stride(), 0, *v.stride()), (0, *dq.stride()[:2]), (0, 0),
                         (0, lse.stride(0)), drop)
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------------------------

def _attend_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_ok: torch.Tensor, upcast: bool,
    bias: torch.Tensor | None = None, positions: torch.Tensor | None = None, keep: torch.Tensor | None = None,
    p: float = 0.0,
) -> torch.Tensor:
    """One sequence: q, k, v ``[L, heads, D]``, key_ok ``[L]`` bool -> ``[L, heads, D]`` fp32 (zeros when no key is
    valid). ``bias`` ``[heads, 2M + 1]`` with ``positions`` ``[L]``: the relative-position bias. ``keep`` ``[heads,
    L, L]`` bool with ``p``: dropout on the probabilities with that mask. ``upcast``: float64
    math. Otherwise eager attention in q's dtype -- scores and probabilities rounded to it, products accumulated in
    fp32 -- the "same dtype" baseline that low-precision tolerances are relative to."""
    if not bool(key_ok.any()):
        return torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dtype = q.dtype
    work = torch.float64 if upcast else torch.float32
    q, k, v = (t.to(work).transpose(0, 1) for t in (q, k, v))  # [heads, L, D]
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # [heads, L, L]
    if bias is not None:
        span = (bias.shape[1] - 1) // 2
        dist = (positions[None, :] - positions[:, None]).clamp(-span, span) + span  # [L, L]
        scores = scores + bias.to(work)[:, dist]  # [heads, L, L]
    if not upcast:
        scores = scores.to(dtype).to(work)
    scores = scores.masked_fill(~key_ok[None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if not upcast:
        probs = probs.to(dtype).to(work)
    if keep is not None:
        probs = probs * (keep.to(work) * (1.0 / (1.0 - p) if p < 1 else 0.0))
    return (probs @ v).transpose(0, 1).float()


def attention_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, upcast: bool = True,
    bias: torch.Tensor | None = None, keep: torch.Tensor | None = None, p: float = 0.0,
) -> torch.Tensor:
    """Reference for :func:`attention` in q's dtype, with the module docstring's output contract: zeros for a
    sequence without valid keys and for query rows at or after its last valid key + 1. ``upcast`` as in
    :func:`_attend_ref`; ``bias`` as in :func:`attention` (positions: the row index); ``keep`` ``[B, heads, S, S]``
    (:func:`attention_dropout_keep`'s) with ``p``: dropout with that mask."""
    batch, seqlen = q.shape[:2]
    if key_mask is None:
        key_mask = torch.ones((batch, seqlen), dtype=torch.bool, device=q.device)
    positions = torch.arange(seqlen, device=q.device)
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for i in range(batch):
        real = key_mask[i].nonzero()
        end = int(real.max()) + 1 if real.numel() else 0
        if end:
            out[i, :end] = _attend_ref(q[i], k[i], v[i], key_mask[i], upcast, bias, positions,
                                       None if keep is None else keep[i], p)[:end]
    return out.to(q.dtype)


def attention_varlen_ref(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
    upcast: bool = True, bias: torch.Tensor | None = None, positions: torch.Tensor | None = None,
    keep: torch.Tensor | None = None, p: float = 0.0,
) -> torch.Tensor:
    """Reference for :func:`attention_varlen` in q's dtype; rows outside every sequence are zero here. ``keep``
    ``[B, heads, max_seqlen, max_seqlen]`` with ``p``: dropout with that mask (as :func:`attention_ref`)."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for i, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        if end > start:
            ok = torch.ones(end - start, dtype=torch.bool, device=q.device)
            pos = None if positions is None else positions[start:end].long()
            mask = None if keep is None else keep[i, :, :end - start, :end - start]
            out[start:end] = _attend_ref(q[start:end], k[start:end], v[start:end], ok, upcast, bias, pos, mask, p)
    return out.to(q.dtype)


def attention_backward_ref(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           key_mask: torch.Tensor | None, keep: torch.Tensor | None = None, p: float = 0.0):
    """Reference for :func:`attention_backward`: PyTorch autograd through :func:`attention_ref` (float64 math, the
    dropout mask ``keep`` with ``p``), gradients in q's dtype."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out = attention_ref(*leaves, key_mask, upcast=True, keep=keep, p=p)
    return tuple(g.to(q.dtype) for g in torch.autograd.grad(out, leaves, do.to(out.dtype)))


def attention_varlen_backward_ref(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                  cu_seqlens: torch.Tensor, max_seqlen: int, keep: torch.Tensor | None = None,
                                  p: float = 0.0):
    """Reference for :func:`attention_varlen_backward` (rows outside every sequence get zeros here; ``keep``, ``p``
    as :func:`attention_varlen_ref`)."""
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    out = attention_varlen_ref(*leaves, cu_seqlens, max_seqlen, upcast=True, keep=keep, p=p)
    return tuple(g.to(q.dtype) for g in torch.autograd.grad(out, leaves, do.to(out.dtype)))
