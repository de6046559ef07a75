"""Relative positions in attention: MPNet's relative-position bias (T5-style log buckets of the key minus query
position) and DeBERTa's disentangled attention (below).

MPNet:

Every layer adds ``bias[h, i, j] = table[bucket(pos_j - pos_i), h]`` to the scaled scores of head ``h``, with one
learned ``table`` ``[buckets, heads]`` shared by all layers. ``pos`` is the token's column in the caller's row (as
transformers computes it from ``arange(seq_len)``, padding and holes included), not its position id.

``bucket`` (bidirectional, 32 buckets, max distance 128, as transformers' ``relative_position_bucket``): keys after
the query use buckets 16-31, keys at or before it 0-15; within each half, distances 0-7 get a bucket each and 8-127
share 8 log-spaced buckets; 128 and beyond take the last one. So the bias depends on the distance only through
``clamp(pos_j - pos_i, -128, 128)``, and :func:`distance_bias` turns the table into a ``[heads, 257]`` bias per
clamped distance once per forward; both backends then read that (the Triton kernel computes the clamped distance of
each query/key pair in-kernel). Computing the buckets here, once, in PyTorch's float32 exactly as transformers does
keeps the truncation at the log-bucket edges (distances 16, 32, 64, where the log is within an ulp of an integer)
identical to the reference on every device.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NUM_BUCKETS = 32  # transformers' MPNet computes 32 buckets whatever relative_attention_num_buckets says
MAX_DISTANCE = 128


def relative_position_bucket(relative: torch.Tensor, num_buckets: int = NUM_BUCKETS,
                             max_distance: int = MAX_DISTANCE) -> torch.Tensor:
    """Key minus query position (int64, any shape) -> its bucket in ``[0, num_buckets)`` (int64, same shape)."""
    half = num_buckets // 2
    bucket = (relative > 0).long() * half  # keys after the query use the upper half
    n = relative.abs()
    exact = half // 2
    scaled = torch.log(n.float() / exact) / math.log(max_distance / exact) * (half - exact)  # float32, as HF
    large = torch.clamp(exact + scaled.long(), max=half - 1)
    return bucket + torch.where(n < exact, n, large)


def distance_bias(table: torch.Tensor, max_distance: int = MAX_DISTANCE) -> torch.Tensor:
    """The bias table ``[buckets, heads]`` -> the bias of each clamped distance ``[heads, 2 * max_distance + 1]``
    (column ``d + max_distance`` for key minus query distance ``d``), in the table's dtype; differentiable."""
    distances = torch.arange(-max_distance, max_distance + 1, device=table.device)  # [2 * max_distance + 1]
    return table[relative_position_bucket(distances, max_distance=max_distance)].t()  # [heads, 2 * max_distance + 1]


# ----------------------------------------------------------------------------------------------------------------
# DeBERTa's disentangled attention
# ----------------------------------------------------------------------------------------------------------------
#
# For query i and key j at columns c_i, c_j of the caller's row, the relative position is d = c_i - c_j (query minus
# key, DeBERTa's sign). With ``position_buckets`` B > 0, distances below B // 2 keep their value and longer ones share
# log-spaced values, sign kept: ``sign(d) * (ceil(log(|d| / m) / log((P - 1) / m) * (m - 1)) + m)`` with m = B // 2
# and P = ``max_relative_positions``. The bucket picks row ``clamp(bucket + span, 0, 2 span - 1)`` of the relative
# embeddings (LayerNormed when ``norm_rel_ebd`` says so). Each layer projects those rows with its own query and key
# projections (``share_att_key``) into Qr, Kr ``[2 span, heads, D]``; then, scaled by 1 / sqrt(D (1 + #scores)):
#
#     c2p[i, j] = q_i . Kr[row(c_i - c_j)]        p2c[i, j] = k_j . Qr[row(c_i - c_j)]
#
# (transformers gathers p2c at row(-(c_j - c_i)); the bucket is odd in d, so it is the same row). The row only
# depends on d: :func:`deberta_rows` gives it for every distance in [-W, W] (W: the widest distance the batch holds),
# once per forward. A short sequence's scores then read the 2W + 1 rows of its distances, fewer than the table's.

def deberta_bucket(relative: torch.Tensor, buckets: int, max_position: int) -> torch.Tensor:
    """Relative positions (int64) -> DeBERTa's log-bucketed positions (int64, same shape), in float32 as
    transformers computes them (the ceil at a bucket edge then agrees)."""
    mid = buckets // 2
    sign = torch.sign(relative)
    near = (relative < mid) & (relative > -mid)
    magnitude = torch.where(near, torch.full_like(relative, mid - 1), relative.abs())  # int64
    log_scale = torch.log(torch.tensor((max_position - 1) / mid))  # float32
    far = torch.ceil(torch.log(magnitude / mid) / log_scale * (mid - 1)) + mid  # float32
    return torch.where(magnitude <= mid, relative.float(), far * sign).long()


def deberta_rows(width: int, spec) -> torch.Tensor:
    """The relative-embedding row of each distance ``d`` in ``[-width, width]`` (``[2 width + 1]`` int64, index
    ``d + width``) for a :class:`fastbert.encoder.families.Disentangled` ``spec``."""
    relative = torch.arange(-width, width + 1)  # query column minus key column
    if spec.buckets > 0:
        relative = deberta_bucket(relative, spec.buckets, spec.max_position)
    return (relative + spec.span).clamp(0, 2 * spec.span - 1)


def deberta_table(table: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None, eps: float) -> torch.Tensor:
    """The relative embeddings ``[2 span, H]``, LayerNormed with ``norm`` = (weight, bias) if given; differentiable."""
    if norm is None:
        return table
    return F.layer_norm(table, (table.shape[-1],), norm[0], norm[1], eps)


# ----------------------------------------------------------------------------------------------------------------
# XLNet's relative attention
# ----------------------------------------------------------------------------------------------------------------
#
# For query i and key j at columns c_i, c_j of the caller's row, XLNet's score (content stream, attn_type "bi") is
#
#     ((q_i + r_w) . k_j  +  (q_i + r_r) . (R[c_i - c_j] W_r)  +  (q_i + r_s) . seg[s_ij]) / sqrt(D)
#
# with the layer's own biases r_w, r_r, r_s ``[heads, D]``, position projection W_r and segment embeddings seg
# ``[2, heads, D]``; s_ij is 1 where the two tokens' segment ids (token_type_ids) differ. R[d] is the sinusoid of the
# query-minus-key distance d (clamped to +-clamp_len when clamp_len > 0): ``[sin(d f), cos(d f)]`` with
# ``f = 10000 ** (-arange(0, H, 2) / H)``. transformers builds R for the distances S .. -S + 1 and picks each pair's
# row with its relative shift (``rel_shift_bnij``), which lands on d = c_i - c_j; fastbert builds the rows of the
# distances the batch holds, once per forward (:func:`xlnet_sinusoids`), in float32 exactly as transformers does.
# Masks: a query attends to the real keys, and always to itself (transformers' ``-eye`` non-target mask), so a
# padding query on the padded path gets transformers' value too.

def xlnet_sinusoids(width: int, d_model: int, clamp_len: int, device=None) -> torch.Tensor:
    """The relative positional encoding of each query-minus-key distance ``d`` in ``[-width, width]``:
    ``[2 width + 1, d_model]`` float32, row ``d + width``, as transformers' ``relative_positional_encoding``."""
    freq_seq = torch.arange(0, d_model, 2.0, dtype=torch.int64, device=device).float()
    inv_freq = 1 / torch.pow(10000, (freq_seq / d_model))  # [d_model / 2]
    distance = torch.arange(-width, width + 1, dtype=torch.int64, device=device).float()  # [2 width + 1]
    if clamp_len > 0:
        distance = distance.clamp(-clamp_len, clamp_len)
    angle = distance[:, None] * inv_freq  # [2 width + 1, d_model / 2]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
