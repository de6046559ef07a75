"""Padding-free execution: move between a padded batch ``[B, S, ...]`` and packed real tokens ``[T, ...]``.

A batch whose attention mask keeps ``T`` of its ``B * S`` positions is packed into ``T`` rows, sequence ``i``'s kept
tokens in order in rows ``cu_seqlens[i]:cu_seqlens[i+1]``. Every GEMM, GELU and LayerNorm then touches real
tokens only, and attention reads sequence bounds from ``cu_seqlens``. Holes in a mask are packed out too: the
kept tokens of a row form its sequence, exactly the set of keys the reference lets them attend to.

The gather and scatter are single indexed copies (``index_select`` / ``index_copy``), memory-bound kernels on any
device. Building ``indices`` needs the number of kept tokens on the host: one device-to-host sync per batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pack_indices(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """attention_mask ``[B, S]`` (0/1) -> (indices ``[T]`` int64 into the flattened ``B * S`` positions,
    cu_seqlens ``[B + 1]`` int32, max_seqlen)."""
    keep = attention_mask.reshape(-1) != 0
    indices = torch.nonzero(keep).flatten()  # one sync: T is data-dependent
    seqlens = (attention_mask != 0).sum(dim=1, dtype=torch.int32)  # [B]
    cu_seqlens = F.pad(torch.cumsum(seqlens, 0, dtype=torch.int32), (1, 0))
    # The padded length bounds every sequence; the exact max would cost another sync and buys little.
    return indices, cu_seqlens, attention_mask.shape[1]


def unpad_input(
    hidden: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """hidden ``[B, S, ...]``, attention_mask ``[B, S]`` -> (packed ``[T, ...]``, indices ``[T]``,
    cu_seqlens ``[B + 1]`` int32, max_seqlen)."""
    indices, cu_seqlens, max_seqlen = pack_indices(attention_mask)
    return hidden.flatten(0, 1).index_select(0, indices), indices, cu_seqlens, max_seqlen


def pad_input(packed: torch.Tensor, indices: torch.Tensor, batch: int, seqlen: int) -> torch.Tensor:
    """packed ``[T, ...]`` -> ``[batch, seqlen, ...]``: rows scattered back to ``indices``, zeros elsewhere."""
    out = packed.new_zeros((batch * seqlen, *packed.shape[1:]))
    out.index_copy_(0, indices, packed)
    return out.unflatten(0, (batch, seqlen))


def positions_in_sequence(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Position of each packed token within its own sequence, ``[T]`` int64, without a host sync."""
    seqlens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), seqlens, output_size=total)
    return torch.arange(total, device=cu_seqlens.device) - starts


def padded_positions(
    seqlen: int, offset: int = 0, input_ids: torch.Tensor | None = None, pad_id: int | None = None, *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Default position ids of a padded batch, on the device with no host sync.

    Without ``pad_id``: ``offset + arange(seqlen)``, ``[S]`` (BERT: offset 0). With ``pad_id`` and ``input_ids``
    ``[B, S]`` (RoBERTa, as transformers counts them): each token that is not ``pad_id`` gets ``offset`` plus the
    number of such tokens before it in its row, and pad tokens get ``pad_id``, so left padding and holes shift
    nothing; ``[B, S]`` int64.
    """
    if pad_id is None or input_ids is None:
        return torch.arange(offset, offset + seqlen, device=device if input_ids is None else input_ids.device)
    real = input_ids != pad_id  # [B, S]
    counted = torch.cumsum(real, dim=1)  # [B, S] int64: real tokens up to and including each position
    return torch.where(real, counted + (offset - 1), pad_id)


def packed_positions(
    cu_seqlens: torch.Tensor, total: int, offset: int = 0, input_ids: torch.Tensor | None = None,
    pad_id: int | None = None,
) -> torch.Tensor:
    """:func:`padded_positions` for packed tokens ``[T]`` (sequence ``i`` in ``cu_seqlens[i]:cu_seqlens[i+1]``),
    ``[T]`` int64, with no host sync."""
    if pad_id is None or input_ids is None:
        return positions_in_sequence(cu_seqlens, total) + offset
    real = (input_ids != pad_id).long()  # [T]
    counted = torch.cumsum(real, dim=0)  # [T]: real tokens of all sequences up to each token
    seqlens = (cu_seqlens[1:] - cu_seqlens[:-1]).long()
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), seqlens, output_size=total)  # [T]
    before = (counted - real)[starts]  # [T]: real tokens of earlier sequences
    return torch.where(real.bool(), counted - before + (offset - 1), pad_id)


def restart_cu_seqlens(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Packed sequences marked by position ids, as transformers >= 5.25 finds them (``find_packed_sequence_indices``):
    a sequence starts at each row's first token and wherever a position is not the previous one plus 1.

    position_ids ``[B, S]`` -> cu_seqlens ``[P + 1]`` int32 over the ``B * S`` row-major tokens (``P`` sequences),
    or None when no row restarts (one sequence per row). One host sync.
    """
    batch, seqlen = position_ids.shape
    starts = torch.ones(batch, seqlen, dtype=torch.bool, device=position_ids.device)  # [B, S]
    starts[:, 1:] = position_ids[:, 1:] - position_ids[:, :-1] != 1
    if seqlen < 2 or not bool(starts[:, 1:].any()):
        return None
    bounds = torch.nonzero(starts.flatten()).flatten()  # [P]
    end = torch.tensor([batch * seqlen], device=bounds.device)
    return torch.cat([bounds, end]).to(torch.int32)  # [P + 1]
