"""DeBERTa's disentangled attention, flash-style: padded batches with any key mask, or packed sequences.

Math, per sequence and head, for query row ``i`` and key row ``j`` at columns ``c_i``, ``c_j`` of the caller's row
(:mod:`fastbert.encoder.position_bias` has DeBERTa's side of it)::

    r_ij   = rows_of[c_i - c_j + W]                       (the relative-embedding row of the distance, W >= |c_i - c_j|)
    s_ij   = (q_i . k_j + c2p[i, r_ij] + p2c[j, r_ij]) * scale      for valid(j), -inf otherwise
    out_i  = sum_j softmax_j(s_ij) v_j

with the per-token position scores ``c2p[t, r] = q_t . Kr[r]`` and ``p2c[t, r] = k_t . Qr[r]`` (Kr, Qr: the layer's
key and query projections of the relative embeddings; each term only when the model has it) and ``scale`` DeBERTa's
``1 / sqrt(D (1 + #position terms))``. A padding query (key mask 0, padded layout) attends to every one of the
``S`` rows with equal weight, as transformers' DeBERTa does (all its scores are ``finfo.min``): its output is the
mean of the sequence's values.

Why the position scores are GEMMs outside the kernel (:func:`position_scores`) and gathers inside: every pair
``(i, j)`` needs one dot of ``q_i`` with row ``r_ij`` of Kr, and one of ``k_j`` with row ``r_ij`` of Qr. A score tile
of ``BLOCK_M x BLOCK_N`` pairs touches up to ``BLOCK_M + BLOCK_N - 1`` distinct distances, and no tensor-core
product yields the tile's diagonals directly; computing the dots in-kernel would mean ``D``-long dot per pair on
CUDA cores (``D`` times the work of a gather) or a product with the distance rows followed by an in-register
diagonal gather. ``q @ Kr^T`` over all rows instead is one batched tensor-core GEMM per layer (``[heads, N, R]``,
``R`` = the table rows the batch's distances reach: at most ``2 span``, fewer for short sequences), whose products
are those of the PyTorch path (same operands, fp32 accumulation, rounded to q's dtype as transformers rounds them),
so the kernel adds exactly the terms the reference adds; inside, each score costs one small-int load (``rows_of``,
L1-resident), and one load from each table (a query's table row is contiguous over the distances its keys span).
The price is the tables' memory: ``2 x heads x N x R`` elements per layer, the size of one head-summed score matrix
when ``R ~ S`` (transformers materialises the same tables plus the ``S x S`` scores). ``rows_of`` maps distances to
rows as a table for the reason MPNet's bias does (:mod:`fastbert.encoder.position_bias`): the log buckets are
computed once, in float32 exactly as transformers computes them, not re-derived in-kernel.

The online softmax (fp32 running max, sum and accumulator, base-2 exponentials, tf32x3 products for fp32 operands)
and the work skipping over right padding are those of :mod:`fastbert.kernels.attention`; the tile list is this
kernel's own (:data:`_TILES`: the gathers take registers), filtered by the same shared-memory rule. Layouts, strides and ``cu_seqlens`` as there; a query block holding a padding query streams
all ``S`` keys (its uniform weights reach them all).
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .attention import _INTERPRETING, _check_qkv, _seq_class, keep_tiles, seq_bucket
from .target import current_target

_LOG2E = 1.4426950408889634

# Candidate tiles (BLOCK_M, BLOCK_N, num_warps, num_stages) per operand size, tensor-core kind and sequence class, as
# in kernels/attention.py, less the tiles whose position gathers (an int tile and two table tiles per score tile)
# spilled in benchmarks/static_gpu.py at head dim 64 (triton 3.9): fp16/bf16 128x128 on 8 warps (2.6-2.9 KB, both
# targets), 128x32 on 4 warps (sm_80, 392 B), 128x64 on 4 warps (sm_90, 132-200 B); on sm_80 with a key mask
# 128x64 on 8 warps and 64x64 on 4 warps (56-64 B; "masked"); fp32 (tf32x3) 64x32 on 4 warps with a key mask (sm_90,
# 28 B) and 128x64 on 8 warps (48 B), so fp32 keeps the small tiles on both targets.
_TILES = {
    (2, "wgmma", "short"): [(64, 32, 4, 2), (32, 32, 2, 2)],
    (2, "wgmma", "medium"): [(64, 64, 4, 3), (64, 32, 4, 2), (128, 64, 8, 3)],
    (2, "wgmma", "long"): [(128, 64, 8, 3), (64, 64, 4, 3)],
    (2, "mma", "short"): [(32, 32, 2, 2), (16, 32, 2, 2)],
    (2, "mma", "medium"): [(64, 64, 4, 3), (64, 32, 4, 2), (128, 64, 8, 3)],
    (2, "mma", "long"): [(128, 64, 8, 3), (64, 64, 4, 3)],
    (2, "mma", "masked"): [(64, 32, 4, 2), (32, 32, 2, 2)],
    (4, "wgmma", "any"): [(32, 32, 4, 2), (16, 32, 2, 2)],
    (4, "mma", "any"): [(32, 32, 4, 2), (16, 32, 2, 2)],
}


def _configs() -> list[triton.Config]:
    """Every candidate tile once; :func:`_prune_configs` picks the ones for the target and problem."""
    if _INTERPRETING:  # the interpreter runs programs one by one: one config, no autotuning
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 32}, num_warps=4, num_stages=1)]
    tiles = sorted({t for group in _TILES.values() for t in group}, reverse=True)
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in tiles]


def _prune_configs(configs, named_args, **kwargs):
    """The :data:`_TILES` of the operand size, the target's tensor cores and the sequence class (fp32: any class;
    fp16/bf16 on sm_80 with a key mask: "masked"), filtered by :func:`fastbert.kernels.attention.keep_tiles`."""
    elem = named_args["Q_ptr"].element_size()
    kind = "wgmma" if current_target().wgmma else "mma"
    seq_class = _seq_class(named_args["SEQ_BUCKET"])
    if elem == 4:
        seq_class = "any"
    elif kind == "mma" and kwargs.get("HAS_MASK") and seq_class != "short":
        seq_class = "masked"
    return keep_tiles(configs, _TILES[(elem, kind, seq_class)], elem, kwargs["BLOCK_D"])


# Long on purpose, like the attention kernel it follows: one program's whole life (locate the rows, stream K/V tiles
# with the position gathers and the online softmax, write out) reads best in one body; about 45 of its lines are the
# argument list with each argument's shape.
@triton.autotune(
    configs=_configs(),
    key=["SEQ_BUCKET", "BLOCK_D", "HAS_MASK", "VARLEN", "C2P", "P2C"],
    prune_configs_by={"early_config_prune": _prune_configs},
    cache_results=True,
)
@triton.jit
def _disentangled_fwd_kernel(
    Q_ptr, K_ptr, V_ptr,  # [B, S, heads, D] (padded) or [T, heads, D] (VARLEN), any strides
    O_ptr,  # like q, contiguous
    Mask_ptr,  # [B, S] uint8 key mask, 1 = real token (HAS_MASK only)
    CuSeqlens_ptr,  # [B + 1] int32 sequence starts (VARLEN only)
    Col_ptr,  # [T] int32 column of each packed token (VARLEN only)
    C2P_ptr,  # [heads, N, R] q_t . Kr[r] per token row t (N = B * S padded, T packed; C2P only)
    P2C_ptr,  # [heads, N, R] k_t . Qr[r] (P2C only)
    RowsOf_ptr,  # [2W + 1] int32: the table column r of query-minus-key distance d, at d + W (C2P or P2C)
    S,  # padded: sequence length; VARLEN: unused
    num_heads,
    SEQ_BUCKET,  # seq_bucket(max sequence length): autotune key only
    WIDTH,  # W: every |c_i - c_j| <= W
    stride_qb, stride_qs, stride_qh, stride_qd,  # VARLEN: stride_*b are 0, the token offset comes from cu_seqlens
    stride_kb, stride_ks, stride_kh, stride_kd,
    stride_vb, stride_vs, stride_vh, stride_vd,
    stride_ob, stride_os, stride_oh,
    stride_mb, stride_ms,
    stride_th, stride_tn,  # both tables (unit column stride)
    qk_scale,  # log2(e) * scale
    HEAD_DIM: tl.constexpr,  # D
    BLOCK_D: tl.constexpr,  # next_pow2(D), >= 16
    HAS_MASK: tl.constexpr,
    VARLEN: tl.constexpr,
    C2P: tl.constexpr,
    P2C: tl.constexpr,
    FP32: tl.constexpr,  # fp32 operands: tf32x3 products (fp32 accuracy on tensor cores)
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads

    # Which rows exist (seqlen), which keys may be valid ([key_lo, key_hi)); row0: the sequence's first table row.
    if VARLEN:
        tok0 = tl.load(CuSeqlens_ptr + b).to(tl.int64)
        seqlen = tl.load(CuSeqlens_ptr + b + 1) - tok0.to(tl.int32)
        row0 = tok0
        key_lo = 0
        key_hi = seqlen
    else:
        tok0 = tl.zeros((), dtype=tl.int64)
        seqlen = S
        row0 = b.to(tl.int64) * S
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

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] query rows within the sequence
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    m_in = offs_m < seqlen
    lo = (key_lo // BLOCK_N) * BLOCK_N
    hi = key_hi
    if HAS_MASK:
        q_real = tl.load(Mask_ptr + b * stride_mb + offs_m * stride_ms, mask=m_in, other=0) != 0  # [BLOCK_M]
        pad_rows = tl.sum(tl.where(m_in & (q_real == 0), 1, 0), axis=0)
        lo = tl.where(pad_rows > 0, 0, lo)  # a padding query weighs all S rows
        hi = tl.where(pad_rows > 0, S, hi)
    hi = tl.where(pid_m * BLOCK_M < seqlen, hi, lo)  # a block past a packed sequence's end does no work
    if VARLEN:
        col_m = tl.load(Col_ptr + tok0 + offs_m, mask=m_in, other=0)  # [BLOCK_M] columns
    else:
        col_m = offs_m
    table_h = h.to(tl.int64) * stride_th

    q_base = Q_ptr + b.to(tl.int64) * stride_qb + tok0 * stride_qs + h * stride_qh
    k_base = K_ptr + b.to(tl.int64) * stride_kb + tok0 * stride_ks + h * stride_kh
    v_base = V_ptr + b.to(tl.int64) * stride_vb + tok0 * stride_vs + h * stride_vh
    q = tl.load(
        q_base + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
        mask=m_in[:, None] & d_ok[None, :], other=0.0,
    )  # [BLOCK_M, BLOCK_D]

    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running max of the scaled (base-2) scores
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)  # running sum of exp2(s - m_i) v

    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0  # [BLOCK_N]
        n_in = offs_n < seqlen
        k = tl.load(
            k_base + offs_n[None, :] * stride_ks + offs_d[:, None] * stride_kd,
            mask=n_in[None, :] & d_ok[:, None], other=0.0,
        )  # [BLOCK_D, BLOCK_N]
        if FP32:
            s = tl.dot(q, k, input_precision="tf32x3")
        else:
            s = tl.dot(q, k)  # [BLOCK_M, BLOCK_N] fp32
        if C2P or P2C:
            pair = m_in[:, None] & n_in[None, :]
            if VARLEN:
                col_n = tl.load(Col_ptr + tok0 + offs_n, mask=n_in, other=0)  # [BLOCK_N] columns
            else:
                col_n = offs_n
            r = tl.load(RowsOf_ptr + (col_m[:, None] - col_n[None, :] + WIDTH), mask=pair, other=0)
            if C2P:  # q_i . Kr[r_ij]: row i of the table
                s += tl.load(C2P_ptr + table_h + (row0 + offs_m)[:, None] * stride_tn + r,
                             mask=pair, other=0.0).to(tl.float32)
            if P2C:  # k_j . Qr[r_ij]: row j of the table
                s += tl.load(P2C_ptr + table_h + (row0 + offs_n)[None, :] * stride_tn + r,
                             mask=pair, other=0.0).to(tl.float32)
        s = s * qk_scale  # base-2 logits
        if HAS_MASK:
            k_real = tl.load(Mask_ptr + b * stride_mb + offs_n * stride_ms, mask=n_in, other=0) != 0
            s = tl.where(q_real[:, None], s, 0.0)  # padding queries: equal scores ...
            valid = tl.where(q_real[:, None], k_real[None, :], n_in[None, :])  # ... over every row of the sequence
        else:
            valid = n_in[None, :]
        s = tl.where(valid, s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no valid key yet: keep exp2 finite
        p = tl.math.exp2(s - m_safe[:, None])  # masked keys -> exactly 0
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_base + offs_n[:, None] * stride_vs + offs_d[None, :] * stride_vd,
            mask=n_in[:, None] & d_ok[None, :], other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        acc = acc * alpha[:, None]
        if FP32:
            acc = tl.dot(p, v, acc, input_precision="tf32x3")
        else:
            acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new

    has_keys = (l_i > 0.0) & m_in
    out = tl.where(has_keys[:, None], acc / tl.where(has_keys, l_i, 1.0)[:, None], 0.0)
    o_base = O_ptr + b.to(tl.int64) * stride_ob + tok0 * stride_os + h * stride_oh
    tl.store(
        o_base + offs_m[:, None] * stride_os + offs_d[None, :],
        out.to(O_ptr.dtype.element_ty),
        mask=m_in[:, None] & d_ok[None, :],
    )


def position_scores(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x . pos[r]`` per token, head and relative-embedding row: x ``[N, heads, D]`` (any strides, e.g. q or k),
    pos ``[R, heads, D]`` (Kr or Qr) -> ``[heads, N, R]`` in x's dtype, one batched GEMM (the kernel's tables)."""
    if x.dim() != 3 or pos.dim() != 3 or x.shape[1:] != pos.shape[1:] or x.dtype != pos.dtype:
        raise ValueError(f"x [N, heads, D] and pos [R, heads, D] must share heads, D and dtype; got "
                         f"{list(x.shape)} of {x.dtype} and {list(pos.shape)} of {pos.dtype}")
    return torch.matmul(x.transpose(0, 1), pos.permute(1, 2, 0))  # [heads, N, D] @ [heads, D, R]


def _check_tables(q: torch.Tensor, c2p, p2c, rows_of, rows: int, least_width: int | None):
    """The position tables ``[heads, rows, R]`` and ``rows_of`` as the kernel reads them -> (c2p, p2c, rows_of)."""
    heads = q.shape[-2]
    width = None
    for name, t in (("c2p", c2p), ("p2c", p2c)):
        if t is None:
            continue
        if t.dim() != 3 or t.shape[:2] != (heads, rows) or not t.is_floating_point() or t.device != q.device:
            raise ValueError(f"{name} must be a float [heads={heads}, tokens={rows}, R] tensor on {q.device}, got "
                             f"{list(t.shape)} of {t.dtype} on {t.device}")
    if c2p is not None and p2c is not None and c2p.shape != p2c.shape:
        raise ValueError(f"c2p and p2c must have one shape, got {list(c2p.shape)} and {list(p2c.shape)}")
    if c2p is not None or p2c is not None:
        if rows_of is None or rows_of.dim() != 1 or rows_of.numel() % 2 != 1 or rows_of.dtype.is_floating_point \
                or rows_of.device != q.device:
            raise ValueError("rows_of must be an integer [2W + 1] tensor on q's device (the table column of each "
                             f"distance); got {None if rows_of is None else (list(rows_of.shape), rows_of.dtype)}")
        width = rows_of.numel() // 2
        if least_width is not None and width < least_width:
            raise ValueError(f"rows_of covers distances up to {width}, but the sequences reach {least_width}")
        rows_of = rows_of.to(torch.int32).contiguous()
    c2p, p2c = (None if t is None else t.contiguous() for t in (c2p, p2c))
    return c2p, p2c, rows_of, width or 0


def _launch(q, k, v, out, mask, cu_seqlens, columns, c2p, p2c, rows_of, width, scale, batch, seqlen_arg,
            max_seqlen, q_strides, k_strides, v_strides, o_strides, mask_strides):
    heads, head_dim = q.shape[-2], q.shape[-1]
    table = c2p if c2p is not None else p2c

    def grid(meta):
        return (triton.cdiv(max_seqlen, meta["BLOCK_M"]), batch * heads)

    _disentangled_fwd_kernel[grid](
        q, k, v, out,
        mask if mask is not None else out,
        cu_seqlens if cu_seqlens is not None else out,
        columns if columns is not None else out,
        c2p if c2p is not None else out,
        p2c if p2c is not None else out,
        rows_of if rows_of is not None else out,
        seqlen_arg, heads, seq_bucket(max_seqlen), width,
        *q_strides, *k_strides, *v_strides, *o_strides, *mask_strides,
        table.stride(0) if table is not None else 0, table.stride(1) if table is not None else 0,
        _LOG2E * scale,
        HEAD_DIM=head_dim,
        BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
        HAS_MASK=mask is not None,
        VARLEN=cu_seqlens is not None,
        C2P=c2p is not None,
        P2C=p2c is not None,
        FP32=q.dtype == torch.float32,
    )


def disentangled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                           c2p: torch.Tensor | None, p2c: torch.Tensor | None, rows_of: torch.Tensor | None,
                           scale: float) -> torch.Tensor:
    """DeBERTa's attention on a padded batch (module docstring): q, k, v ``[B, S, heads, D]`` (any strides),
    key_mask ``[B, S]`` bool (True = real token) or None, c2p / p2c ``[heads, B * S, R]`` (:func:`position_scores`
    of q with Kr, of k with Qr, on the flattened rows) or None, ``rows_of`` ``[2W + 1]`` (W >= S - 1) with values in
    ``[0, R)``, ``scale`` the factor of the summed scores. Returns ``[B, S, heads, D]`` contiguous, q's dtype."""
    _check_qkv(q, k, v, 4, "[B, S, heads, D]")
    batch, seqlen, heads, head_dim = q.shape
    c2p, p2c, rows_of, width = _check_tables(q, c2p, p2c, rows_of, batch * seqlen, seqlen - 1)
    if key_mask is not None:
        if key_mask.shape != (batch, seqlen) or key_mask.dtype != torch.bool or key_mask.device != q.device:
            raise ValueError(f"key_mask must be a [{batch}, {seqlen}] bool tensor on {q.device}, got "
                             f"{list(key_mask.shape)} of {key_mask.dtype} on {key_mask.device}")
        key_mask = key_mask.view(torch.uint8)  # same bytes, a dtype every Triton version loads
    out = torch.empty((batch, seqlen, heads, head_dim), dtype=q.dtype, device=q.device)
    if out.numel() == 0:
        return out
    _launch(q, k, v, out, key_mask, None, None, c2p, p2c, rows_of, width, scale, batch, seqlen, seqlen,
            q.stride(), k.stride(), v.stride(), out.stride()[:3],
            key_mask.stride() if key_mask is not None else (0, 0))
    return out


def disentangled_attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                                  max_seqlen: int, columns: torch.Tensor, c2p: torch.Tensor | None,
                                  p2c: torch.Tensor | None, rows_of: torch.Tensor | None,
                                  scale: float) -> torch.Tensor:
    """DeBERTa's attention within each packed sequence: q, k, v ``[T, heads, D]`` (any strides), ``cu_seqlens`` and
    ``max_seqlen`` as :func:`fastbert.kernels.attention.attention_varlen`, ``columns`` ``[T]`` each token's column
    (integer, at most W), c2p / p2c ``[heads, T, R]`` or None, ``rows_of`` and ``scale`` as
    :func:`disentangled_attention`. Returns ``[T, heads, D]`` contiguous; rows outside every sequence are left
    unwritten."""
    _check_qkv(q, k, v, 3, "[T, heads, D]")
    total, heads, head_dim = q.shape
    c2p, p2c, rows_of, width = _check_tables(q, c2p, p2c, rows_of, total, None)
    if columns.shape != (total,) or columns.dtype.is_floating_point or columns.device != q.device:
        raise ValueError(f"columns must be an integer [{total}] tensor on {q.device}, got "
                         f"{list(columns.shape)} of {columns.dtype} on {columns.device}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1 or cu_seqlens.dtype != torch.int32 \
            or cu_seqlens.device != q.device:
        raise ValueError(f"cu_seqlens must be a 1-D int32 tensor [B + 1] on {q.device}, got "
                         f"{list(cu_seqlens.shape)} of {cu_seqlens.dtype} on {cu_seqlens.device}")
    if int(max_seqlen) < 0:
        raise ValueError(f"max_seqlen must be >= 0, got {max_seqlen}")
    batch = cu_seqlens.numel() - 1
    out = torch.empty((total, heads, head_dim), dtype=q.dtype, device=q.device)
    if out.numel() == 0 or batch == 0 or max_seqlen == 0:
        return out
    _launch(q, k, v, out, None, cu_seqlens.contiguous(), columns.to(torch.int32).contiguous(), c2p, p2c, rows_of,
            width, scale, batch, 0, int(max_seqlen), (0, *q.stride()), (0, *k.stride()), (0, *v.stride()),
            (0, *out.stride()[:2]), (0, 0))
    return out


# ----------------------------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------------------------

def _disentangled_ref(q, k, v, key_ok, cols, c2p, p2c, rows_of, scale: float, upcast: bool) -> torch.Tensor:
    """One sequence: q, k, v ``[L, heads, D]``, key_ok ``[L]`` bool, cols ``[L]`` int64, c2p / p2c ``[heads, L, R]``
    or None -> ``[L, heads, D]`` fp32. ``upcast``: float64 math; otherwise scores and probabilities rounded to q's
    dtype (the same-dtype baseline)."""
    dtype, work = q.dtype, (torch.float64 if upcast else torch.float32)
    q, k, v = (t.to(work).transpose(0, 1) for t in (q, k, v))  # [heads, L, D]
    heads, length = q.shape[:2]
    scores = q @ k.transpose(1, 2)  # [heads, L, L]
    if c2p is not None or p2c is not None:
        width = rows_of.shape[0] // 2
        r = rows_of.long()[cols[:, None] - cols[None, :] + width].expand(heads, length, length)  # [heads, L(q), L(k)]
        if c2p is not None:
            scores = scores + c2p.to(work).gather(-1, r)  # c2p[h, i, r_ij]
        if p2c is not None:
            scores = scores + p2c.to(work).gather(-1, r.transpose(1, 2)).transpose(1, 2)  # p2c[h, j, r_ij]
    scores = scores * scale
    if not upcast:
        scores = scores.to(dtype).to(work)
    # real queries: masked keys get no weight; padding queries: equal weights on every row (transformers' finfo.min)
    scores = torch.where(key_ok[None, None, :], scores, float("-inf"))
    scores = torch.where(key_ok[None, :, None], scores, 0.0)
    probs = torch.softmax(scores, dim=-1)
    if not upcast:
        probs = probs.to(dtype).to(work)
    return (probs @ v).transpose(0, 1).float()


def disentangled_attention_ref(q, k, v, key_mask, c2p, p2c, rows_of, scale: float,
                               upcast: bool = True) -> torch.Tensor:
    """Reference for :func:`disentangled_attention`, in q's dtype."""
    batch, seqlen = q.shape[:2]
    if key_mask is None:
        key_mask = torch.ones((batch, seqlen), dtype=torch.bool, device=q.device)
    cols = torch.arange(seqlen, device=q.device)
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    for i in range(batch):
        rows = slice(i * seqlen, (i + 1) * seqlen)
        out[i] = _disentangled_ref(q[i], k[i], v[i], key_mask[i], cols, None if c2p is None else c2p[:, rows],
                                   None if p2c is None else p2c[:, rows], rows_of, scale, upcast)
    return out.to(q.dtype)


def disentangled_attention_varlen_ref(q, k, v, cu_seqlens, max_seqlen, columns, c2p, p2c, rows_of, scale: float,
                                      upcast: bool = True) -> torch.Tensor:
    """Reference for :func:`disentangled_attention_varlen` in q's dtype; rows outside every sequence are zero."""
    out = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end > start:
            ok = torch.ones(end - start, dtype=torch.bool, device=q.device)
            out[start:end] = _disentangled_ref(
                q[start:end], k[start:end], v[start:end], ok, columns[start:end].long(),
                None if c2p is None else c2p[:, start:end], None if p2c is None else p2c[:, start:end], rows_of,
                scale, upcast)
    return out.to(q.dtype)
