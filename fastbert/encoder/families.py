"""The BERT family as data: one :class:`Family` record per ``model_type``.

BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA, ALBERT, MPNet, DeBERTa-v2/v3 and XLNet run the same encoder math.
Each differs only in

* ``config``: a function from its Hugging Face ``config.json`` dict to :class:`~fastbert.encoder.config.BertConfig`
  fields (names, defaults, position ids, embedding projection, layer sharing, how position_ids are read, a
  relative-position attention bias, DeBERTa's disentangled attention, XLNet's relative attention with segments);
* ``names``: where it keeps each of fastbert's modules (:class:`Names`), which serves both checkpoint loading
  (:mod:`fastbert.encoder.weights`) and the in-place swap (:mod:`fastbert.encoder.swap`);
* ``hf_model`` / ``hf_output``: the ``transformers`` base-model class and the output class its forward returns
  (``tuple_keeps_pooler``: how its ``return_dict=False`` tuple reads);
* ``dropout``: its dropout rates in train mode (:class:`~fastbert.encoder.config.DropoutRates` fields), read from the
  HF config as transformers builds its ``nn.Dropout`` modules (DistilBERT has none after attention's output
  projection, ALBERT none after the FFN).

A new family is a new entry here (plus, if its attention differs, one attention variant behind the op seam); the
forward pass never branches on the family. Anything in a config that would change the math in a way fastbert does not
implement is refused by :func:`check_supported` with a ``ValueError`` naming it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple


class Disentangled(NamedTuple):
    """DeBERTa's disentangled attention, as its config sets it (``fastbert.encoder.position_bias`` has the math).

    Every layer adds ``(c2p + p2c) / sqrt(D * (1 + len(pos_att_type)))`` to ``q k / sqrt(D * (1 + ...))``, where
    c2p (content to position) is the query against the layer's key projection of the relative embedding of the
    query-key distance's bucket, and p2c (position to content) the key against the layer's query projection of it.
    """

    span: int  # half the relative embedding rows: position_buckets if > 0, else max_relative_positions
    buckets: int  # position_buckets: distances beyond buckets // 2 share log-spaced rows; <= 0: none
    max_position: int  # max_relative_positions (max_position_embeddings when < 1): the log buckets' range
    c2p: bool
    p2c: bool
    norm: bool  # norm_rel_ebd has "layer_norm": the relative embeddings go through their own LayerNorm

    @property
    def scale(self) -> float:
        """The scale of the content and position scores: 1 / sqrt(D * (1 + number of position scores)) is this
        times 1 / sqrt(D)."""
        return (1 + self.c2p + self.p2c) ** -0.5


class XLNetAttention(NamedTuple):
    """XLNet's relative attention (content stream only, ``attn_type="bi"``), as its config sets it
    (:mod:`fastbert.encoder.position_bias` has the math): every layer scores
    ``((q + r_w_bias).k + (q + r_r_bias).(R W_r)[i - j] + (q + r_s_bias).seg_embed[s_ij]) / sqrt(D)``, where ``R`` is
    the sinusoid of the query-minus-key distance (clamped at ``clamp_len`` when it is > 0) and ``s_ij`` says whether
    the two tokens' segments (``token_type_ids``) differ."""

    clamp_len: int  # <= 0: no clamp


class Names(NamedTuple):
    """Where a family keeps each fastbert module, as module paths relative to its base model."""

    prefix: str  # the base model's attribute in task heads, and the key prefix in their checkpoints
    modules: Mapping[str, str]  # fastbert module -> HF module: embeddings, their projection, the pooler
    layer: Callable[[int, Any], str]  # (u, BertConfig) -> the HF module holding fastbert's layer weights number u
    layer_modules: Mapping[str, str]  # fastbert module in a layer -> HF module in that layer
    # fastbert layer modules the family keeps as bare parameters (XLNet's [d_model, heads, d_head] projections and
    # biases), with how each becomes fastbert's weight: see :func:`parameter_as_weight`
    parameters: Mapping[str, str] = {}


def parameter_as_weight(parameter, kind: str):
    """A family's bare parameter -> the weight of fastbert's module: ``"in"``: a ``[H, heads, D]`` input projection
    (``einsum("ibh,hnd->ibnd")``) -> nn.Linear's ``[heads * D, H]``; ``"out"``: a ``[H, heads, D]`` output projection
    (``einsum("ibnd,hnd->ibh")``) -> ``[H, heads * D]``; ``"as_is"``: unchanged. Differentiable (a view)."""
    if kind == "in":
        return parameter.flatten(1).t()
    if kind == "out":
        return parameter.flatten(1)
    if kind == "as_is":
        return parameter
    raise ValueError(f"unknown parameter kind {kind!r}")


class Family(NamedTuple):
    config: Callable[[Mapping[str, Any]], dict]  # HF config dict -> BertConfig fields
    names: Names
    hf_model: str  # the transformers base-model class
    hf_output: str  # the output class its forward returns
    dropout: Callable[[Mapping[str, Any]], dict]  # HF config dict -> DropoutRates fields (train mode)
    # return_dict=False: the tuple keeps a None pooler_output in second place (MPNet's forward builds it by hand;
    # its heads read hidden states at index 2), instead of dropping the Nones as ModelOutput.to_tuple() does
    tuple_keeps_pooler: bool = False
    output_module: str = "transformers.modeling_outputs"  # where ``hf_output`` is defined


# ----------------------------------------------------------------------------------------------------------------
# Config translations. Defaults are those of transformers' config classes.
# ----------------------------------------------------------------------------------------------------------------

_BERT_DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2,
                      layer_norm_eps=1e-12, pad_token_id=0)


def _read(d: Mapping[str, Any], defaults: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict:
    """``defaults`` (fastbert field -> value) overridden by ``d``; ``names`` maps fastbert fields to the family's
    keys. A null value takes the default, except ``pad_token_id``."""
    names = names or {}
    out = dict(defaults)
    for field in defaults:
        key = names.get(field, field)
        if key in d and (d[key] is not None or field == "pad_token_id"):
            out[field] = d[key]
    return out


def bert_config(d: Mapping[str, Any]) -> dict:
    return dict(_read(d, _BERT_DEFAULTS), packed_position_ids=True)


def roberta_config(d: Mapping[str, Any]) -> dict:
    """RoBERTa / XLM-RoBERTa: BERT's fields; position ids count non-pad tokens from ``pad_token_id + 1``."""
    out = _read(d, dict(_BERT_DEFAULTS, vocab_size=50265 if d.get("model_type") == "roberta" else 30522,
                        pad_token_id=1))
    pad = out["pad_token_id"]
    offset = pad + 1 if isinstance(pad, int) and not isinstance(pad, bool) else 0  # BertConfig names a bad one
    return dict(out, position_offset=offset, padding_aware_positions=True, packed_position_ids=True)


def distilbert_config(d: Mapping[str, Any]) -> dict:
    """DistilBERT: its own key names, no token types, LayerNorm eps fixed at 1e-12."""
    names = dict(hidden_size="dim", num_attention_heads="n_heads", num_hidden_layers="n_layers",
                 intermediate_size="hidden_dim", hidden_act="activation")
    out = _read(d, dict(vocab_size=30522, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=3072, hidden_act="gelu", max_position_embeddings=512, pad_token_id=0),
                names)
    return dict(out, type_vocab_size=0, layer_norm_eps=1e-12)


def electra_config(d: Mapping[str, Any]) -> dict:
    """ELECTRA: embeddings of ``embedding_size``, projected to ``hidden_size`` when the two differ."""
    out = _read(d, dict(_BERT_DEFAULTS, hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                        embedding_size=128))
    return dict(out, embedding_projection=out["embedding_size"] != out["hidden_size"], packed_position_ids=True)


def albert_config(d: Mapping[str, Any]) -> dict:
    """ALBERT: factorized embeddings always projected, layers sharing ``num_hidden_groups`` groups of
    ``inner_group_num`` layers."""
    out = _read(d, dict(_BERT_DEFAULTS, vocab_size=30000, hidden_size=4096, num_attention_heads=64,
                        intermediate_size=16384, hidden_act="gelu_new", embedding_size=128, num_hidden_groups=1,
                        inner_group_num=1))
    return dict(out, embedding_projection=True)


def mpnet_config(d: Mapping[str, Any]) -> dict:
    """MPNet: BERT's fields without token types; positions counted as RoBERTa's from the padding index + 1, and a
    relative-position bias in every layer's attention (:mod:`fastbert.encoder.position_bias`) read from one shared
    ``[relative_attention_num_buckets, heads]`` table.

    transformers' MPNet hard-codes the padding index 1 (word and position tables, position ids) whatever the config's
    ``pad_token_id`` says, so fastbert does too."""
    out = _read(d, dict(_BERT_DEFAULTS, vocab_size=30527, relative_attention_num_buckets=32))
    return dict(out, type_vocab_size=0, pad_token_id=1, position_offset=2, padding_aware_positions=True,
                relative_attention_buckets=out.pop("relative_attention_num_buckets"))


XLNET_MAX_LENGTH = 2 ** 31 - 1  # XLNet has no position table and no length limit


def xlnet_config(d: Mapping[str, Any]) -> dict:
    """XLNet: its own key names; word embeddings only (no positions, token types or embedding LayerNorm), no bias
    in the attention projections, and the relative attention of :class:`XLNetAttention` in every layer, which reads
    ``token_type_ids`` as segment ids (any integers, compared for equality). Its word table has no padding index
    (``nn.Embedding`` without ``padding_idx``), so ``pad_token_id`` is null here. What fastbert does not implement is
    refused by :func:`check_supported` first."""
    names = dict(hidden_size="d_model", num_attention_heads="n_head", num_hidden_layers="n_layer",
                 intermediate_size="d_inner", hidden_act="ff_activation")
    out = _read(d, dict(vocab_size=32000, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                        intermediate_size=4096, hidden_act="gelu", layer_norm_eps=1e-12), names)
    clamp = d.get("clamp_len", -1)
    return dict(out, type_vocab_size=0, pad_token_id=None, max_position_embeddings=XLNET_MAX_LENGTH,
                absolute_positions=False, embedding_norm=False, attention_bias=False, segment_ids=True,
                summary_column=0 if d.get("summary_type", "last") == "first" else -1, binary_mask=True,
                xlnet=XLNetAttention(clamp_len=-1 if clamp is None else clamp))


def _check_xlnet(d: Mapping[str, Any]) -> list[str]:
    """What fastbert does not implement of an ``xlnet`` config, each named."""
    problems = []
    if d.get("attn_type", "bi") != "bi":
        problems.append(f"attn_type={d['attn_type']!r} (fastbert implements XLNet's bidirectional 'bi' attention "
                        "only)")
    if d.get("bi_data", False):
        problems.append("bi_data=True (the forward and backward position streams of pretraining are not implemented)")
    clamp = d.get("clamp_len", -1)
    if clamp is not None and (not isinstance(clamp, int) or isinstance(clamp, bool)):
        problems.append(f"clamp_len={clamp!r} (an integer)")
    if d.get("summary_type", "last") not in ("last", "first"):
        problems.append(f"summary_type={d['summary_type']!r} (fastbert keeps padding out of the encoder's work; "
                        "the heads' 'last' and 'first' summaries are supported, not those that read every position)")
    model, heads = d.get("d_model", 1024), d.get("n_head", 16)
    if d.get("d_head") not in (None, model // heads if isinstance(heads, int) and heads else None):
        problems.append(f"d_head={d['d_head']!r} (fastbert's heads are d_model / n_head wide)")
    return problems


def xlnet_dropout(d: Mapping[str, Any]) -> dict:
    """XLNet: one ``dropout`` rate, applied where fastbert applies its four (embeddings, attention probabilities,
    attention output, FFN output) and in three more places fastbert does not implement (after the FFN's activation,
    on the relative positional encoding, on the last layer's output): train mode with a nonzero rate is refused
    at the forward (``BertConfig.train_dropout_missing``)."""
    rate = _rate(d, "dropout", 0.1)
    return dict(embeddings=rate, attention=rate, attention_output=rate, ffn_output=rate)


def _rate(d: Mapping[str, Any], key: str, default: float) -> float:
    value = d.get(key)
    return default if value is None else value


def bert_dropout(d: Mapping[str, Any]) -> dict:
    """BERT, RoBERTa, XLM-R, ELECTRA: hidden dropout after the embeddings, attention's output projection and the FFN;
    attention-probability dropout."""
    hidden = _rate(d, "hidden_dropout_prob", 0.1)
    return dict(embeddings=hidden, attention=_rate(d, "attention_probs_dropout_prob", 0.1),
                attention_output=hidden, ffn_output=hidden)


def albert_dropout(d: Mapping[str, Any]) -> dict:
    """ALBERT: as BERT but no dropout after the FFN (``AlbertLayer`` builds one and never applies it); its defaults
    are 0."""
    hidden = _rate(d, "hidden_dropout_prob", 0.0)
    return dict(embeddings=hidden, attention=_rate(d, "attention_probs_dropout_prob", 0.0),
                attention_output=hidden, ffn_output=0.0)


def distilbert_dropout(d: Mapping[str, Any]) -> dict:
    """DistilBERT: ``dropout`` after the embeddings and the FFN, ``attention_dropout`` on the probabilities, none
    after the attention output projection."""
    hidden = _rate(d, "dropout", 0.1)
    return dict(embeddings=hidden, attention=_rate(d, "attention_dropout", 0.1), attention_output=0.0,
                ffn_output=hidden)


def deberta_v2_config(d: Mapping[str, Any]) -> dict:
    """DeBERTa v2/v3: BERT's fields (no token types by default, LayerNorm eps 1e-7), absolute positions only when
    ``position_biased_input``, and the disentangled attention of :class:`Disentangled` in every layer. The
    settings fastbert does not implement are refused by :func:`check_supported` first."""
    out = _read(d, dict(_BERT_DEFAULTS, vocab_size=128100, hidden_size=1536, num_hidden_layers=24,
                        num_attention_heads=24, intermediate_size=6144, type_vocab_size=0, layer_norm_eps=1e-7))
    buckets = d.get("position_buckets", -1)
    max_position = d.get("max_relative_positions", -1)
    if max_position < 1:
        max_position = out["max_position_embeddings"]
    parts = _pos_att_type(d)
    spec = Disentangled(span=buckets if buckets > 0 else max_position, buckets=buckets, max_position=max_position,
                        c2p="c2p" in parts, p2c="p2c" in parts, norm="layer_norm" in _norm_rel_ebd(d))
    return dict(out, absolute_positions=bool(d.get("position_biased_input", True)), disentangled=spec,
                mask_embeddings=True, ignore_token_types=True)


def _pos_att_type(d: Mapping[str, Any]) -> list[str]:
    """DeBERTa's ``pos_att_type``: a list, or a string such as ``"p2c|c2p"`` as the config class splits it."""
    parts = d.get("pos_att_type") or []
    if isinstance(parts, str):
        parts = [x.strip() for x in parts.lower().split("|")]
    return list(parts)


def _norm_rel_ebd(d: Mapping[str, Any]) -> list[str]:
    return [x.strip() for x in str(d.get("norm_rel_ebd", "none")).lower().split("|")]


def _check_deberta(d: Mapping[str, Any]) -> list[str]:
    """What fastbert does not implement of a ``deberta-v2`` config, each named."""
    problems = []
    if not d.get("relative_attention", False):
        problems.append("relative_attention=False (every released DeBERTa-v2/v3 checkpoint has it on; fastbert "
                        "implements the disentangled attention only)")
    for key in ("position_buckets", "max_relative_positions"):
        if not isinstance(d.get(key, -1), int) or isinstance(d.get(key, -1), bool):
            problems.append(f"{key}={d.get(key)!r} (an integer)")
    unknown = sorted(set(_pos_att_type(d)) - {"c2p", "p2c"})
    if unknown:
        problems.append(f"pos_att_type {unknown} (fastbert implements 'c2p' and 'p2c')")
    if not d.get("share_att_key", False):
        problems.append("share_att_key=False (separate pos_key_proj/pos_query_proj layers; every released "
                        "DeBERTa-v2/v3 checkpoint shares the attention's own query/key projections)")
    unknown = sorted(set(_norm_rel_ebd(d)) - {"none", "layer_norm"})
    if unknown:
        problems.append(f"norm_rel_ebd {unknown} (fastbert implements 'layer_norm' and 'none')")
    if (d.get("conv_kernel_size") or 0) > 0:
        problems.append(f"conv_kernel_size={d['conv_kernel_size']!r} (the convolution layer after the first layer "
                        "of deberta-v2-xlarge/xxlarge is not implemented)")
    hidden, heads = d.get("hidden_size", 1536), d.get("num_attention_heads", 24)
    if d.get("attention_head_size") not in (None, hidden // heads if isinstance(heads, int) and heads else None):
        problems.append(f"attention_head_size={d['attention_head_size']!r} (fastbert's heads are hidden_size / "
                        "num_attention_heads wide)")
    if d.get("embedding_size") not in (None, hidden):
        problems.append(f"embedding_size={d['embedding_size']!r} != hidden_size (DeBERTa projects before its "
                        "embedding LayerNorm, which fastbert does not implement)")
    return problems


# ----------------------------------------------------------------------------------------------------------------
# Weight names
# ----------------------------------------------------------------------------------------------------------------

_BERT_MODULES = {
    "embeddings.word": "embeddings.word_embeddings",
    "embeddings.position": "embeddings.position_embeddings",
    "embeddings.token_type": "embeddings.token_type_embeddings",
    "embeddings.norm": "embeddings.LayerNorm",
    "pooler": "pooler.dense",
}
_BERT_LAYER = {
    "qkv.query": "attention.self.query",
    "qkv.key": "attention.self.key",
    "qkv.value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_up": "intermediate.dense",
    "ffn_down": "output.dense",
    "ffn_norm": "output.LayerNorm",
}


def _encoder_layer(u: int, config) -> str:
    return f"encoder.layer.{u}"


def _albert_layer(u: int, config) -> str:
    return f"encoder.albert_layer_groups.{u // config.inner_group_num}.albert_layers.{u % config.inner_group_num}"


_ROBERTA_NAMES = Names("roberta", _BERT_MODULES, _encoder_layer, _BERT_LAYER)
_ELECTRA_NAMES = Names(
    "electra",
    {**{k: v for k, v in _BERT_MODULES.items() if k != "pooler"}, "embeddings.project": "embeddings_project"},
    _encoder_layer, _BERT_LAYER,
)
_ALBERT_NAMES = Names(
    "albert",
    {**_BERT_MODULES, "embeddings.project": "encoder.embedding_hidden_mapping_in", "pooler": "pooler"},
    _albert_layer,
    {"qkv.query": "attention.query", "qkv.key": "attention.key", "qkv.value": "attention.value",
     "attn_out": "attention.dense", "attn_norm": "attention.LayerNorm", "ffn_up": "ffn",
     "ffn_down": "ffn_output", "ffn_norm": "full_layer_layer_norm"},
)
_DISTILBERT_NAMES = Names(
    "distilbert",
    {"embeddings.word": "embeddings.word_embeddings", "embeddings.position": "embeddings.position_embeddings",
     "embeddings.norm": "embeddings.LayerNorm"},
    lambda u, config: f"transformer.layer.{u}",
    {"qkv.query": "attention.q_lin", "qkv.key": "attention.k_lin", "qkv.value": "attention.v_lin",
     "attn_out": "attention.out_lin", "attn_norm": "sa_layer_norm", "ffn_up": "ffn.lin1",
     "ffn_down": "ffn.lin2", "ffn_norm": "output_layer_norm"},
)

_MPNET_NAMES = Names(
    "mpnet",
    {"embeddings.word": "embeddings.word_embeddings", "embeddings.position": "embeddings.position_embeddings",
     "embeddings.norm": "embeddings.LayerNorm", "pooler": "pooler.dense",
     "relative_bias": "encoder.relative_attention_bias"},
    _encoder_layer,
    {"qkv.query": "attention.attn.q", "qkv.key": "attention.attn.k", "qkv.value": "attention.attn.v",
     "attn_out": "attention.attn.o", "attn_norm": "attention.LayerNorm", "ffn_up": "intermediate.dense",
     "ffn_down": "output.dense", "ffn_norm": "output.LayerNorm"},
)

_DEBERTA_NAMES = Names(
    "deberta",
    {"embeddings.word": "embeddings.word_embeddings", "embeddings.position": "embeddings.position_embeddings",
     "embeddings.token_type": "embeddings.token_type_embeddings", "embeddings.norm": "embeddings.LayerNorm",
     "relative.embeddings": "encoder.rel_embeddings", "relative.norm": "encoder.LayerNorm"},
    _encoder_layer,
    {"qkv.query": "attention.self.query_proj", "qkv.key": "attention.self.key_proj",
     "qkv.value": "attention.self.value_proj", "attn_out": "attention.output.dense",
     "attn_norm": "attention.output.LayerNorm", "ffn_up": "intermediate.dense", "ffn_down": "output.dense",
     "ffn_norm": "output.LayerNorm"},
)

_XLNET_NAMES = Names(
    "transformer",
    {"embeddings.word": "word_embedding"},
    lambda u, config: f"layer.{u}",
    {"qkv.query": "rel_attn.q", "qkv.key": "rel_attn.k", "qkv.value": "rel_attn.v", "attn_out": "rel_attn.o",
     "attn_norm": "rel_attn.layer_norm", "ffn_up": "ff.layer_1", "ffn_down": "ff.layer_2", "ffn_norm": "ff.layer_norm",
     "relative.position": "rel_attn.r", "relative.content_bias": "rel_attn.r_w_bias",
     "relative.position_bias": "rel_attn.r_r_bias", "relative.segment_bias": "rel_attn.r_s_bias",
     "relative.segments": "rel_attn.seg_embed"},
    {"qkv.query": "in", "qkv.key": "in", "qkv.value": "in", "attn_out": "out", "relative.position": "in",
     "relative.content_bias": "as_is", "relative.position_bias": "as_is", "relative.segment_bias": "as_is",
     "relative.segments": "as_is"},
)

_WITH_POOLING = "BaseModelOutputWithPoolingAndCrossAttentions"
FAMILIES: dict[str, Family] = {
    "bert": Family(bert_config, Names("bert", _BERT_MODULES, _encoder_layer, _BERT_LAYER), "BertModel",
                   _WITH_POOLING, bert_dropout),
    "roberta": Family(roberta_config, _ROBERTA_NAMES, "RobertaModel", _WITH_POOLING, bert_dropout),
    "xlm-roberta": Family(roberta_config, _ROBERTA_NAMES, "XLMRobertaModel", _WITH_POOLING, bert_dropout),
    "distilbert": Family(distilbert_config, _DISTILBERT_NAMES, "DistilBertModel", "BaseModelOutput",
                         distilbert_dropout),
    "electra": Family(electra_config, _ELECTRA_NAMES, "ElectraModel", "BaseModelOutputWithPastAndCrossAttentions",
                      bert_dropout),
    "albert": Family(albert_config, _ALBERT_NAMES, "AlbertModel", "BaseModelOutputWithPooling", albert_dropout),
    "mpnet": Family(mpnet_config, _MPNET_NAMES, "MPNetModel", "BaseModelOutputWithPooling", bert_dropout,
                    tuple_keeps_pooler=True),
    "deberta-v2": Family(deberta_v2_config, _DEBERTA_NAMES, "DebertaV2Model", "BaseModelOutput", bert_dropout),
    "xlnet": Family(xlnet_config, _XLNET_NAMES, "XLNetModel", "XLNetModelOutput", xlnet_dropout,
                    output_module="transformers.models.xlnet.modeling_xlnet"),
}
NAMES: dict[str, Names] = {model_type: family.names for model_type, family in FAMILIES.items()}


def module_names(config) -> dict[str, str]:
    """fastbert module -> HF module (relative to the base model) for every module ``config`` (a ``BertConfig``)
    has."""
    names = NAMES[config.model_type]
    out = dict(names.modules)
    if not config.embedding_projection:
        out.pop("embeddings.project", None)
    if not config.absolute_positions:
        out.pop("embeddings.position", None)
    if not config.type_vocab_size:
        out.pop("embeddings.token_type", None)
    if config.disentangled is not None and not config.disentangled.norm:
        out.pop("relative.norm", None)
    if not config.embedding_norm:
        out.pop("embeddings.norm", None)
    for u in range(config.num_layer_weights):
        out.update({f"layers.{u}.{fb}": f"{names.layer(u, config)}.{hf}" for fb, hf in names.layer_modules.items()})
    return out


def check_supported(d: Mapping[str, Any]) -> None:
    """Refuse config settings that change the math in ways fastbert does not implement, naming each."""
    problems = []
    pet = d.get("position_embedding_type", "absolute")
    if pet not in (None, "absolute"):
        problems.append(f"position_embedding_type={pet!r} (only 'absolute' is supported)")
    if d.get("is_decoder"):
        problems.append("is_decoder=True (fastbert is a bidirectional encoder)")
    if d.get("add_cross_attention"):
        problems.append("add_cross_attention=True (cross-attention is not supported)")
    buckets = d.get("relative_attention_num_buckets")
    if d.get("model_type") == "mpnet" and buckets is not None and not (isinstance(buckets, int) and buckets >= 32):
        problems.append(f"relative_attention_num_buckets={buckets!r} (transformers' MPNet always computes 32 "
                        "buckets, so its table needs at least 32 rows)")
    if d.get("model_type") == "deberta-v2":
        problems += _check_deberta(d)
    if d.get("model_type") == "xlnet":
        problems += _check_xlnet(d)
    if d.get("model_type") == "distilbert" and d.get("sinusoidal_pos_embds") not in (None, False, True):
        problems.append(f"sinusoidal_pos_embds={d['sinusoidal_pos_embds']!r}")
    if problems:
        raise ValueError(f"unsupported {d.get('model_type', 'bert')} configuration: " + "; ".join(problems))
