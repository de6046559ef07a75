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
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..layout import AttentionLayout, Bucket, length_buckets


def embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings, token_type_embeddings,
          ln_weight, ln_bias, eps, *, inputs_embeds=None, dropout=0.0) -> torch.Tensor:
    words = F.embedding(input_ids, word_embeddings) if inputs_embeds is None else inputs_embeds
    x = words + F.embedding(token_type_ids, token_type_embeddings)
    x = x + F.embedding(position_ids, position_embeddings)
    if ln_weight is not None:  # XLNet has no embedding LayerNorm
        x = F.layer_norm(x, (x.shape[-1],), ln_weight, ln_bias, eps)
    return _dropout(x, dropout)


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


class _Group(NamedTuple):
    """One SDPA call's sequences under DeBERTa's disentangled attention (a length bucket, or the padded batch)."""

    index: torch.Tensor  # [n | 1, 1, L, L] int64: the position row of each query/key pair, within rows [lo, hi]
    index_t: torch.Tensor  # the same, transposed and contiguous: [n | 1, 1, L(key), L(query)] (p2c's gather)
    lo: int  # the group's position rows: of the per-distance rows, or (on_table) of the table itself
    hi: int
    on_table: bool  # long sequences read the table's rows (fewer than their distances), short ones per-distance rows
    key_mask: torch.Tensor | None  # [n, L] bool (True = real token); None when nothing is padded


class _Disentangled(NamedTuple):
    """What every layer's disentangled attention reads, prepared once per forward (:func:`disentangled`)."""

    distances: torch.Tensor | None  # [2R + 1, H]: the relative embedding of each distance in [-R, R]; None: unused
    table: torch.Tensor  # [2 span, H]: the relative embeddings
    scale: float  # 1 / sqrt(D (1 + number of position scores))
    c2p: bool
    p2c: bool
    groups: tuple[_Group, ...]  # one per length bucket, or one for the padded batch


def disentangled(layout: AttentionLayout, table: torch.Tensor, rows_of: torch.Tensor, columns: torch.Tensor | None,
                 head_dim: int, scale: float, c2p: bool, p2c: bool) -> AttentionLayout:
    """The layout with DeBERTa's disentangled attention (see :func:`fastbert.encoder.ops.disentangled`): per SDPA
    call, the position row of every query/key pair. A group whose distances (``2 reach + 1``) are fewer than the
    table's rows reads one row per distance (``distances``, shared by such groups); the others read the table."""
    width, rows = rows_of.shape[0] // 2, table.shape[0]

    def group(cols: torch.Tensor, key_mask: torch.Tensor | None) -> tuple:  # cols [n, L] int64
        steps = torch.arange(cols.shape[1], device=cols.device)  # [L]
        same = cols == cols[:, :1] + steps  # [n, L]: no holes (real pairs' distances are i - j)
        if bool((same if key_mask is None else same | ~key_mask).all()):
            cols = steps[None]  # one index for the group (padding slots' distances are masked anyway)
        elif key_mask is None and cols.shape[0] > 1 and bool((cols == cols[:1]).all()):
            cols = cols[:1]  # the same distances for every sequence: one index broadcast over the group
        reach = int(cols.max() - cols.min())
        distance = cols[:, :, None] - cols[:, None, :]  # [n, L(query), L(key)]: query minus key column
        if 2 * reach + 1 < rows:
            return distance + reach, reach, key_mask
        return rows_of[distance + width], None, key_mask

    if layout.buckets is not None:
        parts = [group(columns[b.start:b.start + b.count * b.span].view(b.count, b.span), b.key_mask)
                 for b in layout.buckets]
    elif layout.packed:
        raise ValueError("the PyTorch backend runs packed tokens in length buckets (ops.packed_layout); "
                         "DeBERTa's disentangled attention needs that layout")
    else:
        parts = [group(torch.arange(layout.seqlen, device=table.device)[None], layout.key_mask)]
    reaches = [reach for _, reach, _ in parts if reach is not None]
    most = max(reaches, default=None)
    distances = None if most is None else table[rows_of[width - most:width + most + 1]]  # [2R + 1, H]
    groups = tuple(_Group(index[:, None], index.transpose(1, 2).contiguous()[:, None],
                          *((0, rows - 1, True) if reach is None else (most - reach, most + reach, False)), key_mask)
                   for index, reach, key_mask in parts)
    return dataclasses.replace(layout, bias=_Disentangled(distances, table, scale / head_dim ** 0.5, c2p, p2c,
                                                          groups))


def _position_projections(rows: torch.Tensor, weight, bias, heads: int, head_dim: int, dtype) -> tuple:
    """Relative embedding rows ``[R, H]`` -> the layer's position queries and keys, 2 x ``[R, heads, D]``."""
    hidden = heads * head_dim
    pos = linear(rows.to(dtype), weight[:2 * hidden], bias[:2 * hidden])  # [R, 2H]
    return tuple(t.to(dtype) for t in pos.unflatten(1, (2, heads, head_dim)).unbind(1))  # (mixed bf16: to dtype)


_MASK_BUDGET = 1 << 20  # elements of the largest temporary of one SDPA call's mask (4 MiB in float32)


def _disentangled_mask(qb, kb, pos_q, pos_k, index, index_t, d: _Disentangled) -> torch.Tensor:
    """``c2p + p2c`` ``[n, heads, L(query), L(key)]`` (contiguous, built in place) from queries / keys ``[n, heads, L,
    D]`` and the group's scaled position queries / keys ``[rows, heads, D]``: each token's scores against the rows,
    gathered per query/key pair by ``index`` ``[n | 1, 1, L, L]`` (``index_t``: transposed)."""
    shape = qb.shape[:3] + qb.shape[2:3]
    mask = None
    if d.c2p:
        c2p = qb @ pos_k.permute(1, 2, 0)  # [n, heads, L(query), rows]
        mask = c2p.gather(-1, index.expand(shape))
    if d.p2c:
        p2c = kb @ pos_q.permute(1, 2, 0)  # [n, heads, L(key), rows]
        p2c = p2c.gather(-1, index_t.expand(shape)).transpose(-1, -2)  # [n, heads, L(query), L(key)]
        mask = p2c.contiguous() if mask is None else mask.add_(p2c)
    return qb.new_zeros(shape) if mask is None else mask


def _disentangled_attention(q, k, v, layout: AttentionLayout, projection, dropout: float) -> torch.Tensor:
    """Disentangled attention, one SDPA call per chunk of a group's sequences (:data:`_MASK_BUDGET`): the content
    scores scaled by ``d.scale``, plus the additive mask ``(c2p + p2c) * d.scale`` (the scale folded into the
    position rows) with padded keys, and every key of a padding query, at ``finfo.min``.
    The layer's query and key projections (``projection``: its fused QKV weight and bias) turn the relative
    embedding rows into the position queries Qr and keys Kr ``[rows, heads, D]``."""
    d: _Disentangled = layout.bias
    heads, head_dim = q.shape[1], q.shape[2]
    weight, bias = projection[:2]
    sources = {}  # on_table -> (Qr, Kr), projected once per layer for the groups that read them
    if layout.buckets is not None:
        blocks = [(b.start, b.count, b.span) for b in layout.buckets]
    else:
        blocks = [(0, layout.batch, layout.seqlen)]
    outs = []
    for (start, count, span), g in zip(blocks, d.groups):
        if g.on_table not in sources:
            sources[g.on_table] = _position_projections(d.table if g.on_table else d.distances, weight, bias, heads,
                                                        head_dim, q.dtype)
        pos_q, pos_k = (t[g.lo:g.hi + 1] * d.scale for t in sources[g.on_table])  # [rows, heads, D], scaled
        # sequences [first, first + chunk) of the group per SDPA call: every temporary stays small (under glibc's
        # mmap threshold, so no page faults on each fresh [L, L] buffer: 6 x 490 tokens' masks + SDPA, 1.5x faster)
        chunk = max(1, _MASK_BUDGET // (heads * span * max(span, pos_q.shape[0])))
        for first in range(0, count, chunk):
            n = min(chunk, count - first)
            rows = slice(start + first * span, start + (first + n) * span)
            # [n * span, heads, D] -> [n, heads, span, D] views
            qb, kb, vb = (t[rows].unflatten(0, (n, span)).transpose(1, 2) for t in (q, k, v))
            index, index_t, key_mask = (None if t is None else t[first:first + n] if t.shape[0] > 1 else t
                                        for t in (g.index, g.index_t, g.key_mask))
            mask = _disentangled_mask(qb, kb, pos_q, pos_k, index, index_t, d)
            if key_mask is not None:  # as transformers' DeBERTa: a padding query attends to no key (uniform weights)
                attend = key_mask[:, None, :] & key_mask[:, :, None]  # [n, L(query), L(key)]
                mask.masked_fill_(~attend[:, None], torch.finfo(qb.dtype).min)
                if qb.requires_grad:
                    # a zero query: its scores are the mask alone, so no gradient reaches it (transformers masks by
                    # masked_fill, which stops the gradient of the scores it replaces); the forward is the same
                    qb = qb * key_mask[:, None, :, None].to(qb.dtype)
            ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, dropout_p=dropout,
                                                scale=d.scale)  # [n, heads, L, D]
            outs.append(ob.transpose(1, 2).flatten(0, 1))  # [n * L, heads, D]
    if len(outs) == 1:
        return outs[0]
    return torch.cat(outs) if outs else q.new_empty(q.shape)


class _XLNetGroup(NamedTuple):
    """One SDPA call's sequences under XLNet's relative attention (a length bucket, or the padded batch)."""

    index: torch.Tensor  # [n | 1, 1, L, L] int64: each query/key pair's row of the group's positional encoding
    lo: int  # the group's rows of the batch's positional encoding (distances -reach .. reach)
    hi: int
    differ: torch.Tensor  # [n, 1, L, L] bool: the query's and key's segments differ
    attend: torch.Tensor | None  # [n, 1, L, L] bool: the real keys and the query itself; None when nothing is padded


class _XLNet(NamedTuple):
    """What every layer's XLNet attention reads, prepared once per forward (:func:`xlnet_attention`)."""

    sinusoids: torch.Tensor  # [2R + 1, H]: the positional encoding of each distance in [-R, R]
    groups: tuple[_XLNetGroup, ...]  # one per length bucket, or one for the padded batch


def xlnet_attention(layout: AttentionLayout, sinusoids: torch.Tensor, columns: torch.Tensor | None,
                    segments: torch.Tensor) -> AttentionLayout:
    """The layout with XLNet's relative attention (see :func:`fastbert.encoder.ops.xlnet_attention`): per SDPA call,
    the distance row of every query/key pair, whether their segments differ, and the keys each query attends to."""
    width = sinusoids.shape[0] // 2

    def group(cols: torch.Tensor, segs: torch.Tensor, key_mask: torch.Tensor | None) -> _XLNetGroup:
        # cols, segs [n, L] int64; key_mask [n, L] bool or None
        reach = int(cols.max() - cols.min())
        shared = cols[:1] if key_mask is None and bool((cols == cols[:1]).all()) else cols  # one index for all
        index = (shared[:, :, None] - shared[:, None, :] + reach)[:, None]  # [n | 1, 1, L(query), L(key)]
        differ = (segs[:, :, None] != segs[:, None, :])[:, None]  # [n, 1, L, L]
        attend = None
        if key_mask is not None:
            eye = torch.eye(cols.shape[1], dtype=torch.bool, device=cols.device)
            attend = (key_mask[:, None, :] | eye)[:, None]  # [n, 1, L, L]: XLNet's query always sees itself
        return _XLNetGroup(index, width - reach, width + reach, differ, attend)

    if layout.buckets is not None:
        groups = tuple(group(columns[b.start:b.start + b.count * b.span].view(b.count, b.span),
                             segments[b.start:b.start + b.count * b.span].view(b.count, b.span), b.key_mask)
                       for b in layout.buckets)
    elif layout.packed:
        raise ValueError("the PyTorch backend runs packed tokens in length buckets (ops.packed_layout); "
                         "XLNet's attention needs that layout")
    else:
        cols = torch.arange(layout.seqlen, device=segments.device)[None].expand(layout.batch, -1)  # [B, S]
        groups = (group(cols, segments.view(layout.batch, layout.seqlen), layout.key_mask),)
    return dataclasses.replace(layout, bias=_XLNet(sinusoids, groups))


def _xlnet_attention(q, k, v, layout: AttentionLayout, projection, dropout: float) -> torch.Tensor:
    """XLNet's attention, one SDPA call per group: the content scores of ``q + r_w``, plus the additive mask
    ``((q + r_r).Kr[distance] + (q + r_s).seg[differ]) / sqrt(D)`` with the keys a query does not attend to at
    ``finfo.min``. The layer's position projection turns the positional encoding into Kr ``[rows, heads, D]``."""
    d: _XLNet = layout.bias
    w = projection[2]  # the layer's RelativeWeights
    heads, head_dim = q.shape[1], q.shape[2]
    scale = head_dim ** -0.5
    pos_k = linear(d.sinusoids.to(w.position_weight.dtype), w.position_weight, None)  # [2R + 1, H]
    pos_k = pos_k.to(q.dtype).unflatten(1, (heads, head_dim))  # [2R + 1, heads, D] (mixed bf16: q's dtype)
    content, position, segment = (b[:, None, :].to(q.dtype) for b in (w.content_bias, w.position_bias,
                                                                      w.segment_bias))  # [heads, 1, D] each
    segments = w.segments.to(q.dtype).permute(1, 2, 0)  # [heads, D, 2]
    if layout.buckets is not None:
        blocks = [(b.start, b.count, b.span) for b in layout.buckets]
    else:
        blocks = [(0, layout.batch, layout.seqlen)]
    outs = []
    for (start, count, span), g in zip(blocks, d.groups):
        # rows [start, start + count * span) -> [count, heads, span, D] views
        qb, kb, vb = (t[start:start + count * span].unflatten(0, (count, span)).transpose(1, 2) for t in (q, k, v))
        shape = (count, heads, span, span)
        bd = (qb + position) @ pos_k[g.lo:g.hi + 1].permute(1, 2, 0)  # [count, heads, L(query), rows]
        mask = bd.gather(-1, g.index.expand(shape))  # [count, heads, L(query), L(key)]
        ef = (qb + segment) @ segments  # [count, heads, L(query), 2]: same segment, different segment
        mask = mask.add_(torch.where(g.differ, ef[..., 1:], ef[..., :1])).mul_(scale)
        if g.attend is not None:
            mask = mask.masked_fill_(~g.attend, torch.finfo(qb.dtype).min)
        ob = F.scaled_dot_product_attention(qb + content, kb, vb, attn_mask=mask, dropout_p=dropout,
                                            scale=scale)  # [count, heads, L, D]
        outs.append(ob.transpose(1, 2).flatten(0, 1))  # [count * L, heads, D]
    if len(outs) == 1:
        return outs[0]
    return torch.cat(outs) if outs else q.new_empty(q.shape)


def attention(q, k, v, layout: AttentionLayout, dropout=0.0, projection=None) -> torch.Tensor:
    if isinstance(layout.bias, _Disentangled):
        return _disentangled_attention(q, k, v, layout, projection, dropout)
    if isinstance(layout.bias, _XLNet):
        return _xlnet_attention(q, k, v, layout, projection, dropout)
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
