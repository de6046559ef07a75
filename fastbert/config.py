"""BERT configuration, read from a Hugging Face ``config.json``.

Only what the encoder needs is kept. Anything in the file that would change the model's math in a way fastbert does
not implement (relative position embeddings, decoder mode, cross-attention, ...) is refused with a ``ValueError``
rather than silently ignored.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

# HF's names for the activations fastbert implements, mapped to the op seam's names.
# "gelu" is the exact erf form, "gelu_new" / "gelu_pytorch_tanh" the tanh approximation (identical formulas in HF).
ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0

    def __post_init__(self):
        if not isinstance(self.hidden_act, str):
            raise TypeError(f"hidden_act must be a string, got {type(self.hidden_act).__name__} {self.hidden_act!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; fastbert implements {sorted(ACTIVATIONS)}"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not _is_int(value):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
            if value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        eps = self.layer_norm_eps
        if not (_is_int(eps) or isinstance(eps, float)):
            raise TypeError(f"layer_norm_eps must be a number, got {type(eps).__name__} {eps!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"layer_norm_eps must be positive and finite, got {eps!r}")
        if self.pad_token_id is not None:
            if not _is_int(self.pad_token_id):
                raise TypeError(f"pad_token_id must be an integer or null, got {self.pad_token_id!r}")
            if not 0 <= self.pad_token_id < self.vocab_size:
                raise ValueError(f"pad_token_id {self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def activation(self) -> str:
        """The op seam's name for ``hidden_act``: ``gelu`` (erf), ``gelu_tanh`` or ``relu``."""
        return ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
        """Build from a HF config dict; refuse settings that change the math in ways fastbert does not support.

        A key set to ``null`` takes the default, except ``pad_token_id`` (null: no padding embedding)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a model config must be a JSON object, got {type(d).__name__}")
        _check_supported(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: d[k] for k in fields if k in d and (d[k] is not None or k == "pad_token_id")}
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "BertConfig":
        """Read ``config.json`` from a checkpoint directory (or the file itself). Every error names the file."""
        path = os.fspath(path)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.lexists(file):
            raise OSError(f"no config.json found at {path!r}")
        d = read_json(file)
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{file}: {e}") from None

    @classmethod
    def from_hf(cls, hf_config) -> "BertConfig":
        """Build from a ``transformers.BertConfig`` object."""
        return cls.from_dict(hf_config.to_dict())


def _check_supported(d: Mapping[str, Any]) -> None:
    model_type = d.get("model_type", "bert")
    if model_type != "bert":
        raise ValueError(f"unsupported model_type {model_type!r}; fastbert implements BERT ('bert') models")
    problems = []
    pet = d.get("position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        problems.append(f"position_embedding_type={pet!r} (only 'absolute' is supported)")
    if d.get("is_decoder"):
        problems.append("is_decoder=True (fastbert is a bidirectional encoder)")
    if d.get("add_cross_attention"):
        problems.append("add_cross_attention=True (cross-attention is not supported)")
    if problems:
        raise ValueError("unsupported BERT configuration: " + "; ".join(problems))


def _is_int(value) -> bool:
    """JSON integers only: ``true``/``false`` are not numbers here."""
    return isinstance(value, int) and not isinstance(value, bool)


def read_json(file: str) -> Any:
    """Parse a UTF-8 JSON file; an unreadable file, bad UTF-8 or bad JSON is an error naming the file."""
    try:
        with open(file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise OSError(f"cannot read {file}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{file} is not UTF-8 text: {e.reason} (byte {raw[e.start]:#04x} at offset {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None
