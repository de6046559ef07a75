"""Swap fastbert into an existing ``transformers`` model of the BERT family, in place.

``optimize(model)`` finds the model's base encoder (``BertModel``, ``RobertaModel``, ``XLMRobertaModel``,
``DistilBertModel``, ``ElectraModel``, ``AlbertModel``, ``MPNetModel``, ``DebertaV2Model`` or ``XLNetModel``: the model
itself, or its ``bert``/``roberta``/``distilbert``/``electra``/``albert``/``mpnet``/``deberta``/``transformer``
attribute inside any task head) and
gives that one instance a forward that runs fastbert's encoder (:func:`fastbert.encoder.model.bert_forward`) on the
HF module's own parameters, found through the family's names (:data:`fastbert.encoder.families.NAMES`). Nothing is copied or renamed (ALBERT's shared layer is used for
every layer application): the task heads, HF's output classes, ``state_dict`` and ``save_pretrained`` see the model
exactly as before. ``restore(model)`` removes the override.

What runs where:

* eval and train mode, no ``output_attentions``: fastbert. ``output_hidden_states`` is supported (the first layer's
  input, then every layer's output, as HF returns them; an index or list of indices selects some, as in HF).
* ``output_attentions=True`` (fastbert's attention never materialises the probabilities): the original HF forward
  runs, so results stay exactly HF's.
* Train mode (fine-tuning): dropout at the rates transformers builds its modules with
  (:class:`~fastbert.encoder.config.DropoutRates`, read at ``optimize``; call it again after changing them). On
  the PyTorch backend: hidden dropout with ``F.dropout``, attention-probability dropout with SDPA's ``dropout_p``.
  On the Triton backend (asked for by name, ``backend='triton'``; otherwise the PyTorch backend runs): the hidden
  dropout after the attention output and FFN projections is fused into the bias + residual + LayerNorm kernels, the
  probability dropout into the attention kernels (Triton's Philox, a per-call seed drawn from torch's CPU generator,
  the mask regenerated in the backward kernels, none stored), the embeddings' with ``F.dropout``.
  RNG semantics: the masks come from torch's RNG in fastbert's own order, so ``torch.manual_seed`` makes runs
  reproducible; the same distribution as transformers, not the same masks for the same seed. HF's gradient checkpointing (``model.gradient_checkpointing_enable()``) is honoured: each
  layer application runs under the checkpoint function transformers installed (every layer, whatever
  ``every_n_layers`` was given; results are the same, only memory and time differ).
* Gradients: with grad mode on and parameters (or ``inputs_embeds``) requiring grad, the op seam takes its
  differentiable PyTorch path (or, when ``backend='triton'`` is asked for by name, the Triton
  kernels with their backward kernels; see :mod:`fastbert.encoder.ops`), so backpropagation reaches the HF
  parameters. The weights are read from the HF
  modules at every forward (Q/K/V stacked with a differentiable ``torch.cat``), so an optimizer step is seen by
  the next forward. When that alone keeps a forward off the Triton path, a warning (once per model) names the fix:
  ``torch.inference_mode()`` or ``torch.no_grad()``.
* XLNet: its new memories (``mems``, returned in eval by default) are each layer's input, cut by ``reuse_len`` and
  ``mem_len`` as transformers' ``cache_mem`` does; ``mems``, ``perm_mask``, ``target_mapping`` and ``input_mask`` as
  arguments are a ``ValueError`` (two-stream attention and memories as input are not implemented).
* Padding: a padded batch runs packed (real tokens only) and comes back padded for the head, with zeros at padding
  positions. Question answering heads are the exception: transformers' QA loss takes its softmax over every
  position, padding included, so the padding rows enter the loss; for them ``padding_free=None`` keeps a padded
  batch padded and the loss is HF's (``padding_free=True`` packs anyway, and padding positions then score the
  head's bias alone).
* Per-token heads on real tokens only: under a token classification, masked LM or question answering head (the
  classes in :data:`TOKEN_HEADS`), the head's per-token modules (its classifier, its vocabulary projection) run on the
  real tokens of a batch that ran packed, plus one padding row; that row's result fills every padding position, which
  is exactly what the head gives the padded output's zero rows, so logits, loss and gradients are unchanged while the
  vocabulary projection skips the padding. Sequence classification and multiple choice heads read one row per
  sequence (the pooler or the first token), so there is nothing to skip.

``attention_mask`` means what it means to transformers, converted to the key mask fastbert runs:

* 2-D ``[batch, seq_len]``, any dtype: nonzero = attend, zero = padding (transformers casts it to bool, so 0.5
  or 2 also mean attend).
* 4-D ``[batch | 1, 1 | heads, 1 | seq_len, seq_len]``, as transformers passes a prepared mask straight to attention:
  boolean, True = attend (as transformers' default SDPA attention reads it); or float and additive, where 0 means
  attend and a value <= -1e4 (``torch.finfo(dtype).min``, the legacy -10000.0, ``-inf``) means masked. The mask
  must be the same for every head and query position (a key mask); anything else -- a per-query mask, other
  additive values (a bias fastbert cannot reproduce), an integer 4-D mask, a boolean 4-D mask on an
  ``attn_implementation="eager"`` model (whose attention adds it to the scores as 0/1) -- is a ``ValueError``.
  With ``validate_inputs=False`` these checks are skipped and the mask is read at head 0, query 0.
"""
from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
from typing import Any, NamedTuple

import torch
from torch import nn

from .config import BertConfig, DropoutRates
from .families import FAMILIES, NAMES, module_names, parameter_as_weight
from .model import (EmbeddingWeights, LayerWeights, RelativeWeights, bert_forward, check_backend, choose_backend,
                    needs_grad)

_ATTR = "_fastbert"  # set on an optimized base model instance: its _Settings
_MASKED = -1e4  # an additive 4-D mask value at or below this masks the key (exp underflows to exactly 0)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds")

class _Settings(NamedTuple):
    config: BertConfig
    backend: str | None
    validate_inputs: bool
    padding_free: bool | None
    modules: dict[str, tuple[str, ...]]  # fastbert module -> attribute path in the HF base model
    arg_names: tuple[str, ...]  # the original forward's parameters, for positional arguments
    output: type  # the transformers output class the original forward returns
    tuple_keeps_pooler: bool  # return_dict=False keeps a None pooler_output in place (the family's Family entry)
    dropout: DropoutRates  # train mode's rates
    pads_enter_outputs: bool  # the head's loss reads padding positions (QA): padded batches stay padded by default
    parameters: dict[str, str]  # fastbert layer module -> how the family's bare parameter becomes its weight (XLNet)


def _find_base(model: nn.Module) -> tuple[nn.Module, str]:
    """The model's base encoder and its family's ``model_type``."""
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - transformers is what optimize() is for
        raise TypeError("fastbert.optimize needs the transformers package") from e
    for model_type, family in FAMILIES.items():
        cls = getattr(transformers, family.hf_model)
        for candidate in (model, getattr(model, NAMES[model_type].prefix, None)):
            if isinstance(candidate, cls):
                return candidate, model_type
    supported = ", ".join(family.hf_model for family in FAMILIES.values())
    raise TypeError(f"fastbert.optimize expects a transformers {supported} or one of their task heads, "
                    f"got {type(model).__name__}")


def _module(base: nn.Module, path: tuple[str, ...]) -> nn.Module | None:
    """``base.a.b.c`` for ``path = ("a", "b", "c")``; None where a module on the way is None (no pooler)."""
    for name in path:
        base = getattr(base, name)
        if base is None:
            return None
    return base


def _weights(base: nn.Module, s: _Settings):
    """The HF base model's live parameters as fastbert's weight tuples: (embeddings, layers in schedule order,
    pooler). Q/K/V are stacked per call (a few MB per layer, cheap next to the GEMMs), once per set of layer
    weights, so no second copy is held and gradients still reach the three HF parameters."""
    m = {name: _module(base, path) for name, path in s.modules.items()}
    for name, module in m.items():
        if name.startswith("layers.") and name.split(".", 2)[-1] in s.parameters:  # a bare parameter (XLNet)
            m[name] = _Linear(parameter_as_weight(module, s.parameters[name.split(".", 2)[-1]]), None)
        elif module is not None and type(module).forward not in _PLAIN_FORWARDS:
            raise TypeError(
                f"{type(base).__name__}.{'.'.join(s.modules[name])} is a {type(module).__name__} with its own forward "
                "(an adapter such as LoRA, or a quantized layer?); fastbert computes nn.Linear / nn.LayerNorm / "
                "nn.Embedding math from its weight and bias alone, which would silently drop what that forward adds. "
                "Call fastbert.restore(model) to run it")
    project, token_type, pooler = m.get("embeddings.project"), m.get("embeddings.token_type"), m.get("pooler")
    position, norm = m.get("embeddings.position"), m.get("embeddings.norm")
    embeddings = EmbeddingWeights(
        m["embeddings.word"].weight, position.weight if position is not None else None,
        token_type.weight if token_type is not None else None, norm.weight if norm is not None else None,
        norm.bias if norm is not None else None,
        project.weight if project is not None else None, project.bias if project is not None else None,
    )
    unique = []
    for u in range(s.config.num_layer_weights):
        q, k, v = (m[f"layers.{u}.qkv.{p}"] for p in ("query", "key", "value"))
        a, an, up, down, fn = (m[f"layers.{u}.{n}"]
                               for n in ("attn_out", "attn_norm", "ffn_up", "ffn_down", "ffn_norm"))
        relative = None
        if f"layers.{u}.relative.position" in m:  # XLNet
            relative = RelativeWeights(*(m[f"layers.{u}.relative.{n}"].weight for n in (
                "position", "content_bias", "position_bias", "segment_bias", "segments")))
        unique.append(LayerWeights(
            torch.cat([q.weight, k.weight, v.weight]), None if q.bias is None else torch.cat([q.bias, k.bias, v.bias]),
            a.weight, a.bias, an.weight, an.bias, up.weight, up.bias, down.weight, down.bias, fn.weight, fn.bias,
            relative,
        ))
    layers = [unique[u] for u in s.config.layer_schedule]  # ALBERT: the same tuple for every application
    return embeddings, layers, (pooler.weight, pooler.bias) if pooler is not None else None


class _Linear(NamedTuple):
    """A family's bare parameter seen as a module's weight (XLNet), for :func:`_weights`."""

    weight: torch.Tensor
    bias: torch.Tensor | None


# transformers' keyword arguments that reach the base model but are the loss's business (Trainer passes
# num_items_in_batch to every forward; the encoder ignores it).
_LOSS_ONLY = ("num_items_in_batch",)
_PLAIN_FORWARDS = (nn.Linear.forward, nn.LayerNorm.forward, nn.Embedding.forward)


def _select(hidden_states: tuple[torch.Tensor, ...], which: Any) -> tuple[torch.Tensor | None, ...]:
    """``output_hidden_states`` as transformers reads it: True keeps all; an index or a list of indices keeps those
    and puts None in the other places."""
    if isinstance(which, bool):
        return hidden_states
    n = len(hidden_states)
    wanted = {i % n for i in ([which] if isinstance(which, int) else which) if -n <= i < n}
    return tuple(h if i in wanted else None for i, h in enumerate(hidden_states))


# Over 80 lines because it is the one translation of a transformers forward call into fastbert's and back (arguments,
# masks, each family's per-forward extras, XLNet's memories, the output class and tuple); split, its order would be
# hidden across helpers.
def _fast_forward(base, *args, **kwargs):
    s: _Settings = getattr(base, _ATTR)
    hf_config = base.config
    output_attentions = kwargs.get("output_attentions")
    if output_attentions is None:
        output_attentions = getattr(hf_config, "output_attentions", False)
    if output_attentions:
        return type(base).forward(base, *args, **kwargs)
    if len(args) > len(s.arg_names):
        raise TypeError(f"{type(base).__name__}.forward takes {len(s.arg_names)} positional arguments, "
                        f"got {len(args)}")
    for name, value in zip(s.arg_names, args):
        if name in kwargs:
            raise TypeError(f"{type(base).__name__}.forward got multiple values for argument {name!r}")
        kwargs[name] = value
    inputs = {name: kwargs.pop(name, None) for name in _INPUTS if name in s.arg_names}
    kwargs.pop("output_attentions", None)
    output_hidden_states = kwargs.pop("output_hidden_states", None)
    return_dict = kwargs.pop("return_dict", None)
    use_mems = _use_mems(base, s, kwargs)
    for name in _LOSS_ONLY:
        kwargs.pop(name, None)
    given = sorted(k for k, v in kwargs.items() if v is not None and v is not False)
    if given:
        raise ValueError(f"fastbert-optimized {type(base).__name__} does not support the argument(s) {given}; "
                         "call fastbert.restore(model) to use them")
    if output_hidden_states is None:
        output_hidden_states = getattr(hf_config, "output_hidden_states", False)
    if return_dict is None:
        return_dict = getattr(hf_config, "return_dict", True)

    embeddings, layers, pooler = _weights(base, s)
    config = s.config
    if embeddings.word.shape[0] != config.vocab_size:  # resize_token_embeddings after optimize
        config = dataclasses.replace(config, vocab_size=embeddings.word.shape[0])
    input_ids, inputs_embeds = inputs.get("input_ids"), inputs.get("inputs_embeds")
    attention_mask = inputs.get("attention_mask")
    reference = input_ids if input_ids is not None else inputs_embeds
    if isinstance(reference, torch.Tensor) and reference.dim() >= 2 and not config.binary_mask:
        attention_mask = key_mask(attention_mask, tuple(reference.shape[:2]), config.num_attention_heads,
                                  hf_config._attn_implementation, check=s.validate_inputs)
    grad = needs_grad(base, inputs_embeds)
    relative = _module(base, s.modules["relative_bias"]) if "relative_bias" in s.modules else None  # MPNet
    dropout = s.dropout if base.training else None
    padding_free = s.padding_free
    if padding_free is None and s.pads_enter_outputs and attention_mask is not None:
        padding_free = False
    disentangled = None
    if "relative.embeddings" in s.modules:  # DeBERTa: relative embeddings (and their LayerNorm)
        norm = _module(base, s.modules["relative.norm"]) if "relative.norm" in s.modules else None
        disentangled = (_module(base, s.modules["relative.embeddings"]).weight,
                        *((norm.weight, norm.bias) if norm is not None else (None, None)))
    out = bert_forward(
        config, embeddings, layers, pooler, input_ids, attention_mask, inputs.get("token_type_ids"),
        inputs.get("position_ids"),
        inputs_embeds=inputs_embeds,
        backend=choose_backend(base, s.backend, embeddings.word.device, grad, bool(dropout and dropout.active),
                               config.triton_missing, config.triton_grad_missing),
        validate=s.validate_inputs,
        output_hidden_states=bool(output_hidden_states or use_mems),
        needs_grad=grad,
        padding_free=padding_free,
        relative_bias=relative.weight if relative is not None else None,
        dropout=dropout,
        checkpoint=_checkpoint_function(base) if grad and base.training else None,
        relative_embeddings=disentangled,
    )
    _share_packed_rows(out)
    fields = dict(last_hidden_state=out.last_hidden_state)
    if "pooler_output" in s.output.__dataclass_fields__:
        fields["pooler_output"] = out.pooler_output
    if out.hidden_states is not None and output_hidden_states:
        fields["hidden_states"] = _select(out.hidden_states, output_hidden_states)
    if use_mems:
        fields["mems"] = _memories(out.hidden_states[:-1], hf_config)
    result = s.output(**fields)
    if return_dict:
        return result
    values = result.to_tuple()
    if s.tuple_keeps_pooler and out.pooler_output is None:
        values = values[:1] + (None,) + values[1:]
    return values


def _use_mems(base: nn.Module, s: _Settings, kwargs: dict) -> bool:
    """Whether the forward returns new memories (XLNet's output has ``mems``): its ``use_mems`` argument (taken out
    of ``kwargs``), else the config's ``use_mems_eval`` / ``use_mems_train``, as transformers reads them."""
    if "mems" not in s.output.__dataclass_fields__:
        return False
    use_mems = kwargs.pop("use_mems", None)
    if use_mems is None:
        use_mems = base.config.use_mems_train if base.training else base.config.use_mems_eval
    return bool(use_mems)


def _memories(inputs: tuple[torch.Tensor, ...], hf_config) -> tuple[torch.Tensor, ...]:
    """XLNet's new memories, as its ``cache_mem``: each layer's input ``[B, S, H]`` -> ``[S', B, H]`` detached,
    the first ``reuse_len`` positions when set, then the last ``mem_len`` (all when 0 or None). At padding positions
    a padding-free forward gives zeros where transformers gives what it computed for padding."""
    out = []
    for h in inputs:
        h = h.transpose(0, 1)  # [S, B, H]
        if hf_config.reuse_len:
            h = h[:hf_config.reuse_len]
        if hf_config.mem_len:
            h = h[-hf_config.mem_len:]
        out.append(h.detach())
    return tuple(out)


def _checkpoint_function(base: nn.Module):
    """The checkpoint function transformers installed with ``gradient_checkpointing_enable()`` (it reads each of its
    layers' ``gradient_checkpointing`` flag in train mode with grad on), or None when it is off."""
    for module in base.modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            function = getattr(module, "_gradient_checkpointing_func", None)
            if function is not None:
                return function
    return None


# ----------------------------------------------------------------------------------------------------------------
# Per-token heads on real tokens only
# ----------------------------------------------------------------------------------------------------------------

def _token_heads() -> dict[str, tuple[str, ...]]:
    """Task model class -> the modules (attributes of the task model) its forward applies to every token's row, in
    order, that run on real tokens only. Rows between two of them must stay alike at padding (per-row math, or
    dropout on zero rows)."""
    heads = {}
    for family in FAMILIES.values():
        prefix = family.hf_model[:-len("Model")]  # BertModel -> Bert
        heads[prefix + "ForTokenClassification"] = ("classifier",)
        heads[prefix + "ForQuestionAnswering"] = ("qa_outputs",)
    masked_lm = {"Bert": ("cls",), "Roberta": ("lm_head",), "XLMRoberta": ("lm_head",), "MPNet": ("lm_head",),
                 "Albert": ("predictions",), "Electra": ("generator_predictions", "generator_lm_head"),
                 "DistilBert": ("vocab_transform", "vocab_projector"),  # activation and LayerNorm between: cheap
                 "DebertaV2": ("cls", "lm_predictions")}  # legacy=True has cls, else lm_predictions
    heads.update({prefix + "ForMaskedLM": modules for prefix, modules in masked_lm.items()})
    return heads


TOKEN_HEADS = _token_heads()
_HEAD_ATTR = "_fastbert_head"  # set on each task model and head module whose forward optimize() replaced

# A per-token head's forward opens a scope; its base model's forward records there where the real tokens of a padded
# batch that ran packed sit, and the head's modules read it (one context per thread or task, so nothing leaks).
_PACKED_ROWS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fastbert_packed_rows", default=None)


class _PackedRows(NamedTuple):
    shape: tuple[int, int]  # the padded batch's (B, S)
    take: torch.Tensor  # [T + 1] int64: the real tokens' rows in the flattened [B * S] batch, then one padding row
    source: torch.Tensor  # [B * S] int64: the row of those T + 1 each padded position reads (padding: the last)


def _packed_rows(indices: torch.Tensor | None, shape: tuple[int, int]) -> _PackedRows | None:
    """The encoder's ``packed_indices`` -> what the head modules gather, or None when the batch ran padded or had no
    padding (position_ids-packed rows keep every token)."""
    total = shape[0] * shape[1]
    if indices is None or indices.numel() == total:
        return None
    source = torch.full((total,), indices.numel(), dtype=torch.int64, device=indices.device)
    source[indices] = torch.arange(indices.numel(), device=indices.device)  # [B * S]
    pad = (source == indices.numel()).to(torch.int8).argmax().reshape(1)  # [1]: the first padding position
    return _PackedRows(shape, torch.cat([indices, pad]), source)


def _share_packed_rows(out) -> None:
    """Under a per-token head's forward (its scope open), record for its modules where the encoder's real tokens
    sit. Only a batch that ran packed does so (never a traced one: torch.compile sees no context variable)."""
    scope = _PACKED_ROWS.get() if out.packed_indices is not None else None
    if scope is not None:
        scope["rows"] = _packed_rows(out.packed_indices, tuple(out.last_hidden_state.shape[:2]))


def _task_forward(model, *args, **kwargs):
    if torch.compiler.is_compiling():  # a traced forward does not pack (padding_free=False): no scope
        return type(model).forward(model, *args, **kwargs)
    token = _PACKED_ROWS.set({})
    try:
        return type(model).forward(model, *args, **kwargs)
    finally:
        _PACKED_ROWS.reset(token)


def _head_module_forward(module, x, *args, **kwargs):
    """A head module on ``x`` ``[B, S, H]``: on the real rows and one padding row when its task model's encoder ran
    packed, that padding row's result broadcast to every padding position (the rows there are all alike: zeros
    from the encoder, then per-row math). Anywhere else, the module's own forward."""
    forward = type(module).forward
    if torch.compiler.is_compiling():
        return forward(module, x, *args, **kwargs)
    scope = _PACKED_ROWS.get()
    rows = scope.get("rows") if scope is not None else None
    if rows is None or not isinstance(x, torch.Tensor) or tuple(x.shape[:2]) != rows.shape:
        return forward(module, x, *args, **kwargs)
    y = forward(module, x.flatten(0, 1).index_select(0, rows.take), *args, **kwargs)  # [T + 1, V]
    # One gather back to [B * S, V] (its backward sums the padding positions' gradients into the last row)
    return y.index_select(0, rows.source).unflatten(0, rows.shape)  # [B, S, V]


def _wrap_heads(model: nn.Module) -> None:
    """Give a per-token task model (:data:`TOKEN_HEADS`) and its head modules the forwards above."""
    names = TOKEN_HEADS.get(type(model).__name__)
    if names is None:
        return
    forward = functools.partial(_task_forward, model)
    # Trainer reads the forward's signature to keep a dataset's columns: it stays the original's
    forward.__signature__ = inspect.signature(type(model).forward.__get__(model))
    object.__setattr__(model, "forward", forward)
    object.__setattr__(model, _HEAD_ATTR, True)
    for name in names:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            object.__setattr__(module, "forward", functools.partial(_head_module_forward, module))
            object.__setattr__(module, _HEAD_ATTR, True)


def _unwrap_heads(model: nn.Module) -> None:
    for module in model.modules():
        if module.__dict__.get(_HEAD_ATTR):
            object.__delattr__(module, _HEAD_ATTR)
            object.__delattr__(module, "forward")


# Heads whose loss reads the encoder's output at padding positions: transformers' QA loss is a softmax over every
# position of the row. (Sequence classification and multiple choice read the first token; token classification and
# masked LM score labelled tokens only, and transformers' collators label padding -100.)
_HEADS_READING_PADDING = ("ForQuestionAnswering", "ForQuestionAnsweringSimple")


def optimize(model: nn.Module, *, backend: str | None = None, validate_inputs: bool = True,
             padding_free: bool | None = None) -> nn.Module:
    """Make ``model`` (a ``transformers`` model of a supported family: its base model or any task head) run its
    encoder through fastbert, in place.

    Returns the same model object (call again to change the settings). Raises ``ValueError`` for a configuration
    fastbert does not implement (decoder, cross-attention, relative positions) or an unknown ``backend``, and
    ``TypeError`` for a model of another family.
    ``backend``: ``None``/``"auto"``, ``"torch"`` or ``"triton"`` (see :mod:`fastbert.encoder.ops`).
    ``validate_inputs=False`` skips the value checks (token-id ranges, mask values: one host sync per forward).
    ``padding_free``: pack the real tokens of a padded batch (``None``: on for the Triton backend and on CPU, see
    :func:`fastbert.encoder.model.bert_forward`, except under a question answering head, whose loss reads padding
    positions); packing needs the number of real tokens on the host (one sync).
    For ``torch.compile(fullgraph=True)`` and CUDA-graph capture, which need a forward without host syncs, pass
    ``validate_inputs=False, padding_free=False`` once the inputs are known good.
    """
    import importlib

    check_transformers_version()
    base, model_type = _find_base(model)
    config = BertConfig.from_hf(base.config)
    # Restarting position_ids without a mask mean packed sequences only where the installed transformers reads them so.
    config = dataclasses.replace(config, packed_position_ids=config.packed_position_ids and packs_position_ids())
    modules = {name: tuple(path.split(".")) for name, path in module_names(config).items()}
    for name, path in modules.items():
        try:
            found = _module(base, path)
        except AttributeError:
            found = None
        if found is None and name != "pooler":
            raise TypeError(f"{type(base).__name__} has no module {'.'.join(path)} (for fastbert's {name}); "
                            "its structure is not the one fastbert knows for this family")
    parameters = inspect.signature(type(base).forward).parameters.values()
    arg_names = tuple(p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD)[1:]  # without self
    if padding_free not in (None, True, False):
        raise TypeError(f"padding_free must be None, True or False, got {padding_free!r}")
    family = FAMILIES[model_type]
    settings = _Settings(config, check_backend(backend), bool(validate_inputs), padding_free, modules, arg_names,
                         getattr(importlib.import_module(family.output_module), family.hf_output),
                         family.tuple_keeps_pooler, DropoutRates.from_hf(base.config),
                         type(model).__name__.endswith(_HEADS_READING_PADDING), dict(family.names.parameters))
    object.__setattr__(base, _ATTR, settings)
    # An instance attribute shadows the class's forward for this one module only; restore() deletes it.
    object.__setattr__(base, "forward", functools.partial(_fast_forward, base))
    _unwrap_heads(model)
    _wrap_heads(model)
    return model


TESTED_TRANSFORMERS = ("5.23.0", "5.25")  # the oldest and newest transformers CI runs (constraints/)


@functools.lru_cache(maxsize=None)
def check_transformers_version() -> None:
    """Refuse a transformers older than the oldest tested; warn once for one newer than the newest tested (5.25 showed
    that a minor release can change what the same inputs mean)."""
    import warnings

    import transformers
    from packaging.version import Version

    found, (oldest, newest) = Version(transformers.__version__), TESTED_TRANSFORMERS
    if found < Version(oldest):
        raise ImportError(f"fastbert.optimize needs transformers >= {oldest} (found {transformers.__version__})")
    if found.release[:2] > Version(newest).release[:2]:
        warnings.warn(f"fastbert.optimize is tested with transformers {oldest} to {newest}.x, found "
                      f"{transformers.__version__}: outputs are not checked against this version", UserWarning,
                      stacklevel=3)


@functools.lru_cache(maxsize=None)
def packs_position_ids() -> bool:
    """Whether the installed transformers reads ``position_ids`` that restart, with no attention mask, as packed
    sequences (block-diagonal attention): 5.25 and later, for the families whose config sets
    ``packed_position_ids``. Older versions attend across the whole row."""
    import transformers
    from packaging.version import Version

    return Version(transformers.__version__).release >= (5, 25)


def key_mask(
    mask: torch.Tensor | None, shape: tuple[int, int], num_heads: int, attn_implementation: str | None, *,
    check: bool = True,
) -> torch.Tensor | None:
    """transformers' ``attention_mask`` -> fastbert's key mask ``[B, S]`` (True = attend), or None.

    ``shape`` is ``(B, S)`` of the input. See the module docstring for what each form means; a 2-D mask of the
    wrong shape passes through for the encoder's own check to name. ``check``: verify that a 4-D mask is a key mask
    with values fastbert reproduces (one host sync); without it the mask is read at head 0, query 0.
    """
    if not isinstance(mask, torch.Tensor):
        return mask  # None, or something for the encoder's check to name
    if mask.dim() == 2:  # transformers casts a 2-D mask to bool: nonzero = attend
        return mask if mask.dtype == torch.bool else mask != 0
    batch, seqlen = shape
    if mask.dim() != 4 or mask.shape[0] not in (1, batch) or mask.shape[1] not in (1, num_heads) \
            or mask.shape[2] not in (1, seqlen) or mask.shape[3] != seqlen:
        raise ValueError(
            f"attention_mask has shape {list(mask.shape)}; fastbert takes [{batch}, {seqlen}] or a 4-D "
            f"[{batch} or 1, 1 or {num_heads}, 1 or {seqlen}, {seqlen}] mask"
        )
    if mask.dtype == torch.bool:
        if attn_implementation == "eager":
            raise ValueError(
                "a boolean 4-D attention_mask on an attn_implementation='eager' model: transformers' eager attention "
                "adds it to the scores as 0/1 instead of masking, which fastbert does not reproduce; pass the 2-D "
                "[batch, seq_len] mask, or an additive float mask (0 = attend, torch.finfo(dtype).min = masked)"
            )
        attend, other_values = mask, None
    elif mask.dtype.is_floating_point:
        attend = mask == 0
        other_values = ~(attend | (mask <= _MASKED))  # NaN, or a bias fastbert cannot reproduce
    else:
        raise ValueError(
            f"attention_mask is 4-D of dtype {mask.dtype}; a 4-D mask must be boolean (True = attend) or additive "
            "float (0 = attend, torch.finfo(dtype).min = masked); or pass the 2-D [batch, seq_len] 0/1 mask"
        )
    keys = attend[:, :1, :1, :]  # [B or 1, 1, 1, S]: head 0, query 0
    if check:
        flags = [(attend != keys).any()] + ([other_values.any()] if other_values is not None else [])
        per_query, *bias = torch.stack(flags).tolist()  # one transfer
        if bias and bias[0]:
            raise ValueError(
                "a float 4-D attention_mask is additive in transformers; fastbert reproduces 0 (attend) and values "
                f"<= {_MASKED:g} such as torch.finfo(dtype).min or -inf (masked), and this one holds other values "
                "(a 0/1 mask? pass it 2-D [batch, seq_len], or as (1 - mask) * torch.finfo(dtype).min)"
            )
        if per_query:
            raise ValueError(
                f"attention_mask of shape {list(mask.shape)} differs between heads or query positions (a per-query "
                "mask); fastbert supports masks that select keys only: pass the 2-D [batch, seq_len] mask"
            )
    return keys.reshape(keys.shape[0], seqlen).expand(batch, seqlen)


def restore(model: nn.Module) -> nn.Module:
    """Undo :func:`optimize`: the model's base encoder runs its original forward again. Returns the model."""
    base, _ = _find_base(model)
    _unwrap_heads(model)
    if hasattr(base, _ATTR):
        object.__delattr__(base, _ATTR)
        object.__delattr__(base, "forward")
    return model


def is_optimized(model: nn.Module) -> bool:
    return hasattr(_find_base(model)[0], _ATTR)
