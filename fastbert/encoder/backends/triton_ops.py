"""The Triton backend: fastbert's fused kernels (:mod:`fastbert.kernels`). Differentiable: when autograd records a
call (grad mode on and an input requires grad), the GEMM (+ bias + activation), attention and bias + residual +
LayerNorm ops run as ``torch.autograd.Function`` objects whose backward passes are Triton kernels too; the embeddings'
lookup + LayerNorm then runs the PyTorch ops (no backward kernel). No backward through MPNet's relative-position bias
(a ``ValueError``; the op seam routes MPNet training to PyTorch).

Dropout (train mode) is fused: the hidden dropout of :func:`linear_residual_layernorm` into the bias + residual +
LayerNorm kernel and its backward, the attention-probability dropout of :func:`attention` into the attention forward
and backward kernels. Each call draws one Philox seed from torch's CPU generator
(:func:`fastbert.kernels.layernorm.dropout_seed`), and the backward kernels regenerate the mask from it (none is
stored): reproducible under ``torch.manual_seed`` (and replayed by gradient checkpointing, which restores the CPU RNG
state), the same distribution as transformers' dropout, not the same masks. The embeddings' dropout runs the PyTorch
ops (``F.dropout``). DeBERTa's disentangled attention kernel has no dropout (a nonzero ``dropout`` there is a
``ValueError``; its training runs on PyTorch anyway, having no Triton backward), nor has MPNet's biased attention
under autograd (no backward).

Runs on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is
imported), the path CI uses to test the kernels. Packed tokens stay packed: the attention kernels read
``cu_seqlens``. DeBERTa's disentangled attention has its own kernel (:mod:`fastbert.kernels.disentangled`). Every
function here has the signature of its namesake in :mod:`fastbert.encoder.ops`.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch

from ...kernels import attention as attn
from ...kernels import disentangled as dis
from ...kernels import embedding, gemm, layernorm
from ..layout import AttentionLayout
from . import torch_ops


def _recording(*tensors) -> bool:
    """Whether autograd records this call: grad mode on and some input requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings, token_type_embeddings,
          ln_weight, ln_bias, eps, *, inputs_embeds=None, dropout=0.0) -> torch.Tensor:
    tables = (word_embeddings, position_embeddings, token_type_embeddings, ln_weight, ln_bias)
    if inputs_embeds is not None or dropout > 0 or _recording(*tables):
        # no lookup to fuse, no dropout in the kernel, or no backward kernel: PyTorch ops
        return torch_ops.embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
                               token_type_embeddings, ln_weight, ln_bias, eps, inputs_embeds=inputs_embeds,
                               dropout=dropout)
    return embedding.embed_layernorm(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
                                     token_type_embeddings, ln_weight, ln_bias, eps)


def linear(x, weight, bias, activation=None) -> torch.Tensor:
    if weight.dtype != x.dtype:
        raise ValueError(f"mixed-precision linears ({weight.dtype} weights, {x.dtype} activations: "
                         "quantize='bfloat16') run on the torch backend, not 'triton'")
    if _recording(x, weight, bias):
        return _Linear.apply(x, weight, bias, activation)
    return gemm.linear(x, weight, bias, activation)


class _Linear(torch.autograd.Function):
    """act(x @ weight.T + bias) with :func:`fastbert.kernels.gemm.linear_backward` as its backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, activation):
        if activation is None:
            y, pre = gemm.linear(x, weight, bias), None
        else:
            y, pre = gemm.linear(x, weight, bias, activation, save_pre=True)
        ctx.save_for_backward(x, weight, pre)
        ctx.activation, ctx.has_bias = activation, bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, pre = ctx.saved_tensors
        needs = ctx.needs_input_grad
        dx, dw, db = gemm.linear_backward(dy, x, weight, pre, ctx.activation,
                                          (needs[0], needs[1], ctx.has_bias and needs[2]))
        return dx, dw, db, None


def position_bias(layout: AttentionLayout, distances, columns) -> AttentionLayout:
    """The kernel reads the bias table (fp32) and, packed, each token's column (int32); it computes the distances."""
    positions = columns.to(torch.int32).contiguous() if layout.packed else None
    return dataclasses.replace(layout, bias=(distances.float().contiguous(), positions))


class _Disentangled(NamedTuple):
    """What every layer's disentangled attention reads (:func:`disentangled`, once per forward)."""

    rows: torch.Tensor  # [R, H]: the relative embeddings the batch's distances reach (a contiguous run of the table)
    rows_of: torch.Tensor  # [2W + 1] int32: the index into ``rows`` of each query-minus-key distance in [-W, W]
    columns: torch.Tensor | None  # [T] int32: each packed row's column (packed layout); None: padded
    scale: float  # 1 / sqrt(D (1 + number of position scores))
    c2p: bool
    p2c: bool


def disentangled(layout: AttentionLayout, table, rows_of, columns, head_dim, scale, c2p, p2c) -> AttentionLayout:
    """The kernel reads per-token position scores against the relative-embedding rows the batch's distances reach:
    ``rows_of`` is monotone in the distance, so those rows are the run ``rows_of[0] .. rows_of[-1]`` of the table
    (one host read of the two ends per forward)."""
    first, last = (int(r) for r in rows_of[[0, -1]].tolist())
    cols = columns.to(torch.int32).contiguous() if layout.packed else None
    return dataclasses.replace(layout, bias=_Disentangled(table[first:last + 1], (rows_of - first).to(torch.int32),
                                                          cols, scale / head_dim ** 0.5, c2p, p2c))


def _disentangled_attention(q, k, v, layout: AttentionLayout, projection) -> torch.Tensor:
    """The layer's query and key projections (``projection``: its fused QKV weight and bias) of the relative rows
    give Qr, Kr ``[R, heads, D]``; q . Kr and k . Qr per token are the kernel's tables ``[heads, N, R]``."""
    d: _Disentangled = layout.bias
    heads, head_dim = q.shape[1], q.shape[2]
    hidden = heads * head_dim
    weight, bias = projection[:2]  # (XLNet's relative weights, the third, are not DeBERTa's)
    pos = linear(d.rows.to(q.dtype), weight[:2 * hidden], bias[:2 * hidden])  # [R, 2H]
    pos_q, pos_k = pos.unflatten(1, (2, heads, head_dim)).unbind(1)  # 2 x [R, heads, D]
    c2p = dis.position_scores(q, pos_k) if d.c2p else None  # [heads, N, R]
    p2c = dis.position_scores(k, pos_q) if d.p2c else None
    if layout.packed:
        return dis.disentangled_attention_varlen(q, k, v, layout.cu_seqlens, layout.seqlen, d.columns, c2p, p2c,
                                                 d.rows_of, d.scale)
    b, s = layout.batch, layout.seqlen
    out = dis.disentangled_attention(q.unflatten(0, (b, s)), k.unflatten(0, (b, s)), v.unflatten(0, (b, s)),
                                     layout.key_mask, c2p, p2c, d.rows_of, d.scale)  # [B, S, heads, D]
    return out.flatten(0, 1)


def xlnet_attention(layout: AttentionLayout, sinusoids, columns, segments) -> AttentionLayout:
    raise ValueError("XLNet's relative attention has no Triton kernel yet; run it with backend='torch'")


def attention(q, k, v, layout: AttentionLayout, dropout=0.0, projection=None) -> torch.Tensor:
    if isinstance(layout.bias, _Disentangled):
        if dropout > 0:
            raise ValueError(f"DeBERTa's disentangled attention kernel has no dropout (got p={dropout}); train mode "
                             "with attention dropout runs it with backend='torch'")
        return _disentangled_attention(q, k, v, layout, projection)
    bias, positions = layout.bias if layout.bias is not None else (None, None)
    seed = layernorm.dropout_seed() if dropout > 0 else 0
    if _recording(q, k, v, bias):
        if bias is not None:
            raise ValueError("MPNet's relative-position bias has no Triton backward; train it with backend='torch'")
        return _Attention.apply(q, k, v, layout, dropout, seed)
    if layout.packed:
        return attn.attention_varlen(q, k, v, layout.cu_seqlens, layout.seqlen, bias, positions, dropout=dropout,
                                     seed=seed)
    b, s = layout.batch, layout.seqlen
    out = attn.attention(q.unflatten(0, (b, s)), k.unflatten(0, (b, s)), v.unflatten(0, (b, s)), layout.key_mask,
                         bias, dropout=dropout, seed=seed)
    return out.flatten(0, 1)


class _Attention(torch.autograd.Function):
    """Attention without bias (``[N, heads, D]`` in and out; probability dropout ``dropout`` with the Philox ``seed``)
    with the FlashAttention-2 style backward kernels (the same seed: the same mask)."""

    @staticmethod
    def forward(ctx, q, k, v, layout, dropout, seed):
        drop = dict(dropout=dropout, seed=seed)
        if layout.packed:
            out, lse = attn.attention_varlen(q, k, v, layout.cu_seqlens, layout.seqlen, return_lse=True, **drop)
        else:
            b, s = layout.batch, layout.seqlen
            out, lse = attn.attention(q.unflatten(0, (b, s)), k.unflatten(0, (b, s)), v.unflatten(0, (b, s)),
                                      layout.key_mask, return_lse=True, **drop)
            out = out.flatten(0, 1)  # [N, heads, D]
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.layout, ctx.drop = layout, drop
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        layout = ctx.layout
        if layout.packed:
            return (*attn.attention_varlen_backward(dout, q, k, v, out, lse, layout.cu_seqlens, layout.seqlen,
                                                    **ctx.drop), None, None, None)
        b, s = layout.batch, layout.seqlen
        grads = attn.attention_backward(*(t.unflatten(0, (b, s)) for t in (dout, q, k, v, out)), lse,
                                        layout.key_mask, **ctx.drop)
        return (*(g.flatten(0, 1) for g in grads), None, None, None)


def linear_residual_layernorm(x, weight, bias, residual, ln_weight, ln_bias, eps, dropout=0.0) -> torch.Tensor:
    return _bias_dropout_residual_layernorm(linear(x, weight, None), bias, residual, ln_weight, ln_bias, eps, dropout)


def bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps) -> torch.Tensor:
    return _bias_dropout_residual_layernorm(x, bias, residual, weight, ln_bias, eps, 0.0)


def _bias_dropout_residual_layernorm(x, bias, residual, weight, ln_bias, eps, dropout) -> torch.Tensor:
    """LayerNorm(dropout(x + bias) + residual), one fresh seed per call when ``dropout`` > 0."""
    seed = layernorm.dropout_seed() if dropout > 0 else 0
    if _recording(x, bias, residual, weight, ln_bias):
        return _BiasResidualLayerNorm.apply(x, bias, residual, weight, ln_bias, eps, dropout, seed)
    return layernorm.bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps, dropout=dropout, seed=seed)


class _BiasResidualLayerNorm(torch.autograd.Function):
    """LayerNorm(dropout(x + bias) + residual) with
    :func:`fastbert.kernels.layernorm.bias_dropout_residual_layernorm_backward` (the same seed: the same mask)."""

    @staticmethod
    def forward(ctx, x, bias, residual, weight, ln_bias, eps, dropout, seed):
        ctx.save_for_backward(x, bias, residual, weight)
        ctx.eps, ctx.dropout, ctx.seed = eps, dropout, seed
        return layernorm.bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps, dropout=dropout, seed=seed)

    @staticmethod
    def backward(ctx, dy):
        x, bias, residual, weight = ctx.saved_tensors
        dx, dres, dbias, dweight, dln_bias = layernorm.bias_dropout_residual_layernorm_backward(
            dy, x, bias, residual, weight, ctx.eps, dropout=ctx.dropout, seed=ctx.seed)
        return dx, dbias, dres, dweight, dln_bias, None, None, None
