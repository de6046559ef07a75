"""The PyTorch backend: plain PyTorch, differentiable, any device; the reference path.

On CPU, when no autograd graph is needed, each linear is one oneDNN primitive with its bias, activation or residual
fused as post-ops. A bfloat16 weight given float32 activations is the mixed mode of
:func:`fastbert.encoder.precision.quantize`: the activations are rounded to bfloat16 for the GEMM (whose output is
bfloat16), while residuals and LayerNorm stay float32. With autograd recording every op is a differentiable PyTorch
op (``F.linear``, SDPA, ``F.layer_norm``). Dropout (train mode) is ``F.dropout`` on hidden states and SDPA's
``dropout_p`` on the attention probabilities. Packed tokens run in length buckets
(:func:`fastbert.encoder.layout.bucketed_layout`): attention is one SDPA call per bucket on views of the token rows.
Every function here has the signature of its namesake in :mod:`fastbert.encoder.ops`.
"""
from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F

from ..layout import AttentionLayout, Bucket, length_buckets


def embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings, token_type_embeddings,
          ln_weight, ln_bias, eps, *, inputs_embeds=None, dropout=0.0) -> torch.Tensor:
    words = F.embedding(input_ids, word_embeddings) if inputs_embeds is None else inputs_embeds
    x = words + F.embedding(token_type_ids, token_type_embeddings)
    x = x + F.embedding(position_ids, position_embeddings)
    return _dropout(F.layer_norm(x, (x.shape[-1],), ln_weight, ln_bias, eps), dropout)


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    return F.dropout(x, p, training=True) if p > 0 else x


def linear(x, weight, bias, activation=None) -> torch.Tensor:
    if _mixed_bf16(x, weight):
        x = x.to(torch.bfloat16)  # [N, K]: the GEMM's input in bf16; its output is bf16
    if _onednn_linear_ok(x, weight):
        return _onednn_linear(x, weight, bias, activation)
    return _activate(F.linear(x, weight, bias), activation)


def _mixed_bf16(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """A bfloat16 weight meeting float32 activations: the mixed mode (see the module docstring)."""
    return weight.dtype == torch.bfloat16 and x.dtype == torch.float32


def _activate(y: torch.Tensor, activation: str | None) -> torch.Tensor:
    if activation == "gelu":
        return F.gelu(y)
    if activation == "gelu_tanh":
        return F.gelu(y, approximate="tanh")
    if activation == "relu":
        return F.relu(y)
    return y


# oneDNN post-op names for ``activation``: (attr, algorithm).
_ONEDNN_POSTOPS = {None: ("none", ""), "gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "relu": ("relu", "")}


@functools.lru_cache(maxsize=None)
def _onednn_dtypes() -> tuple[torch.dtype, ...]:
    """Dtypes whose CPU linears go through oneDNN with the activation fused (empty without oneDNN)."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return ()
    return (torch.float32, torch.bfloat16) if torch.ops.mkldnn._is_mkldnn_bf16_supported() else (torch.float32,)


def _onednn_linear_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """The fused oneDNN linear is forward-only: CPU, matching float dtypes, no autograd graph to build."""
    return (
        x.device.type == "cpu"
        and not torch.compiler.is_compiling()  # under torch.compile the compiler fuses (and mkldnn checks break traces)
        and x.dtype == weight.dtype
        and x.dtype in _onednn_dtypes()
        and x.dim() == 2
        and x.shape[0] > 0
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def _onednn_linear(x, weight, bias, activation):
    """act(x @ weight.T + bias) as one oneDNN primitive (bias and activation are GEMM post-ops): one pass over
    the output instead of three. fp32 stays fp32 (no implicit down-conversion unless the user set
    ``torch.backends.mkldnn.matmul.fp32_precision``)."""
    attr, algorithm = _ONEDNN_POSTOPS[activation]
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, attr, [], algorithm)


def position_bias(layout: AttentionLayout, distances: torch.Tensor, columns: torch.Tensor | None) -> AttentionLayout:
    """The layout with its relative-position bias as additive SDPA masks, built once per forward: one per length
    bucket (``[count | 1, heads, span, span]``), or one for the padded batch (``[B | 1, heads, S, S]``), padded keys
    folded in as ``finfo.min``. A mask is shared by a whole bucket (``[1, ...]``, no copy per sequence) when no key is
    padded and every sequence's columns count from 0 (no holes)."""
    if layout.buckets is not None:
        masks = []
        for b in layout.buckets:
            cols = columns[b.start:b.start + b.count * b.span].view(b.count, b.span)  # [count, span]
            masks.append(_bias_mask(distances, cols, b.key_mask))
        return dataclasses.replace(layout, bias=tuple(masks))
    if layout.packed:
        raise ValueError("the PyTorch backend runs packed tokens in length buckets (ops.packed_layout); "
                         "a relative-position bias needs that layout")
    cols = torch.arange(layout.seqlen, device=distances.device)[None]  # [1, S]
    return dataclasses.replace(layout, bias=_bias_mask(distances, cols, layout.key_mask))


def _bias_mask(distances: torch.Tensor, cols: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """columns ``[n, L]`` of the sequences of one SDPA call, key_mask ``[n, L]`` or None -> additive mask
    ``[n | 1, heads, L, L]`` in ``distances``' dtype."""
    span = distances.shape[1] // 2
    if key_mask is None and cols.shape[0] > 1 and bool((cols == cols[:1]).all()):
        cols = cols[:1]  # every sequence sees the same distances: one mask broadcast over the bucket
    rel = (cols[:, None, :] - cols[:, :, None]).clamp(-span, span) + span  # [n, L(query), L(key)]
    mask = distances[:, rel].transpose(0, 1)  # [heads, n, L, L] -> [n, heads, L, L]
    if key_mask is not None:
        mask = mask.expand(key_mask.shape[0], -1, -1, -1).masked_fill(~key_mask[:, None, None, :],
                                                                      torch.finfo(mask.dtype).min)
    return mask


def attention(q, k, v, layout: AttentionLayout, dropout=0.0) -> torch.Tensor:
    if layout.buckets is not None:
        return _attention_buckets(q, k, v, layout.buckets, layout.bias, dropout)
    if layout.packed:  # packed rows in their own order (the encoder itself runs them bucketed)
        return _attention_varlen(q, k, v, layout, dropout)
    b, s = layout.batch, layout.seqlen
    # [N, h, D] -> [B, h, S, D]
    q, k, v = (t.unflatten(0, (b, s)).transpose(1, 2) for t in (q, k, v))
    mask = None
    if layout.bias is not None:  # relative-position bias, padded keys already folded in
        mask = layout.bias.to(q.dtype)
    elif layout.key_mask is not None:
        # Additive mask as in HF's eager path: a fully masked row then softmaxes to uniform weights (finite).
        mask = torch.zeros(layout.key_mask.shape, dtype=q.dtype, device=q.device)
        mask.masked_fill_(~layout.key_mask, torch.finfo(q.dtype).min)
        mask = mask[:, None, None, :]  # [B, 1, 1, S]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return out.transpose(1, 2).flatten(0, 1)  # [B, h, S, D] -> [N, h, D]


def _attention_buckets(q, k, v, buckets: tuple[Bucket, ...], bias: tuple[torch.Tensor, ...] | None,
                       dropout: float) -> torch.Tensor:
    """Bucketed rows: one SDPA call per bucket on views of q, k, v (no copies in), padded keys masked (by the
    bucket's additive bias mask when the layout has a relative-position bias)."""
    outs = []
    for i, b in enumerate(buckets):
        # rows [start, start + count * span) -> [count, h, span, D] views
        qb, kb, vb = (t[b.start:b.start + b.count * b.span].unflatten(0, (b.count, b.span)).transpose(1, 2)
                      for t in (q, k, v))
        mask = None if b.key_mask is None else b.key_mask[:, None, None, :]  # [count, 1, 1, span]
        if bias is not None:
            mask = bias[i].to(qb.dtype)  # [count | 1, heads, span, span]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout)  # [count, h, span, D]
        outs.append(ob.transpose(1, 2).flatten(0, 1))  # [count * span, h, D]
    if len(outs) == 1:
        return outs[0]
    return torch.cat(outs) if outs else q.new_empty(q.shape)


def _attention_varlen(q, k, v, layout: AttentionLayout, dropout: float) -> torch.Tensor:
    """Packed layout on PyTorch: sequences grouped into length buckets, one padded SDPA call per bucket.

    A bucket pads its sequences to its longest one and masks the padded keys, so its work is at most
    :data:`BUCKET_WASTE` times the real ``sum(L_i^2)`` work of its sequences (except a lone sequence, which is
    never padded). The Python loop runs once per bucket, not once per sequence; on CPU the lengths are read from
    ``cu_seqlens`` for free, on CUDA that read is one host sync.
    """
    if layout.bias is not None:
        raise ValueError("a relative-position bias on packed rows runs in length buckets (ops.packed_layout)")
    cu = layout.cu_seqlens.tolist()
    lengths = [end - start for start, end in zip(cu[:-1], cu[1:])]
    out = torch.empty_like(q)
    for members in length_buckets(lengths):
        starts = torch.tensor([cu[i] for i in members], device=q.device)  # [n]
        lens = torch.tensor([lengths[i] for i in members], device=q.device)  # [n]
        span = lengths[members[0]]  # the longest in the bucket
        pos = torch.arange(span, device=q.device)
        real = pos[None, :] < lens[:, None]  # [n, span]
        # Padded slots read their sequence's first row: finite values, and masked as keys.
        rows = starts[:, None] + torch.where(real, pos[None, :], 0)  # [n, span] packed row per slot
        flat = rows.flatten()
        # [n*span, h, D] -> [n, h, span, D]
        qb, kb, vb = (t.index_select(0, flat).unflatten(0, (len(members), span)).transpose(1, 2) for t in (q, k, v))
        mask = None if bool(real.all()) else real[:, None, None, :]  # [n, 1, 1, span]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout)  # [n, h, span, D]
        ob = ob.transpose(1, 2).flatten(0, 1)  # [n*span, h, D]
        keep = real.flatten()
        out.index_copy_(0, flat[keep], ob[keep])
    return out


def linear_residual_layernorm(x, weight, bias, residual, ln_weight, ln_bias, eps, dropout=0.0) -> torch.Tensor:
    """On CPU the residual and bias are post-ops of the oneDNN GEMM (one pass over the output and one rounding
    instead of three); elsewhere the linear then :func:`bias_residual_layernorm`. With ``dropout``:
    LayerNorm(dropout(x @ weight.T + bias) + residual)."""
    if dropout > 0:
        return bias_residual_layernorm(_dropout(linear(x, weight, bias), dropout), None, residual, ln_weight, ln_bias,
                                       eps)
    if _mixed_bf16(residual, weight):
        # mixed bf16: the bf16 GEMM, then the residual sum and LayerNorm in float32
        h = torch.add(residual, linear(x, weight, bias))  # [N, H] float32
        return F.layer_norm(h, (h.shape[-1],), ln_weight, ln_bias, eps)
    if _onednn_linear_ok(x, weight) \
            and residual.dtype == x.dtype and residual.shape == (x.shape[0], weight.shape[0]):
        h = torch.ops.mkldnn._linear_pointwise.binary(x.contiguous(), residual.contiguous(), weight, bias, "add")
        return F.layer_norm(h, (h.shape[-1],), ln_weight, ln_bias, eps)
    return bias_residual_layernorm(linear(x, weight, None), bias, residual, ln_weight, ln_bias, eps)


def bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps) -> torch.Tensor:
    h = x + bias if bias is not None else x
    h = h + residual
    return F.layer_norm(h, (h.shape[-1],), weight, ln_bias, eps)
