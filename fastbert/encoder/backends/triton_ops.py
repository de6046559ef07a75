"""The Triton backend: fastbert's fused kernels (:mod:`fastbert.kernels`), inference only: no backward kernels and no
dropout (the op seam routes autograd and train mode to the PyTorch backend; a nonzero ``dropout`` here is a
``ValueError``).

Runs on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is
imported), the path CI uses to test the kernels. Packed tokens stay packed: the attention kernel reads
``cu_seqlens``. Every function here has the signature of its namesake in :mod:`fastbert.encoder.ops`.
"""
from __future__ import annotations

import dataclasses

import torch

from ...kernels import attention as attn
from ...kernels import embedding, gemm, layernorm
from ..layout import AttentionLayout
from . import torch_ops


def embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings, token_type_embeddings,
          ln_weight, ln_bias, eps, *, inputs_embeds=None, dropout=0.0) -> torch.Tensor:
    _no_dropout(dropout)
    if inputs_embeds is not None:  # no lookup to fuse: the PyTorch ops, on the same tensors
        return torch_ops.embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
                               token_type_embeddings, ln_weight, ln_bias, eps, inputs_embeds=inputs_embeds)
    return embedding.embed_layernorm(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
                                     token_type_embeddings, ln_weight, ln_bias, eps)


def _no_dropout(p: float) -> None:
    if p > 0:
        raise ValueError(f"the triton backend has no dropout (got p={p}); train mode runs on the torch backend")


def linear(x, weight, bias, activation=None) -> torch.Tensor:
    if weight.dtype != x.dtype:
        raise ValueError(f"mixed-precision linears ({weight.dtype} weights, {x.dtype} activations: "
                         "quantize='bfloat16') run on the torch backend, not 'triton'")
    return gemm.linear(x, weight, bias, activation)


def position_bias(layout: AttentionLayout, distances, columns) -> AttentionLayout:
    """The kernel reads the bias table (fp32) and, packed, each token's column (int32); it computes the distances."""
    positions = columns.to(torch.int32).contiguous() if layout.packed else None
    return dataclasses.replace(layout, bias=(distances.float().contiguous(), positions))


def disentangled(layout: AttentionLayout, table, rows_of, columns, head_dim, scale, c2p, p2c) -> AttentionLayout:
    raise ValueError("DeBERTa's disentangled attention has no Triton kernel yet; run it with backend='torch'")


def xlnet_attention(layout: AttentionLayout, sinusoids, columns, segments) -> AttentionLayout:
    raise ValueError("XLNet's relative attention has no Triton kernel yet; run it with backend='torch'")


def attention(q, k, v, layout: AttentionLayout, dropout=0.0, projection=None) -> torch.Tensor:
    _no_dropout(dropout)
    bias, positions = layout.bias if layout.bias is not None else (None, None)
    if layout.packed:
        return attn.attention_varlen(q, k, v, layout.cu_seqlens, layout.seqlen, bias, positions)
    b, s = layout.batch, layout.seqlen
    out = attn.attention(q.unflatten(0, (b, s)), k.unflatten(0, (b, s)), v.unflatten(0, (b, s)), layout.key_mask,
                         bias)
    return out.flatten(0, 1)


def linear_residual_layernorm(x, weight, bias, residual, ln_weight, ln_bias, eps, dropout=0.0) -> torch.Tensor:
    _no_dropout(dropout)
    return bias_residual_layernorm(linear(x, weight, None), bias, residual, ln_weight, ln_bias, eps)


def bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps) -> torch.Tensor:
    return layernorm.bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps)
