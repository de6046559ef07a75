"""BERT configuration, read from a Hugging Face ``config.json``.

Only what the encoder needs is kept. Anything in the file that would change the model's math in a way fastbert does
not implement (relative position embeddings, decoder mode, cross-attention, ...) is refused with a ``ValueError``
rather than silently ignored.
"""
from __future__ import annotations

import dataclasses
import json
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
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; fastbert implements {sorted(ACTIVATIONS)}"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def activation(self) -> str:
        """The op seam's name for ``hidden_act``: ``gelu`` (erf), ``gelu_tanh`` or ``relu``."""
        return ACTIVATIONS[self.hidden_act]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
        """Build from a HF config dict; refuse settings that change the math in ways fastbert does not support."""
        _check_supported(d)
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: d[k] for k in fields if k in d and d[k] is not None}
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "BertConfig":
        """Read ``config.json`` from a checkpoint directory (or the file itself)."""
        path = os.fspath(path)
        file = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise OSError(f"no config.json found at {path!r}")
        with open(file, encoding="utf-8") as f:
            try:
                d = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file} is not valid JSON: {e}") from None
        return cls.from_dict(d)

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
