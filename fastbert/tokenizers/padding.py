"""Padding of already encoded inputs (``pad``, as transformers' data collators call it). Padding inside a call
is the encoder's (C++ for WordPiece, the ``tokenizers`` library for the other families).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .batch_encoding import BatchEncoding
from .options import check_side, non_negative, resolve_strategies
from .tensors import to_py


class Padding:
    """Mixin: transformers' ``pad``. Reads the host's ``padding_side``, ``model_max_length``, ``pad_token``,
    ``pad_token_id``, ``pad_token_type_id`` and ``model_input_names``."""

    def pad(self, encoded_inputs, padding=True, max_length: int | None = None, pad_to_multiple_of: int | None = None,
            padding_side: str | None = None, return_attention_mask: bool | None = None,
            return_tensors: str | None = None, verbose: bool = True) -> BatchEncoding:
        """Pads already encoded inputs (a dict of lists, a list of dicts, or a BatchEncoding), as transformers'
        ``pad`` does for data collators: ``input_ids`` with the pad id, ``token_type_ids`` with 0,
        ``attention_mask`` and ``special_tokens_mask`` with 0 / 1; other keys are kept as they are."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0].keys()}
        if "input_ids" not in encoded_inputs:
            raise ValueError("pad needs an encoding (or list of encodings) with input_ids, but got keys "
                             f"{list(encoded_inputs.keys())}")
        required = encoded_inputs["input_ids"]
        if required is None or (hasattr(required, "__len__") and len(required) == 0):
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return encoded_inputs
        first = required[0]
        if isinstance(first, (list, tuple)):
            first = next((row[0] for row in required if len(row)), first)
        if not isinstance(first, (int, list, tuple)):
            if isinstance(first, np.ndarray) or isinstance(first, np.generic):
                return_tensors = "np" if return_tensors is None else return_tensors
            elif type(first).__module__.startswith("torch"):
                return_tensors = "pt" if return_tensors is None else return_tensors
            else:
                raise ValueError(f"type of {first} unknown: {type(first)}. Should be a python, numpy or torch object.")
            encoded_inputs = {key: to_py(value) for key, value in encoded_inputs.items()}
        pad, _, max_length = resolve_strategies(padding, None, max_length, None, self.model_max_length,
                                                self.pad_token)
        pad_to_multiple_of = non_negative(pad_to_multiple_of, "pad_to_multiple_of")
        side = check_side(self.padding_side if padding_side is None else padding_side, "padding_side")
        required = encoded_inputs["input_ids"]
        if required and not isinstance(required[0], (list, tuple)):
            return BatchEncoding(self._pad_one(dict(encoded_inputs), max_length, pad, pad_to_multiple_of, side,
                                               return_attention_mask), tensor_type=return_tensors)
        if any(len(v) != len(required) for v in encoded_inputs.values()):
            raise ValueError("Some items in the output dictionary have a different batch size than others.")
        if pad == "longest":
            max_length, pad = max(len(row) for row in required), "max_length"
        batch: dict[str, list] = {}
        for i in range(len(required)):
            row = self._pad_one({k: v[i] for k, v in encoded_inputs.items()}, max_length, pad, pad_to_multiple_of,
                                side, return_attention_mask)
            for key, value in row.items():
                batch.setdefault(key, []).append(value)
        return BatchEncoding(batch, tensor_type=return_tensors)

    def _pad_one(self, inputs: dict, max_length, pad: str, multiple, side: str, return_attention_mask) -> dict:
        """transformers' ``_pad`` of one encoded input (a dict of lists)."""
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        ids = list(inputs["input_ids"])
        if pad == "longest":
            max_length = len(ids)
        if max_length is not None and multiple and max_length % multiple:
            max_length = (max_length // multiple + 1) * multiple
        if return_attention_mask and "attention_mask" not in inputs:
            inputs["attention_mask"] = [1] * len(ids)
        if pad == "do_not_pad" or max_length is None or len(ids) == max_length:
            return inputs
        n = max_length - len(ids)
        fill = {"input_ids": self.pad_token_id, "token_type_ids": self.pad_token_type_id, "attention_mask": 0,
                "special_tokens_mask": 1}
        for key, value in fill.items():
            if key in inputs and (key != "attention_mask" or return_attention_mask):
                row = list(inputs[key])
                inputs[key] = row + [value] * n if side == "right" else [value] * n + row
        return inputs
