"""Swap fastbert into an existing ``transformers`` model of the BERT family, in place.

``optimize(model)`` finds the model's base encoder (``BertModel``, ``RobertaModel``, ``XLMRobertaModel``,
``DistilBertModel``, ``ElectraModel``, ``AlbertModel``, ``MPNetModel`` or ``DebertaV2Model``: the model itself, or its
``bert``/``roberta``/``distilbert``/``electra``/``albert``/``mpnet``/``deberta`` attribute inside any task head) and
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
  (:class:`~fastbert.encoder.config.DropoutRates`, read at ``optimize``; call it again after changing them), on
  the PyTorch backend: hidden dropout with ``F.dropout``, attention-probability dropout with SDPA's ``dropout_p``.
  The masks come from torch's RNG in fastbert's own order: the same distribution as transformers, not the same
  masks for the same seed. HF's gradient checkpointing (``model.gradient_checkpointing_enable()``) is honoured: each
  layer application runs under the checkpoint function transformers installed (every layer, whatever
  ``every_n_layers`` was given; results are the same, only memory and time differ).
* Gradients: with grad mode on and parameters (or ``inputs_embeds``) requiring grad, the op seam takes its
  differentiable PyTorch path (or, when ``backend='triton'`` is asked for by name and dropout is off, the Triton
  kernels with their backward kernels; see :mod:`fastbert.encoder.ops`), so backpropagation reaches the HF
  parameters. The weights are read from the HF
  modules at every forward (Q/K/V stacked with a differentiable ``torch.cat``), so an optimizer step is seen by
  the next forward. When that alone keeps a forward off the Triton path, a warning (once per model) names the fix:
  ``torch.inference_mode()`` or ``torch.no_grad()``.
* Padding: a padded batch runs packed (real tokens only) and comes back padded for the head, with zeros at padding
  positions. Question answering heads are the exception: transformers' QA loss takes its softmax over every
  position, padding included, so the padding rows enter the loss; for them ``padding_free=None`` keeps a padded
  batch padded and the loss is HF's (``padding_free=True`` packs anyway, and padding positions then score the
  head's bias alone).

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

import dataclasses
import functools
import inspect
from typing import Any, NamedTuple

import torch
from torch import nn

from .config import BertConfig, DropoutRates
from .families import FAMILIES, NAMES, module_names
from .model import EmbeddingWeights, LayerWeights, bert_forward, check_backend, choose_backend, needs_grad

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
        if module is not None and type(module).forward not in _PLAIN_FORWARDS:
            raise TypeError(
                f"{type(base).__name__}.{'.'.join(s.modules[name])} is a {type(module).__name__} with its own forward "
                "(an adapter such as LoRA, or a quantized layer?); fastbert computes nn.Linear / nn.LayerNorm / "
                "nn.Embedding math from its weight and bias alone, which would silently drop what that forward adds. "
                "Call fastbert.restore(model) to run it")
    project, token_type, pooler = m.get("embeddings.project"), m.get("embeddings.token_type"), m.get("pooler")
    position = m.get("embeddings.position")
    embeddings = EmbeddingWeights(
        m["embeddings.word"].weight, position.weight if position is not None else None,
        token_type.weight if token_type is not None else None, m["embeddings.norm"].weight, m["embeddings.norm"].bias,
        project.weight if project is not None else None, project.bias if project is not None else None,
    )
    unique = []
    for u in range(s.config.num_layer_weights):
        q, k, v = (m[f"layers.{u}.qkv.{p}"] for p in ("query", "key", "value"))
        a, an, up, down, fn = (m[f"layers.{u}.{n}"]
                               for n in ("attn_out", "attn_norm", "ffn_up", "ffn_down", "ffn_norm"))
        unique.append(LayerWeights(
            torch.cat([q.weight, k.weight, v.weight]), torch.cat([q.bias, k.bias, v.bias]), a.weight, a.bias,
            an.weight, an.bias, up.weight, up.bias, down.weight, down.bias, fn.weight, fn.bias,
        ))
    layers = [unique[u] for u in s.config.layer_schedule]  # ALBERT: the same tuple for every application
    return embeddings, layers, (pooler.weight, pooler.bias) if pooler is not None else None


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
    if isinstance(reference, torch.Tensor) and reference.dim() >= 2:
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
        output_hidden_states=bool(output_hidden_states),
        needs_grad=grad,
        padding_free=padding_free,
        relative_bias=relative.weight if relative is not None else None,
        dropout=dropout,
        checkpoint=_checkpoint_function(base) if grad and base.training else None,
        relative_embeddings=disentangled,
    )
    fields = dict(last_hidden_state=out.last_hidden_state)
    if "pooler_output" in s.output.__dataclass_fields__:
        fields["pooler_output"] = out.pooler_output
    if out.hidden_states is not None:
        fields["hidden_states"] = _select(out.hidden_states, output_hidden_states)
    result = s.output(**fields)
    if return_dict:
        return result
    values = result.to_tuple()
    if s.tuple_keeps_pooler and out.pooler_output is None:
        values = values[:1] + (None,) + values[1:]
    return values


def _checkpoint_function(base: nn.Module):
    """The checkpoint function transformers installed with ``gradient_checkpointing_enable()`` (it reads each of its
    layers' ``gradient_checkpointing`` flag in train mode with grad on), or None when it is off."""
    for module in base.modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            function = getattr(module, "_gradient_checkpointing_func", None)
            if function is not None:
                return function
    return None


# Heads whose loss reads the encoder's output at padding positions: transformers' QA loss is a softmax over every
# position of the row. (Sequence classification and multiple choice read the first token; token classification and
# masked LM score labelled tokens only, and transformers' collators label padding -100.)
_HEADS_READING_PADDING = ("ForQuestionAnswering",)


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
    import transformers.modeling_outputs as outputs

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
    settings = _Settings(config, check_backend(backend), bool(validate_inputs), padding_free, modules, arg_names,
                         getattr(outputs, FAMILIES[model_type].hf_output), FAMILIES[model_type].tuple_keeps_pooler,
                         DropoutRates.from_hf(base.config), type(model).__name__.endswith(_HEADS_READING_PADDING))
    object.__setattr__(base, _ATTR, settings)
    # An instance attribute shadows the class's forward for this one module only; restore() deletes it.
    object.__setattr__(base, "forward", functools.partial(_fast_forward, base))
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
    if hasattr(base, _ATTR):
        object.__delattr__(base, _ATTR)
        object.__delattr__(base, "forward")
    return model


def is_optimized(model: nn.Module) -> bool:
    return hasattr(_find_base(model)[0], _ATTR)
