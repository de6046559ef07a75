"""Input checks for the encoder, run before any kernel so bad input is a Python exception, never a device assert.

Shape, dtype and device checks cost nothing. Value checks (token ids in range, mask values 0/1) need the data:
they are computed on the tensors' device and brought to the host in one transfer (one sync per forward), which
also tells whether the mask has any padding at all so attention can skip it.
"""
from __future__ import annotations

import torch

from .config import BertConfig


def _require_tensor(name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _require_integer(name: str, t: torch.Tensor) -> None:
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integers (e.g. torch.long), got dtype {t.dtype}")


def _require_index(name: str, t: torch.Tensor) -> None:
    """Ids index embedding tables: int64 or int32, the types ``torch.nn.Embedding`` (and so transformers) takes."""
    _require_integer(name, t)
    if t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be torch.int64 or torch.int32 (as transformers takes), got {t.dtype}; "
                        "convert with .long()")


def _require_shape(name: str, t: torch.Tensor, shape: tuple[int, ...], *alternatives: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape and tuple(t.shape) not in alternatives:
        expected = " or ".join(str(list(s)) for s in (shape, *alternatives))
        raise ValueError(f"{name} has shape {list(t.shape)} but the input ids need {expected}")


def _max_length(config: BertConfig) -> str:
    """The position limit, in words that point at the config."""
    if config.position_offset:
        return (f"the model's {config.max_length} positions (max_position_embeddings={config.max_position_embeddings}"
                f" minus the position offset {config.position_offset})")
    return f"max_position_embeddings={config.max_position_embeddings}"


def _require_token_types(config: BertConfig) -> None:
    if config.type_vocab_size == 0 and not config.segment_ids:
        raise ValueError(f"token_type_ids given, but this {config.model_type} model has no token-type embeddings")


def _to_host(stats: list[torch.Tensor]) -> list[int]:
    """Scalars on the device -> Python ints, in one concatenation and one transfer (one sync)."""
    return torch.cat([t.reshape(1) for t in stats]).tolist() if stats else []


def check_inputs(
    config: BertConfig,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    check_values: bool = True,
) -> tuple[tuple[int, int], bool, bool | None]:
    """Validate encoder inputs; return ``((batch, seqlen), all_real, first_real)``.

    Shapes: ids ``[B, S]`` (int64/int32); token_type_ids ``[B, S]``, ``[1, S]`` or ``[S]`` (broadcast over the
    batch, as transformers does); position_ids ``[B, S]`` or ``[1, S]``; attention_mask ``[B, S]`` of 0/1 (bool,
    integer or float); inputs_embeds ``[B, S, H]`` in a float dtype that promotes to the model's ``dtype``.

    ``all_real``: the mask is known to keep every position (attention needs no mask). ``first_real``: every row
    keeps its first position, or the last where the family's summary reads it (``config.summary_column``; None when
    not checked). Both are only known when ``check_values`` is on.
    """
    shape = _input_shape(config, input_ids, inputs_embeds, dtype)
    checks: list[tuple[str, torch.Tensor, int]] = []  # (name, ids, exclusive upper bound) for the value check
    if input_ids is not None:
        checks.append(("input_ids", input_ids, config.vocab_size))
    if token_type_ids is not None:
        _require_tensor("token_type_ids", token_type_ids)
        _require_token_types(config)
        _require_index("token_type_ids", token_type_ids)
        _require_shape("token_type_ids", token_type_ids, shape, (1, shape[1]), (shape[1],))
        if not config.segment_ids:  # segment ids (XLNet) are any integers
            checks.append(("token_type_ids", token_type_ids, config.type_vocab_size))
    if position_ids is not None:
        _require_tensor("position_ids", position_ids)
        _require_index("position_ids", position_ids)
        _require_shape("position_ids", position_ids, shape, (1, shape[1]))
        checks.append(("position_ids", position_ids, config.max_position_embeddings))
    if attention_mask is not None:
        _require_tensor("attention_mask", attention_mask)
        if attention_mask.dtype.is_complex:
            raise TypeError(f"attention_mask must be bool, integer or float 0/1, got dtype {attention_mask.dtype}")
        _require_shape("attention_mask", attention_mask, shape)
    _require_device(device, input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                    token_type_ids=token_type_ids, position_ids=position_ids)
    if not check_values:
        return shape, attention_mask is None, None
    all_real, first_real = _check_values(checks, attention_mask, config.summary_column)
    return shape, all_real, first_real


def _input_shape(config: BertConfig, input_ids, inputs_embeds, dtype) -> tuple[int, int]:
    """``(batch, seqlen)`` of exactly one of ``input_ids`` ``[B, S]`` and ``inputs_embeds`` ``[B, S, E]``."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if input_ids is not None:
        _require_tensor("input_ids", input_ids)
        _require_index("input_ids", input_ids)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D [batch, seq_len], got shape {list(input_ids.shape)}")
        shape = tuple(input_ids.shape)
    else:
        _require_tensor("inputs_embeds", inputs_embeds)
        if not inputs_embeds.dtype.is_floating_point:
            raise TypeError(f"inputs_embeds must be floating point, got dtype {inputs_embeds.dtype}")
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.embedding_dim:
            raise ValueError(
                f"inputs_embeds must be [batch, seq_len, {config.embedding_dim}], got {list(inputs_embeds.shape)}"
            )
        if dtype is not None and torch.promote_types(inputs_embeds.dtype, dtype) != dtype:
            raise TypeError(f"inputs_embeds has dtype {inputs_embeds.dtype} but the model runs in {dtype}; "
                            f"convert with .to({dtype})")
        shape = tuple(inputs_embeds.shape[:2])
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"empty input: shape {list(shape)} (batch and seq_len must be at least 1)")
    if shape[1] > config.max_length:
        raise ValueError(f"sequence length {shape[1]} exceeds {_max_length(config)}; truncate the input")
    return shape


def _require_device(device: torch.device | None, **named: torch.Tensor | None) -> None:
    if device is None:
        return
    for name, t in named.items():
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but the model is on {device}; move the inputs there")


def _check_values(checks: list[tuple[str, torch.Tensor, int]], attention_mask, column: int = 0) -> tuple[bool, bool]:
    """Id ranges and mask values, gathered on the device and read in one transfer; returns
    ``(all_real, first_real)`` of the mask (``first_real``: every row keeps ``column``)."""
    stats: list[torch.Tensor] = []  # (min, max) per checked ids, then the mask's three flags
    for _, ids, _ in checks:
        stats.extend(torch.aminmax(ids))
    if attention_mask is not None:
        if attention_mask.dtype.is_floating_point:  # 0.5 or NaN must not pass as 0/1
            real = attention_mask != 0
            stats.extend([(real & (attention_mask != 1)).any(), real.all(), real[:, column].all()])
        else:  # bool/int: the extremes say it all, in one reduction
            lo, hi = torch.aminmax(attention_mask.view(torch.uint8) if attention_mask.dtype == torch.bool
                                   else attention_mask)
            stats.extend([(lo < 0) | (hi > 1), lo == 1, attention_mask[:, column].min() != 0])
    values = _to_host(stats)
    for i, (name, _, bound) in enumerate(checks):
        lo, hi = values[2 * i], values[2 * i + 1]
        if lo < 0 or hi >= bound:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name} contains {bad}, outside the valid range [0, {bound})")
    if attention_mask is None:
        return True, True
    not_binary, all_real, first_real = values[-3], bool(values[-2]), bool(values[-1])
    if not_binary:
        raise ValueError("attention_mask must contain only 0 and 1 (1 = real token, 0 = padding)")
    return all_real, first_real


def check_packed_inputs(
    config: BertConfig,
    input_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    token_type_ids: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    *,
    device: torch.device | None = None,
    check_values: bool = True,
) -> None:
    """Validate the packed layout: ``input_ids`` ``[T]``, ``cu_seqlens`` ``[B + 1]`` from 0 to T, non-decreasing,
    no sequence longer than ``max_seqlen`` or ``max_position_embeddings``."""
    _require_tensor("input_ids", input_ids)
    _require_index("input_ids", input_ids)
    _require_tensor("cu_seqlens", cu_seqlens)
    _require_integer("cu_seqlens", cu_seqlens)
    if input_ids.dim() != 1:
        raise ValueError(f"packed input_ids must be 1-D [total_tokens], got shape {list(input_ids.shape)}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D [batch + 1] with batch >= 1, got shape {list(cu_seqlens.shape)}")
    if input_ids.numel() == 0:
        raise ValueError("empty input: packed input_ids has no tokens")
    if not isinstance(max_seqlen, int) or isinstance(max_seqlen, bool) or max_seqlen < 1:
        raise TypeError(f"max_seqlen must be a positive int, got {max_seqlen!r}")
    if max_seqlen > config.max_length:
        raise ValueError(f"max_seqlen {max_seqlen} exceeds {_max_length(config)}")
    if token_type_ids is not None:
        _require_token_types(config)
    shape = tuple(input_ids.shape)
    for name, t in (("token_type_ids", token_type_ids), ("position_ids", position_ids)):
        if t is not None:
            _require_tensor(name, t)
            _require_index(name, t)
            _require_shape(name, t, shape)
    _require_device(device, input_ids=input_ids, cu_seqlens=cu_seqlens, token_type_ids=token_type_ids,
                    position_ids=position_ids)
    if not check_values:
        return
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    stats = [*torch.aminmax(input_ids), cu_seqlens[0], cu_seqlens[-1], lengths.min(), lengths.max()]
    bounds = [("token_type_ids", None if config.segment_ids else token_type_ids, config.type_vocab_size),
              ("position_ids", position_ids, config.max_position_embeddings)]
    for _, t, _ in bounds:
        if t is not None:
            stats.extend(torch.aminmax(t))
    values = _to_host(stats)
    lo, hi, first, last, shortest, longest = values[:6]
    if lo < 0 or hi >= config.vocab_size:
        raise ValueError(f"input_ids contains {lo if lo < 0 else hi}, outside the valid range [0, {config.vocab_size})")
    if first != 0 or last != shape[0]:
        raise ValueError(f"cu_seqlens must run from 0 to the number of tokens {shape[0]}, got {first} .. {last}")
    if shortest < 0:
        raise ValueError("cu_seqlens must be non-decreasing")
    if longest > max_seqlen:
        raise ValueError(f"a sequence has {longest} tokens, more than max_seqlen={max_seqlen}")
    rest = values[6:]
    for name, t, bound in bounds:
        if t is not None:
            lo, hi = rest[0], rest[1]
            rest = rest[2:]
            if lo < 0 or hi >= bound:
                raise ValueError(f"{name} contains {lo if lo < 0 else hi}, outside the valid range [0, {bound})")
