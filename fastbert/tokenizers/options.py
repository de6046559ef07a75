"""The arguments of a tokenizer call, resolved as transformers resolves them: ``CallOptions`` (the call's arguments
as one value), the padding/truncation strategies and their length, the output fields, and the checks of numbers,
sides and tensor types. Pure functions: the tokenizer's own defaults come in as arguments.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import InputTypeError, OutOfRangeError

# transformers' "no limit" value of model_max_length.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second", "do_not_truncate": "do_not_truncate"}
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length", "do_not_pad": "do_not_pad"}
_DEFAULT_FIELDS = ["input_ids", "token_type_ids", "attention_mask"]


class CallOptions(NamedTuple):
    """The keyword arguments of a tokenizer call (``__call__``), as given; ``_encode`` resolves them."""
    add_special_tokens: bool
    padding: bool | str
    truncation: bool | str | None
    max_length: int | None
    stride: int
    is_split_into_words: bool
    pad_to_multiple_of: int | None
    padding_side: str | None
    return_tensors: str | None
    return_token_type_ids: bool | None
    return_attention_mask: bool | None
    return_overflowing_tokens: bool
    return_special_tokens_mask: bool
    return_offsets_mapping: bool
    return_length: bool
    split_special_tokens: bool | None
    num_threads: int | None


def value_of(x):
    """The value of a str Enum (transformers' PaddingStrategy, TruncationStrategy, TensorType), else x."""
    return x if x is None or type(x) in (bool, str) else getattr(x, "value", x)


def non_negative(value, name: str, allow_none: bool = True) -> int | None:
    """``value`` as an int in [0, 2**32); None passes if allowed. Raises InputTypeError / OutOfRangeError."""
    if type(value) is int and 0 <= value < 2**32:
        return value
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise OutOfRangeError(f"{name} must be >= 0, got {value}")
    if value >= 2**32:
        raise OutOfRangeError(f"{name} must be < 2**32, got {value}")
    return int(value)


def check_side(side, name: str) -> str:
    """A padding or truncation side: "right" or "left"."""
    if side not in ("right", "left"):
        raise ValueError(f"{name} must be 'right' or 'left', not {side!r}")
    return side


def tensor_kind(return_tensors) -> str | None:
    """``return_tensors`` as None, "np" or "pt" (a transformers TensorType counts as its value)."""
    kind = value_of(return_tensors)
    if kind not in (None, "np", "pt"):
        raise ValueError(f"return_tensors must be None, 'np' or 'pt', not {return_tensors!r}")
    return kind


def resolve_strategies(padding, truncation, max_length, pad_to_multiple_of, model_max_length: int,
                       pad_token: str | None) -> tuple[str, str, int | None]:
    """transformers' resolution of padding/truncation arguments into (padding, truncation, max_length): padding
    one of "longest", "max_length", "do_not_pad"; truncation one of "longest_first", "only_first", "only_second",
    "do_not_truncate"; ``max_length`` defaults to ``model_max_length`` where a strategy needs one."""
    padding, truncation = value_of(padding), value_of(truncation)
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"  # transformers: max_length alone implies truncation
    if padding is not False and padding not in _PADDING:
        raise ValueError(f"padding must be one of False, True, 'longest', 'max_length', 'do_not_pad', "
                         f"not {padding!r}")
    if truncation not in (None, False) and truncation not in _TRUNCATION:
        raise ValueError(f"truncation must be one of None, False, True, 'longest_first', 'only_first', "
                         f"'only_second', 'do_not_truncate', not {truncation!r}")
    pad = "do_not_pad" if padding is False else _PADDING[padding]
    trunc = "do_not_truncate" if truncation in (None, False) else _TRUNCATION[truncation]
    max_length = non_negative(max_length, "max_length")
    if max_length is None:
        limit = model_max_length if model_max_length <= LARGE_INTEGER else None
        if pad == "max_length":
            pad = "do_not_pad" if limit is None else pad
            max_length = limit
        if trunc != "do_not_truncate":
            trunc = "do_not_truncate" if limit is None else trunc
            max_length = limit
    if pad != "do_not_pad" and pad_token is None:
        raise ValueError("Asking to pad but the tokenizer does not have a padding token (pad_token is None)")
    if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of and max_length is not None
            and max_length % pad_to_multiple_of != 0):
        raise ValueError("Truncation and padding are both activated but truncation length "
                         f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
    return pad, trunc, max_length


def output_fields(return_token_type_ids, return_attention_mask, return_special_tokens_mask,
                  return_offsets_mapping) -> list[str]:
    """The per-token fields a call returns, in transformers' order (``return_token_type_ids`` and
    ``return_attention_mask`` resolved: only False leaves a field out)."""
    if return_token_type_ids is not False and return_attention_mask is not False and not (
            return_special_tokens_mask or return_offsets_mapping):
        return _DEFAULT_FIELDS
    fields = ["input_ids"]
    if return_token_type_ids is not False:
        fields.append("token_type_ids")
    if return_attention_mask is not False:
        fields.append("attention_mask")
    if return_special_tokens_mask:
        fields.append("special_tokens_mask")
    if return_offsets_mapping:
        fields.append("offset_mapping")
    return fields
