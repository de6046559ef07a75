"""Swap fastbert into an existing ``transformers`` BERT model, in place.

``optimize(model)`` finds the model's ``BertModel`` (the model itself, or ``model.bert`` inside any ``BertFor*``
head) and gives that one instance a forward that runs fastbert's encoder (:func:`fastbert.model.bert_forward`)
on the HF module's own parameters. Nothing is copied or renamed: the task heads, HF's output classes,
``state_dict`` and ``save_pretrained`` see the model exactly as before. ``restore(model)`` removes the override.

What runs where:

* eval mode, no ``output_attentions``: fastbert. ``output_hidden_states=True`` is supported (embeddings output,
  then every layer's output, as HF returns them).
* ``output_attentions=True`` (fastbert's attention never materialises the probabilities) or train mode (fastbert
  has no dropout): the original HF forward runs, so results stay exactly HF's.
* Gradients: with grad mode on and parameters (or ``inputs_embeds``) requiring grad, the op seam takes its
  differentiable PyTorch path, so backpropagation reaches the HF parameters. When that alone keeps a forward off
  the Triton path, a warning (once per model) names the fix: ``torch.inference_mode()`` or ``torch.no_grad()``.

``attention_mask`` means what it means to transformers' BERT, converted to the key mask fastbert runs:

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

import functools
from typing import NamedTuple

import torch
from torch import nn

from .config import BertConfig
from .model import EmbeddingWeights, LayerWeights, bert_forward, check_backend, choose_backend, needs_grad

_ATTR = "_fastbert"  # set on an optimized BertModel instance: its _Settings
_MASKED = -1e4  # an additive 4-D mask value at or below this masks the key (exp underflows to exactly 0)


class _Settings(NamedTuple):
    config: BertConfig
    backend: str | None
    validate_inputs: bool


def _find_bert(model: nn.Module) -> nn.Module:
    try:
        from transformers import BertModel as HFBertModel
    except ImportError as e:  # pragma: no cover - transformers is what optimize() is for
        raise TypeError("fastbert.optimize needs the transformers package") from e
    if isinstance(model, HFBertModel):
        return model
    bert = getattr(model, "bert", None)
    if isinstance(bert, HFBertModel):
        return bert
    raise TypeError(
        f"fastbert.optimize expects a transformers BertModel or BertFor* model, got {type(model).__name__}"
    )


def _embedding_weights(bert) -> EmbeddingWeights:
    e = bert.embeddings
    return EmbeddingWeights(e.word_embeddings.weight, e.position_embeddings.weight, e.token_type_embeddings.weight,
                            e.LayerNorm.weight, e.LayerNorm.bias)


def _layer_weights(layer) -> LayerWeights:
    s, a, i, o = layer.attention.self, layer.attention.output, layer.intermediate, layer.output
    # Q/K/V are stacked per call (a few MB per layer, cheap next to the GEMMs), so no second copy is held
    # and gradients still reach the three HF parameters.
    qkv_weight = torch.cat([s.query.weight, s.key.weight, s.value.weight])
    qkv_bias = torch.cat([s.query.bias, s.key.bias, s.value.bias])
    return LayerWeights(qkv_weight, qkv_bias, a.dense.weight, a.dense.bias, a.LayerNorm.weight, a.LayerNorm.bias,
                        i.dense.weight, i.dense.bias, o.dense.weight, o.dense.bias, o.LayerNorm.weight,
                        o.LayerNorm.bias)


def _fast_forward(
    bert,
    input_ids=None,
    attention_mask=None,
    token_type_ids=None,
    position_ids=None,
    inputs_embeds=None,
    encoder_hidden_states=None,
    encoder_attention_mask=None,
    past_key_values=None,
    use_cache=None,
    output_attentions=None,
    output_hidden_states=None,
    return_dict=None,
    **kwargs,
):
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    config, backend, validate = getattr(bert, _ATTR)
    hf_config = bert.config
    if output_attentions is None:
        output_attentions = getattr(hf_config, "output_attentions", False)
    if bert.training or output_attentions:
        return type(bert).forward(
            bert, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=return_dict, **kwargs,
        )
    unsupported = {"encoder_hidden_states": encoder_hidden_states, "encoder_attention_mask": encoder_attention_mask,
                   "past_key_values": past_key_values, "use_cache": use_cache or None, **kwargs}
    given = sorted(k for k, v in unsupported.items() if v is not None)
    if given:
        raise ValueError(f"fastbert-optimized BertModel does not support the argument(s) {given}; "
                         "call fastbert.restore(model) to use them")
    if output_hidden_states is None:
        output_hidden_states = getattr(hf_config, "output_hidden_states", False)
    if return_dict is None:
        return_dict = getattr(hf_config, "return_dict", True)

    pooler = (bert.pooler.dense.weight, bert.pooler.dense.bias) if bert.pooler is not None else None
    reference = input_ids if input_ids is not None else inputs_embeds
    if isinstance(reference, torch.Tensor) and reference.dim() >= 2:
        attention_mask = key_mask(attention_mask, tuple(reference.shape[:2]), config.num_attention_heads,
                                  hf_config._attn_implementation, check=validate)
    grad = needs_grad(bert, inputs_embeds)
    out = bert_forward(
        config,
        _embedding_weights(bert),
        (_layer_weights(layer) for layer in bert.encoder.layer),
        pooler,
        input_ids,
        attention_mask,
        token_type_ids,
        position_ids,
        inputs_embeds=inputs_embeds,
        backend=choose_backend(bert, backend, bert.embeddings.word_embeddings.weight.device, grad),
        validate=validate,
        output_hidden_states=bool(output_hidden_states),
        needs_grad=grad,
    )
    result = BaseModelOutputWithPoolingAndCrossAttentions(
        last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output, hidden_states=out.hidden_states
    )
    return result if return_dict else result.to_tuple()


def optimize(model: nn.Module, *, backend: str | None = None, validate_inputs: bool = True) -> nn.Module:
    """Make ``model`` (a ``transformers`` ``BertModel`` or ``BertFor*``) run its encoder through fastbert, in place.

    Returns the same model object (call again to change the settings). Raises ``ValueError`` for a configuration
    fastbert does not implement (decoder, cross-attention, relative positions) or an unknown ``backend``, and
    ``TypeError`` for a model that is not BERT.
    ``backend``: ``None``/``"auto"``, ``"torch"`` or ``"triton"`` (see :mod:`fastbert.ops`).
    ``validate_inputs=False`` skips the value checks (token-id ranges, mask values: one host sync per forward),
    for ``torch.compile(fullgraph=True)`` and CUDA-graph capture once the inputs are known good.
    """
    bert = _find_bert(model)
    config = BertConfig.from_hf(bert.config)
    object.__setattr__(bert, _ATTR, _Settings(config, check_backend(backend), bool(validate_inputs)))
    # An instance attribute shadows the class's forward for this one module only; restore() deletes it.
    object.__setattr__(bert, "forward", functools.partial(_fast_forward, bert))
    return model


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
    """Undo :func:`optimize`: the model's BertModel runs its original forward again. Returns the model."""
    bert = _find_bert(model)
    if hasattr(bert, _ATTR):
        object.__delattr__(bert, _ATTR)
        object.__delattr__(bert, "forward")
    return model


def is_optimized(model: nn.Module) -> bool:
    return hasattr(_find_bert(model), _ATTR)
