"""How the token rows of the encoder group into sequences (:class:`AttentionLayout`), and the length buckets the
PyTorch backend runs packed tokens in (:func:`packed_layout`).

Token matrices are ``[N, H]`` where the N rows are either a padded batch flattened (``N = B * S``), packed real
tokens (``N = total_tokens``), or packed tokens rearranged into length buckets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch


class Bucket(NamedTuple):
    """Sequences of similar length stored as one padded block of token rows: rows ``start : start + count * span``
    are ``[count, span]`` (sequence-major), each sequence's tokens first, then padding rows."""

    start: int
    count: int
    span: int  # the longest member's length
    key_mask: torch.Tensor | None  # [count, span] bool (True = real token); None when nothing is padded


@dataclass(frozen=True)
class AttentionLayout:
    """How the rows of a token matrix ``[N, H]`` group into sequences.

    Padded: ``N = batch * seqlen``; ``key_mask`` is ``[batch, seqlen]`` bool (True = real token) or None when
    nothing is padded. Packed: rows are the real tokens of all sequences back to back, sequence ``i`` in rows
    ``cu_seqlens[i]:cu_seqlens[i+1]`` (int32, ``[batch + 1]``), ``seqlen`` is the longest sequence.
    Bucketed (from :func:`packed_layout`): the packed tokens ``[T]`` (``cu_seqlens``) rearranged into
    ``buckets``; row ``r`` holds packed token ``slots[r]`` (``[N]`` int64; a padding row repeats its sequence's
    first token) and packed token ``t`` sits in row ``token_rows[t]`` (``[T]`` int64).
    """

    batch: int
    seqlen: int
    key_mask: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    buckets: tuple[Bucket, ...] | None = None
    slots: torch.Tensor | None = None
    token_rows: torch.Tensor | None = None
    # A relative-position bias every attention call on this layout adds (MPNet), in the form the backend that
    # prepared it reads (ops.position_bias, once per forward); None: no bias.
    bias: Any = None

    @property
    def packed(self) -> bool:
        return self.cu_seqlens is not None

    def tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[N, ...]`` of this layout -> packed tokens ``[T, ...]`` (the rows themselves unless bucketed)."""
        return rows if self.token_rows is None else rows.index_select(0, self.token_rows)


def bucketed_layout(batch: int, seqlen: int, cu_seqlens: torch.Tensor) -> AttentionLayout:
    """Packed tokens (``cu_seqlens`` ``[batch + 1]`` int32) in length buckets (:func:`length_buckets`), so that every
    layer's attention is one SDPA call per bucket on views of the rows, with no per-layer gather or scatter; the
    price is at most :data:`BUCKET_WASTE` times the real token rows through the GEMMs. Reading the lengths costs one
    host sync on CUDA (none on CPU)."""
    cu = cu_seqlens.tolist()
    lengths = [end - start for start, end in zip(cu[:-1], cu[1:])]
    device = cu_seqlens.device
    buckets, slots, start = [], [], 0
    for members in length_buckets(lengths):
        span = lengths[members[0]]
        starts = torch.tensor([cu[i] for i in members], device=device)  # [n]
        lens = torch.tensor([lengths[i] for i in members], device=device)  # [n]
        pos = torch.arange(span, device=device)
        real = pos[None, :] < lens[:, None]  # [n, span]
        slots.append((starts[:, None] + torch.where(real, pos[None, :], 0)).flatten())  # [n * span]
        buckets.append(Bucket(start, len(members), span, None if bool(real.all()) else real))
        start += len(members) * span
    slots = torch.cat(slots) if slots else torch.zeros(0, dtype=torch.long, device=device)  # [N]
    token_rows = torch.empty(cu[-1], dtype=torch.long, device=device)  # [T]
    if buckets:
        real = torch.cat([torch.ones(b.count * b.span, dtype=torch.bool, device=device) if b.key_mask is None
                          else b.key_mask.flatten() for b in buckets])  # [N]
        rows = torch.nonzero(real).flatten()
        token_rows[slots[rows]] = rows
    return AttentionLayout(batch=batch, seqlen=seqlen, cu_seqlens=cu_seqlens, buckets=tuple(buckets),
                           slots=slots, token_rows=token_rows)


BUCKET_WASTE = 1.25  # padded attention work / real attention work allowed in one bucket


def length_buckets(lengths: list[int]) -> list[list[int]]:
    """Sequence indices grouped for padded attention, longest first; empty sequences are left out.

    Greedy over lengths sorted descending: a sequence joins the current bucket while
    ``count * longest^2 <= BUCKET_WASTE * sum(L_i^2)`` still holds with it.
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    work = 0
    for i in order:
        n = lengths[i]
        if buckets:
            top = lengths[buckets[-1][0]]
            if (len(buckets[-1]) + 1) * top * top <= BUCKET_WASTE * (work + n * n):
                buckets[-1].append(i)
                work += n * n
                continue
        buckets.append([i])
        work = n * n
    return buckets
