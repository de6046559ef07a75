"""BERT embeddings: three table lookups, their sum and a LayerNorm, in one kernel.

For each token ``(b, s)``::

    h         = word[input_ids[b, s]] + token_type[token_type_ids[b, s]] + position[position_ids[b, s]]
    out[b, s] = LayerNorm(h) * ln_weight + ln_bias           (fp32 statistics, eps from the checkpoint)

The sum is formed in fp32 (the PyTorch path adds in the storage dtype; in fp32 the two agree to rounding). The id
tensors are read through their strides, so expanded views (``position_ids = arange(S).expand(B, S)``, stride 0 on
the batch dim) cost nothing. Rows are processed like :mod:`fastbert.kernels.layernorm` and share its
:func:`~fastbert.kernels.layernorm._layernorm_rows`.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .layernorm import _layernorm_rows, row_launch_config


@triton.jit
def _embed_layernorm_kernel(
    Ids_ptr,  # [B, S] int word ids
    Tt_ptr,  # [B, S] int token type ids
    Pos_ptr,  # [B, S] int position ids
    Word_ptr,  # [vocab, H]
    Posemb_ptr,  # [max_positions, H]
    Ttemb_ptr,  # [type_vocab, H]
    W_ptr,  # [H] LayerNorm weight
    LnB_ptr,  # [H] LayerNorm bias
    Y_ptr,  # [B * S, H] output, contiguous
    N, S, H,
    stride_ib, stride_is, stride_tb, stride_ts, stride_pb, stride_ps,
    stride_word, stride_pos, stride_tt,
    eps,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)  # [BLOCK_ROWS] token index b * S + s
    row_ok = rows < N
    b = rows // S
    s = rows % S
    offs_h = tl.arange(0, BLOCK_H)
    mask = row_ok[:, None] & (offs_h < H)[None, :]

    ids = tl.load(Ids_ptr + b * stride_ib + s * stride_is, mask=row_ok, other=0).to(tl.int64)
    tts = tl.load(Tt_ptr + b * stride_tb + s * stride_ts, mask=row_ok, other=0).to(tl.int64)
    pos = tl.load(Pos_ptr + b * stride_pb + s * stride_ps, mask=row_ok, other=0).to(tl.int64)

    h = tl.load(Word_ptr + ids[:, None] * stride_word + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
    h += tl.load(Ttemb_ptr + tts[:, None] * stride_tt + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)
    h += tl.load(Posemb_ptr + pos[:, None] * stride_pos + offs_h[None, :], mask=mask, other=0.0).to(tl.float32)

    y = _layernorm_rows(h, W_ptr, LnB_ptr, offs_h, H, eps)
    tl.store(Y_ptr + rows.to(tl.int64)[:, None] * H + offs_h[None, :], y.to(Y_ptr.dtype.element_ty), mask=mask)


def embed_layernorm(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor,
    position_ids: torch.Tensor,
    word: torch.Tensor,
    position: torch.Tensor,
    token_type: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """LayerNorm(word[ids] + token_type[tt] + position[pos]). Id tensors ``[B, S]`` (any strides, e.g. expanded);
    tables ``[rows, H]``; returns ``[B, S, H]`` contiguous in the word table's dtype. Ids are not range-checked here
    (``fastbert.validation`` does that before the forward)."""
    ids = {"input_ids": input_ids, "token_type_ids": token_type_ids, "position_ids": position_ids}
    for name, t in ids.items():
        if t.dim() != 2 or t.shape != input_ids.shape:
            raise ValueError(f"{name} must be [B, S] like input_ids {list(input_ids.shape)}, got {list(t.shape)}")
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got {t.dtype}")
    hidden = word.shape[-1]
    for name, t in (("position", position), ("token_type", token_type)):
        if t.dim() != 2 or t.shape[1] != hidden or t.dtype != word.dtype:
            raise ValueError(
                f"{name} table must be [rows, {hidden}] of {word.dtype}, got {list(t.shape)} of {t.dtype}"
            )
    if word.dim() != 2 or word.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"word table must be 2-D float32/float16/bfloat16, got {list(word.shape)} of {word.dtype}")
    for name, t in (("word", word), ("position", position), ("token_type", token_type)):
        if t.stride(1) != 1:
            raise ValueError(f"{name} table needs unit stride on its last dim, got {t.stride()}")
    for name, t in (("ln_weight", ln_weight), ("ln_bias", ln_bias)):
        if t.shape != (hidden,) or t.stride(0) != 1:
            raise ValueError(f"{name} must be a contiguous [{hidden}], got {list(t.shape)} stride {t.stride()}")

    batch, seqlen = input_ids.shape
    y = torch.empty((batch, seqlen, hidden), dtype=word.dtype, device=word.device)
    n = batch * seqlen
    if n == 0:
        return y

    block_h, block_rows, num_warps = row_launch_config(hidden)
    grid = (triton.cdiv(n, block_rows),)
    _embed_layernorm_kernel[grid](
        input_ids, token_type_ids, position_ids, word, position, token_type, ln_weight, ln_bias, y,
        n, seqlen, hidden,
        input_ids.stride(0), input_ids.stride(1), token_type_ids.stride(0), token_type_ids.stride(1),
        position_ids.stride(0), position_ids.stride(1),
        word.stride(0), position.stride(0), token_type.stride(0),
        float(eps),
        BLOCK_ROWS=block_rows,
        BLOCK_H=block_h,
        num_warps=num_warps,
    )
    return y


def embed_layernorm_ref(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor,
    position_ids: torch.Tensor,
    word: torch.Tensor,
    position: torch.Tensor,
    token_type: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
) -> torch.Tensor:
    """PyTorch reference, computed in fp32 (float64 for float64 tables) and returned in the word table's dtype."""
    work = torch.float64 if word.dtype == torch.float64 else torch.float32
    h = word.to(work)[input_ids] + token_type.to(work)[token_type_ids] + position.to(work)[position_ids]
    y = torch.nn.functional.layer_norm(h, (h.shape[-1],), ln_weight.to(work), ln_bias.to(work), eps)
    return y.to(word.dtype)
