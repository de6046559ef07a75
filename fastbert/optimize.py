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
  differentiable PyTorch path, so backpropagation reaches the HF parameters.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .config import BertConfig
from .model import EmbeddingWeights, LayerWeights, bert_forward, needs_grad

_ATTR = "_fastbert"  # set on an optimized BertModel instance: the fastbert config and backend


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

    config, backend = getattr(bert, _ATTR)
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
        backend=backend,
        output_hidden_states=bool(output_hidden_states),
        needs_grad=needs_grad(bert, inputs_embeds),
    )
    result = BaseModelOutputWithPoolingAndCrossAttentions(
        last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output, hidden_states=out.hidden_states
    )
    return result if return_dict else result.to_tuple()


def optimize(model: nn.Module, *, backend: str | None = None) -> nn.Module:
    """Make ``model`` (a ``transformers`` ``BertModel`` or ``BertFor*``) run its encoder through fastbert, in place.

    Returns the same model object. Raises ``ValueError`` for a configuration fastbert does not implement
    (decoder, cross-attention, relative positions) and ``TypeError`` for a model that is not BERT.
    ``backend``: ``None``/``"auto"``, ``"torch"`` or ``"triton"`` (see :mod:`fastbert.ops`).
    """
    bert = _find_bert(model)
    config = BertConfig.from_hf(bert.config)
    object.__setattr__(bert, _ATTR, (config, backend))
    # An instance attribute shadows the class's forward for this one module only; restore() deletes it.
    object.__setattr__(bert, "forward", functools.partial(_fast_forward, bert))
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo :func:`optimize`: the model's BertModel runs its original forward again. Returns the model."""
    bert = _find_bert(model)
    if hasattr(bert, _ATTR):
        object.__delattr__(bert, _ATTR)
        object.__delattr__(bert, "forward")
    return model


def is_optimized(model: nn.Module) -> bool:
    return hasattr(_find_bert(model), _ATTR)
