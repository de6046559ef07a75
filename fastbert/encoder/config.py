"""One encoder configuration for the BERT family, read from a Hugging Face ``config.json``.

BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, ALBERT, MPNet, DeBERTa-v2/v3 and XLNet run the same encoder math;
they differ in names, position ids, embedding width (plus a projection), weight sharing, (MPNet) a relative-position
attention bias, (DeBERTa) disentangled attention and (XLNet) relative attention with segments. Each family enters as data
(:mod:`fastbert.encoder.families`): a function mapping its HF config dict onto :class:`BertConfig`, and its weight
names.

Only what the encoder needs is kept. Anything in the file that would change the model's math in a way fastbert does
not implement (relative position embeddings, decoder mode, cross-attention, ...) is refused with a ``ValueError``
naming it, rather than silently ignored.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from .families import FAMILIES, Disentangled, XLNetAttention, check_supported

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
    """BERT's fields, plus the few ways the rest of the family differs (defaults: BERT)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2  # 0: no token-type embedding (DistilBERT)
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    model_type: str = "bert"  # the family: picks the weight names (fastbert.loading)
    embedding_size: int | None = None  # width of the embedding tables (ALBERT, ELECTRA); None: hidden_size
    embedding_projection: bool = False  # a Linear embedding_size -> hidden_size after the embedding LayerNorm
    position_offset: int = 0  # the first position id (RoBERTa: pad_token_id + 1)
    padding_aware_positions: bool = False  # RoBERTa: positions count non-pad input ids; pad tokens get pad_token_id
    num_hidden_groups: int | None = None  # ALBERT: the layers share this many groups of weights; None: no sharing
    inner_group_num: int = 1  # ALBERT: layers in each group
    # position_ids that restart (a step other than +1) with no attention_mask split a row into packed sequences
    # that attend only within themselves, as transformers >= 5.25 reads them for these families (the input format
    # of its DataCollatorWithFlattening); False: one sequence per row, as older transformers did.
    packed_position_ids: bool = False
    # MPNet: rows of the [buckets, heads] relative-position bias table every layer's attention adds (T5-style log
    # buckets of key minus query position, fastbert.encoder.position_bias); None: no bias.
    relative_attention_buckets: int | None = None
    # DeBERTa: the embeddings of padding positions are zeroed (what a padding query's attention then averages, on
    # the padded path, as transformers does)
    mask_embeddings: bool = False
    # DeBERTa: token_type_ids given to a model without token types are ignored (its tokenizer returns them), where
    # the other families refuse them
    ignore_token_types: bool = False
    absolute_positions: bool = True  # False: no position table (DeBERTa's position_biased_input=False)
    # DeBERTa: the disentangled attention every layer runs (content-to-position and position-to-content scores from
    # relative embeddings, fastbert.encoder.position_bias); None: none.
    disentangled: Disentangled | None = None
    embedding_norm: bool = True  # False: no embedding LayerNorm (XLNet: the word embeddings go in as they are)
    attention_bias: bool = True  # False: the query/key/value and attention output projections have no bias (XLNet)
    # XLNet: token_type_ids are segment ids (any integers, compared for equality by the attention), not rows of an
    # embedding table
    segment_ids: bool = False
    # the column a sequence summary reads (0: the first token, as BERT's pooler and heads; -1: the last, as XLNet's
    # heads): a padded batch whose rows all keep that column runs padding-free, others stay padded
    summary_column: int = 0
    # XLNet: transformers masks every attention_mask value below 1 (not only 0), so optimize() passes the mask on as
    # it is and the encoder's check takes 0/1 only (other values, and 4-D masks, are a ValueError)
    binary_mask: bool = False
    # XLNet: the relative attention with segments every layer runs (fastbert.encoder.position_bias); None: none
    xlnet: XLNetAttention | None = None

    def __post_init__(self):
        if not isinstance(self.hidden_act, str):
            raise TypeError(f"hidden_act must be a string, got {type(self.hidden_act).__name__} {self.hidden_act!r}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"unsupported hidden_act {self.hidden_act!r}; fastbert implements {sorted(ACTIVATIONS)}"
            )
        if self.model_type not in FAMILIES:
            raise ValueError(f"unsupported model_type {self.model_type!r}; fastbert implements {sorted(FAMILIES)}")
        for name, least in (("vocab_size", 1), ("hidden_size", 1), ("num_hidden_layers", 1),
                            ("num_attention_heads", 1), ("intermediate_size", 1), ("max_position_embeddings", 1),
                            ("type_vocab_size", 0), ("embedding_size", 1), ("position_offset", 0),
                            ("num_hidden_groups", 1), ("inner_group_num", 1), ("relative_attention_buckets", 32)):
            value = getattr(self, name)
            if value is None and name in ("embedding_size", "num_hidden_groups", "relative_attention_buckets"):
                continue
            if not _is_int(value):
                raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
            if value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_attention_heads}"
            )
        if self.embedding_dim != self.hidden_size and not self.embedding_projection:
            raise ValueError(f"embedding_size {self.embedding_size} differs from hidden_size {self.hidden_size} "
                             "but there is no embedding projection")
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
        if self.padding_aware_positions and self.pad_token_id is None:
            raise ValueError(f"{self.model_type} computes position ids from pad_token_id, which is null")
        if self.max_length < 1:
            raise ValueError(f"max_position_embeddings {self.max_position_embeddings} leaves no positions after "
                             f"the offset {self.position_offset}")

    @property
    def triton_missing(self) -> str | None:
        """Why the Triton backend cannot run this model (the ``auto`` backend then takes PyTorch), or None."""
        if self.disentangled is not None and self.head_dim > 256:
            return (f"DeBERTa's disentangled attention kernel takes head dims up to 256, not {self.head_dim} "
                    "(run it with backend='torch')")
        if self.xlnet is not None:
            return "XLNet's relative attention has no Triton kernel yet (run it with backend='torch')"
        return None

    @property
    def train_dropout_missing(self) -> str | None:
        """Why train mode with nonzero dropout cannot run this model as transformers does, or None."""
        if self.xlnet is not None:
            return ("XLNet's train-mode dropout (also after the FFN activation, on the relative positional encoding "
                    "and on the output) is not implemented; set the model's dropout to 0, or call eval()")
        return None

    @property
    def triton_grad_missing(self) -> str | None:
        """Why the Triton backend cannot differentiate this model (autograd then runs PyTorch), or None."""
        if self.relative_attention_buckets:
            return "MPNet's relative-position bias has no Triton backward (train it with backend='torch')"
        if self.disentangled is not None:
            return "DeBERTa's disentangled attention has no Triton backward (train it with backend='torch')"
        return self.triton_missing

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def activation(self) -> str:
        """The op seam's name for ``hidden_act``: ``gelu`` (erf), ``gelu_tanh`` or ``relu``."""
        return ACTIVATIONS[self.hidden_act]

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding tables and their LayerNorm."""
        return self.embedding_size if self.embedding_size is not None else self.hidden_size

    @property
    def max_length(self) -> int:
        """The longest sequence the position table covers."""
        return self.max_position_embeddings - self.position_offset

    @property
    def num_layer_weights(self) -> int:
        """How many layers hold their own weights (ALBERT: groups x layers per group; else every layer)."""
        if self.num_hidden_groups is None:
            return self.num_hidden_layers
        return self.num_hidden_groups * self.inner_group_num

    @property
    def layer_schedule(self) -> tuple[int, ...]:
        """The weights each layer application uses, in order (ALBERT repeats its groups, as transformers does)."""
        if self.num_hidden_groups is None:
            return tuple(range(self.num_hidden_layers))
        layers, groups, inner = self.num_hidden_layers, self.num_hidden_groups, self.inner_group_num
        return tuple(int(i / (layers / groups)) * inner + j for i in range(layers) for j in range(inner))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
        """Build from a HF config dict of any supported family (its ``model_type``; default ``bert``); refuse
        settings that change the math in ways fastbert does not support.

        A key set to ``null`` takes the family's default, except ``pad_token_id`` (null: no padding embedding)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"a model config must be a JSON object, got {type(d).__name__}")
        model_type = d.get("model_type", "bert")
        if model_type not in FAMILIES:
            raise ValueError(f"unsupported model_type {model_type!r}; fastbert implements {sorted(FAMILIES)}")
        check_supported(d)
        return cls(model_type=model_type, **FAMILIES[model_type].config(d))

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
        """Build from a ``transformers`` config object of a supported family."""
        return cls.from_dict(hf_config.to_dict())


class DropoutRates(NamedTuple):
    """Dropout probabilities of the encoder in train mode (all 0: eval mode). Applied as transformers places them:
    after the embedding LayerNorm, on the attention probabilities, on the attention output projection and on the
    FFN output (each before its residual add). The masks are drawn from torch's RNG by fastbert's own ops: the same
    distribution as transformers, not the same masks for the same seed."""

    embeddings: float = 0.0
    attention: float = 0.0
    attention_output: float = 0.0
    ffn_output: float = 0.0

    @classmethod
    def from_hf(cls, hf_config) -> "DropoutRates":
        """The rates a ``transformers`` model of a supported family builds its ``nn.Dropout`` modules with."""
        d = hf_config.to_dict()
        rates = cls(**FAMILIES[d.get("model_type", "bert")].dropout(d))
        for name, p in rates._asdict().items():
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
                raise ValueError(f"{name} dropout probability must be a number in [0, 1], got {p!r}")
        return cls(*(float(p) for p in rates))

    @property
    def active(self) -> bool:
        return any(p > 0 for p in self)


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
        byte = f"byte {raw[e.start]:#04x} at offset {e.start}"
        raise ValueError(f"{file} is not UTF-8 text: {e.reason} ({byte})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file} is not valid JSON: {e}") from None

