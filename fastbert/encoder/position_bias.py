"""MPNet's relative-position attention bias: T5-style log buckets of the key minus query position.

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
