"""Sentence-transformers' pooling and the modules after it (Dense, Normalize), on padded token embeddings.

Each pooling mode computes what sentence-transformers 6.2's ``Pooling`` computes on a padded batch:

- ``cls``: the first token the mask keeps (position 0, or the first token after an excluded prompt);
- ``max``: the element-wise max over kept tokens;
- ``mean``: sum over kept tokens / max(count, 1e-9); ``mean_sqrt_len_tokens``: the same sum / sqrt(count);
- ``weightedmean``: tokens weighted by their position 1, 2, ... (a prompt, when excluded, keeps its positions);
- ``lasttoken``: the last kept token (zeros when none is kept).

Several modes are concatenated in the given order. Everything runs in float32.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def prompt_mask(attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """Right-padded ``attention_mask`` [B, S] with the first ``prompt_length`` positions (``[CLS]`` and the prompt)
    taken out, as sentence-transformers does when ``include_prompt`` is false."""
    mask = attention_mask.clone()
    mask[:, :prompt_length] = 0
    return mask


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """hidden [B, S, H] (float32), mask [B, S] of 0/1 -> [B, len(modes) * H]."""
    batch, seqlen, size = hidden.shape
    keep = mask.to(hidden.dtype).unsqueeze(-1)  # [B, S, 1]
    out = []
    for mode in modes:
        if mode == "cls":
            first = mask.to(torch.int32).argmax(dim=1)  # [B]
            out.append(hidden[torch.arange(batch, device=hidden.device), first])
        elif mode == "max":
            out.append(hidden.masked_fill(keep == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            total = (hidden * keep).sum(dim=1)  # [B, H]
            count = keep.sum(dim=1).clamp(min=1e-9)  # [B, 1]
            out.append(total / (count if mode == "mean" else count.sqrt()))
        elif mode == "weightedmean":
            positions = torch.arange(1, seqlen + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
            weights = keep * positions  # [B, S, 1]
            out.append((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9))
        elif mode == "lasttoken":
            flipped = mask.flip(1).to(torch.int32)
            found, from_end = flipped.max(dim=1)  # [B]
            last = torch.where(found == 0, seqlen - 1, seqlen - 1 - from_end)
            out.append((hidden * keep)[torch.arange(batch, device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return torch.cat(out, dim=-1)


_ACTIVATIONS = {
    "identity": lambda x: x,
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "silu": F.silu,
}


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str,
          residual: torch.Tensor | bool | None = None) -> torch.Tensor:
    """sentence-transformers' Dense: x [B, in] -> activation(x @ weight.T + bias) [B, out].

    ``residual``: ``True`` adds ``x`` (in == out), a [out, in] tensor adds ``x @ residual.T``, ``None`` nothing."""
    y = _ACTIVATIONS[activation](F.linear(x, weight, bias))
    if residual is True:
        y = y + x
    elif isinstance(residual, torch.Tensor):
        y = y + F.linear(x, residual)
    return y


def normalize(x: torch.Tensor) -> torch.Tensor:
    """L2 normalisation of each row, [B, D] -> [B, D] (rows of zeros stay zeros)."""
    return F.normalize(x, p=2, dim=-1)
