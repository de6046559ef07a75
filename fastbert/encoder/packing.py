"""Padding-free execution: move between a padded batch ``[B, S, ...]`` and packed real tokens ``[T, ...]``.

A batch whose attention mask keeps ``T`` of its ``B * S`` positions is packed into ``T`` rows, sequence ``i``'s kept
tokens in order in rows ``cu_seqlens[i]:cu_seqlens[i+1]``. Every GEMM, GELU and LayerNorm then touches real
tokens only, and attention reads sequence bounds from ``cu_seqlens``. Holes in a mask are packed out too: the
kept tokens of a row form its sequence, exactly the set of keys the reference lets them attend to.

The gather and scatter are single indexed copies (``index_select`` / ``index_copy``), memory-bound kernels on any
device. Building ``indices`` needs the number of kept tokens on the host: one device-to-host sync per batch.

The encoder decides the layout once, at the edge: :func:`padded_rows` / :func:`packed_rows` validate the caller's
input and turn it into :class:`TokenRows` (the token rows the layers run on and their attention layout), and
:meth:`TokenRows.finish` gives results back in the caller's layout. The layer loop never branches on the layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import ops
from .config import BertConfig
from .inputs import check_inputs, check_packed_inputs
from .layout import AttentionLayout


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


# ----------------------------------------------------------------------------------------------------------------
# The edge: the caller's input -> token rows, and back
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenRows:
    """The encoder's input as the layers run it: ``N`` token rows and their attention layout.

    ``input_ids`` / ``token_type_ids`` / ``position_ids`` are ``[B, S]`` (padded) or ``[1, N]`` (packed, the
    batch-of-one shape the embedding op takes); ``inputs_embeds`` ``[B, S, E]`` / ``[1, N, E]`` replaces the word
    lookup. ``first`` ``[B]``: the token of each input row the pooler reads (packed; None: column 0 of a padded
    batch). ``indices`` ``[T]``: where each packed token sits in the caller's flattened ``[B * S]`` batch (padded
    input run packed). ``shape``: the caller's ``(B, S)`` (None: the packed API, results stay ``[T, ...]``).
    ``empty`` ``[B]`` bool: sequences of the packed API with no token (their pooled output is zero).
    ``columns`` ``[N]`` int64: each packed row's column in the caller's row (the packed API: its index in its
    sequence), which a relative-position bias reads; None for padded rows, whose column is their index in the row.
    """

    input_ids: torch.Tensor | None
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    inputs_embeds: torch.Tensor | None
    layout: AttentionLayout
    rows: int
    shape: tuple[int, int] | None
    first: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    empty: torch.Tensor | None = None
    columns: torch.Tensor | None = None

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output ``[N, H]`` -> the real tokens ``[T, H]`` in packed order (or ``[B * S, H]`` padded)."""
        return self.layout.tokens(x)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output ``[N, H]`` -> the caller's layout: ``[B, S, H]`` (zeros at packed-out padding) or ``[T, H]``."""
        x = self.tokens(x)
        if self.shape is None:
            return x
        batch, seqlen = self.shape
        if self.indices is not None:
            return pad_input(x, self.indices, batch, seqlen)
        return x.view(batch, seqlen, x.shape[-1])

    def first_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Layer output ``[N, H]`` -> the first token of each input row ``[B, H]``, as HF's pooler reads it."""
        if self.first is None:
            batch, seqlen = self.shape
            return x.view(batch, seqlen, x.shape[-1])[:, 0]
        return self.tokens(x)[self.first]


def padded_rows(config: BertConfig, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, *,
                device: torch.device, dtype: torch.dtype, backend: str, validate: bool,
                padding_free: bool | None) -> TokenRows:
    """Padded input ``[B, S]`` -> token rows: packed when the batch has padding and ``padding_free`` (default: on
    for Triton and on CPU), or when position ids restart without a mask (``config.packed_position_ids``); else the
    padded rows with a key mask. Rows whose first position is padding (left padding) keep the padded path, because
    the pooler reads position 0 as HF does (XLNet: rows whose last position is padding, which its heads read). Position ids default to the family's (:func:`padded_positions`),
    computed from the padded input before any packing."""
    (batch, seqlen), all_real, first_real = check_inputs(
        config, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
        device=device, dtype=dtype, check_values=validate,
    )
    restarts = None
    if position_ids is None:
        pad = config.pad_token_id if config.padding_aware_positions else None
        position_ids = padded_positions(seqlen, config.position_offset, input_ids, pad, device=device)
    elif config.packed_position_ids and attention_mask is None and validate:
        restarts = restart_cu_seqlens(position_ids.expand(batch, seqlen))  # [P + 1] or None
        if restarts is not None and padding_free is False:
            raise ValueError(
                "position_ids restart within a row and there is no attention_mask: packed sequences, as "
                f"transformers >= 5.25 reads them for {config.model_type}; they run padding-free only, "
                "but padding_free=False was set")
    position_ids = position_ids.expand(batch, seqlen)  # [S] or [1, S] -> [B, S] (a view)
    token_type_ids = (torch.zeros_like(position_ids) if token_type_ids is None
                      else token_type_ids.expand(batch, seqlen))  # [B, S]
    key_mask = None if attention_mask is None or all_real else attention_mask != 0  # [B, S] bool
    if padding_free is None:
        padding_free = backend == "triton" or device.type == "cpu"
    if restarts is None and padding_free and key_mask is not None and first_real is None:
        first_real = bool(key_mask[:, config.summary_column].all())
    ids = (input_ids, token_type_ids, position_ids, inputs_embeds)
    if restarts is not None:  # every token kept, rows split where the positions restart
        indices = torch.arange(batch * seqlen, device=device)  # [T = B * S]
        return _packed(ids, indices, restarts, indices[::seqlen], (batch, seqlen), backend)
    if padding_free and key_mask is not None and first_real:
        indices, cu_seqlens, _ = pack_indices(key_mask)  # [T], [B + 1]
        return _packed(ids, indices, cu_seqlens, cu_seqlens[:-1].long(), (batch, seqlen), backend)
    layout = AttentionLayout(batch=batch, seqlen=seqlen, key_mask=key_mask)
    return TokenRows(*ids, layout=layout, rows=batch * seqlen, shape=(batch, seqlen))


def _packed(ids, indices, cu_seqlens, first, shape, backend) -> TokenRows:
    """The padded tensors ``ids`` gathered at ``indices`` ``[T]`` into sequences ``cu_seqlens``."""
    packed = tuple(None if t is None else t.flatten(0, 1).index_select(0, indices) for t in ids)  # [T, ...]
    columns = indices % shape[1]  # [T]: each token's column in its row
    return _rows(packed, cu_seqlens, shape[1], backend, columns, shape=shape, first=first, indices=indices)


def packed_rows(config: BertConfig, input_ids, cu_seqlens, max_seqlen, token_type_ids, position_ids, *,
                device: torch.device, backend: str, validate: bool) -> TokenRows:
    """The packed API: ``input_ids`` ``[T]`` with ``cu_seqlens`` ``[B + 1]`` and ``max_seqlen`` -> token rows;
    results stay packed ``[T, H]`` (pooler: the first token of each sequence, zero for an empty one)."""
    if input_ids is None or max_seqlen is None:
        raise ValueError("packed input needs input_ids [total_tokens], cu_seqlens and max_seqlen")
    check_packed_inputs(config, input_ids, cu_seqlens, max_seqlen, token_type_ids, position_ids,
                        device=device, check_values=validate)
    total = input_ids.shape[0]
    cu_seqlens = cu_seqlens.to(torch.int32)
    if position_ids is None:
        pad = config.pad_token_id if config.padding_aware_positions else None
        position_ids = packed_positions(cu_seqlens, total, config.position_offset, input_ids, pad)  # [T]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(position_ids)
    first = cu_seqlens[:-1].long().clamp(max=total - 1)  # [B]
    empty = cu_seqlens[1:] == cu_seqlens[:-1]  # [B]
    ids = (input_ids, token_type_ids, position_ids, None)
    columns = positions_in_sequence(cu_seqlens, total)  # [T]
    return _rows(ids, cu_seqlens, max_seqlen, backend, columns, shape=None, first=first, empty=empty)


def _rows(ids, cu_seqlens, seqlen, backend, columns, **finish) -> TokenRows:
    """Packed ``[T, ...]`` tensors (and each token's column ``[T]``) -> token rows in the backend's layout for
    packed tokens (the rows themselves for Triton, length buckets for PyTorch), each ``[1, N, ...]``; columns
    ``[N]``."""
    layout = ops.packed_layout(cu_seqlens.shape[0] - 1, seqlen, cu_seqlens, backend)
    rows = ids[0].shape[0] if ids[0] is not None else ids[3].shape[0]
    if layout.slots is not None:  # the op seam runs the tokens in its own row order
        rows = layout.slots.shape[0]
        ids = tuple(None if t is None else t.index_select(0, layout.slots) for t in ids)
        columns = columns.index_select(0, layout.slots)
    input_ids, token_type_ids, position_ids, inputs_embeds = (None if t is None else t.unsqueeze(0) for t in ids)
    return TokenRows(input_ids, token_type_ids, position_ids, inputs_embeds, layout=layout, rows=rows,
                     columns=columns, **finish)
