"""The op seam: every encoder operation goes through this module, and only this module picks an implementation.

Backends:

* ``"torch"`` -- plain PyTorch. Differentiable; runs on any device. The reference path. Packed tokens run in
  length buckets (:func:`packed_layout`): attention is one SDPA call per bucket on views of the token rows. On
  CPU, when no autograd graph is needed, each linear is one oneDNN primitive with the bias, activation or
  residual fused as post-ops, and :class:`fastbert.quantize.Int8Weight` weights run an int8 GEMM
  (``torch._int_mm``).
* ``"triton"`` -- fastbert's fused Triton kernels (``fastbert.kernels``). Inference only. Runs on CUDA tensors, or
  on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before ``triton`` is imported) -- the
  path CI uses to test the kernels.

:func:`resolve_backend` makes the choice once per forward: an explicit ``backend`` argument wins, then the
``FASTBERT_BACKEND`` environment variable (``torch`` | ``triton`` | ``auto``), then ``auto``, which takes Triton
on CUDA when it is importable and PyTorch otherwise. When gradients are needed the differentiable torch path is
taken whatever was asked for, so autograd never silently loses its graph.

Shapes: token matrices are ``[N, H]`` where the N rows are either a padded batch flattened (``N = B * S``) or
packed real tokens (``N = total_tokens``); :class:`AttentionLayout` says which.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .quantize import Int8Weight, int8_linear

BACKENDS = ("auto", "torch", "triton")
ACTIVATIONS = (None, "gelu", "gelu_tanh", "relu")


# ----------------------------------------------------------------------------------------------------------------
# Backend choice
# ----------------------------------------------------------------------------------------------------------------

def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


MIN_TRITON = (3, 6)  # the oldest triton the kernels are checked against (benchmarks/results/static/)


@functools.lru_cache(maxsize=None)
def triton_problem() -> str | None:
    """Why the Triton backend cannot run here (triton missing, older than :data:`MIN_TRITON`, or fastbert's
    kernels failing to import), or None when it can."""
    try:
        import triton
    except ImportError:
        return "triton is not installed (CUDA builds of PyTorch bring it)"
    version = tuple(int(part) for part in triton.__version__.split(".")[:2] if part.isdigit())
    if version < MIN_TRITON:
        return f"triton {triton.__version__} is older than {'.'.join(map(str, MIN_TRITON))}, the oldest fastbert supports"
    try:
        from . import kernels  # noqa: F401
    except ImportError as e:
        return f"fastbert.kernels cannot be imported: {e}"
    return None


def triton_available() -> bool:
    """True when the Triton backend can run (see :func:`triton_problem`)."""
    return triton_problem() is None


def resolve_backend(requested: str | None, device: torch.device, needs_grad: bool = False) -> str:
    """Pick ``"torch"`` or ``"triton"`` for tensors on ``device``; see the module docstring for the rules."""
    choice = requested if requested not in (None, "auto") else (os.environ.get("FASTBERT_BACKEND") or "auto")
    if choice not in BACKENDS:
        source = "backend argument" if requested not in (None, "auto") else "FASTBERT_BACKEND"
        raise ValueError(f"unknown {source} {choice!r}; expected one of {BACKENDS}")
    if needs_grad:
        return "torch"  # the Triton kernels are forward-only
    device = torch.device(device)
    if choice == "auto":
        if device.type != "cuda":
            return "torch"
        if triton_problem() is not None:
            _warn_no_triton(triton_problem())
            return "torch"
        return "triton"
    if choice == "triton":
        if triton_problem() is not None:
            raise ValueError(f"backend 'triton' requested but {triton_problem()}")
        if device.type != "cuda" and not (device.type == "cpu" and _interpreting()):
            raise ValueError(
                f"backend 'triton' needs CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got device {device}"
            )
    return choice


@functools.lru_cache(maxsize=None)
def _warn_no_triton(reason: str) -> None:
    """Once per process: CUDA tensors run on the (slower, correct) PyTorch path."""
    import warnings

    warnings.warn(f"fastbert: running the PyTorch path on CUDA because {reason}", RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------------------------------------------
# Layout of the token rows
# ----------------------------------------------------------------------------------------------------------------

class Bucket(NamedTuple):
    """Sequences of similar length stored as one padded block of token rows: rows ``start : start + count * span``
    are ``[count, span]`` (sequence-major), each sequence's tokens first, then padding rows."""

    start: int
    count: int
    span: int  # the longest member's length
    key_mask: torch.Tensor | None  # [count, span] bool (True = real token); None when nothing is padded


@dataclass(frozen=True)
class AttentionLayout:
    """How the rows of a token matrix ``[N, H]`` group into sequences.

    Padded: ``N = batch * seqlen``; ``key_mask`` is ``[batch, seqlen]`` bool (True = real token) or None when
    nothing is padded. Packed: rows are the real tokens of all sequences back to back, sequence ``i`` in rows
    ``cu_seqlens[i]:cu_seqlens[i+1]`` (int32, ``[batch + 1]``), ``seqlen`` is the longest sequence.
    Bucketed (from :func:`packed_layout`): the packed tokens ``[T]`` (``cu_seqlens``) rearranged into
    ``buckets``; row ``r`` holds packed token ``slots[r]`` (``[N]`` int64; a padding row repeats its sequence's
    first token) and packed token ``t`` sits in row ``token_rows[t]`` (``[T]`` int64).
    """

    batch: int
    seqlen: int
    key_mask: torch.Tensor | None = None
    cu_seqlens: torch.Tensor | None = None
    buckets: tuple[Bucket, ...] | None = None
    slots: torch.Tensor | None = None
    token_rows: torch.Tensor | None = None

    @property
    def packed(self) -> bool:
        return self.cu_seqlens is not None

    def tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[N, ...]`` of this layout -> packed tokens ``[T, ...]`` (the rows themselves unless bucketed)."""
        return rows if self.token_rows is None else rows.index_select(0, self.token_rows)


def packed_layout(batch: int, seqlen: int, cu_seqlens: torch.Tensor, backend: str) -> AttentionLayout:
    """The layout the encoder runs packed tokens (``cu_seqlens`` ``[batch + 1]`` int32) in.

    Triton: the packed rows themselves (its attention kernel reads ``cu_seqlens``). PyTorch: length buckets
    (:func:`_length_buckets`), so that every layer's attention is one SDPA call per bucket on views of the
    rows, with no per-layer gather or scatter; the price is at most :data:`BUCKET_WASTE` times the real token
    rows through the GEMMs. Reading the lengths costs one host sync on CUDA (none on CPU).
    """
    if backend == "triton":
        return AttentionLayout(batch=batch, seqlen=seqlen, cu_seqlens=cu_seqlens)
    cu = cu_seqlens.tolist()
    lengths = [end - start for start, end in zip(cu[:-1], cu[1:])]
    device = cu_seqlens.device
    buckets, slots, start = [], [], 0
    for members in _length_buckets(lengths):
        span = lengths[members[0]]
        starts = torch.tensor([cu[i] for i in members], device=device)  # [n]
        lens = torch.tensor([lengths[i] for i in members], device=device)  # [n]
        pos = torch.arange(span, device=device)
        real = pos[None, :] < lens[:, None]  # [n, span]
        slots.append((starts[:, None] + torch.where(real, pos[None, :], 0)).flatten())  # [n * span]
        buckets.append(Bucket(start, len(members), span, None if bool(real.all()) else real))
        start += len(members) * span
    slots = torch.cat(slots) if slots else torch.zeros(0, dtype=torch.long, device=device)  # [N]
    token_rows = torch.empty(cu[-1], dtype=torch.long, device=device)  # [T]
    if buckets:
        real = torch.cat([torch.ones(b.count * b.span, dtype=torch.bool, device=device) if b.key_mask is None
                          else b.key_mask.flatten() for b in buckets])  # [N]
        rows = torch.nonzero(real).flatten()
        token_rows[slots[rows]] = rows
    return AttentionLayout(batch=batch, seqlen=seqlen, cu_seqlens=cu_seqlens, buckets=tuple(buckets),
                           slots=slots, token_rows=token_rows)


# ----------------------------------------------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------------------------------------------

def embed(
    input_ids: torch.Tensor | None,
    token_type_ids: torch.Tensor,
    position_ids: torch.Tensor,
    word_embeddings: torch.Tensor,
    position_embeddings: torch.Tensor,
    token_type_embeddings: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    inputs_embeds: torch.Tensor | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """LayerNorm(word[input_ids] + token_type[token_type_ids] + position[position_ids]) -> ``[*ids.shape, H]``.

    ``inputs_embeds`` (``[..., H]``) replaces the word-embedding lookup when given.
    """
    if backend == "triton" and inputs_embeds is None:
        from .kernels import embedding

        return embedding.embed_layernorm(
            input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
            token_type_embeddings, ln_weight, ln_bias, eps,
        )
    words = F.embedding(input_ids, word_embeddings) if inputs_embeds is None else inputs_embeds
    x = words + F.embedding(token_type_ids, token_type_embeddings)
    x = x + F.embedding(position_ids, position_embeddings)
    return F.layer_norm(x, (x.shape[-1],), ln_weight, ln_bias, eps)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str | None = None,
    *,
    backend: str = "torch",
) -> torch.Tensor:
    """act(x @ weight.T + bias): x ``[N, K]``, weight ``[M, K]`` (nn.Linear layout), bias ``[M]`` -> ``[N, M]``.

    ``activation``: None, ``"gelu"`` (exact, erf), ``"gelu_tanh"`` (HF's gelu_new) or ``"relu"``.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if isinstance(weight, Int8Weight):
        if backend == "triton":
            raise ValueError("int8-quantized weights run on the torch backend, not 'triton'")
        return _activate(int8_linear(x, weight, bias), activation)
    if backend == "triton":
        from .kernels import gemm

        return gemm.linear(x, weight, bias, activation)
    if _onednn_linear_ok(x, weight):
        return _onednn_linear(x, weight, bias, activation)
    return _activate(F.linear(x, weight, bias), activation)


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


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: AttentionLayout,
    *,
    backend: str = "torch",
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v per sequence and head.

    q, k, v: ``[N, heads, D]`` (any strides, e.g. views into a fused QKV projection) -> ``[N, heads, D]``.
    Keys whose mask is 0 get no weight; a query row whose keys are all masked gets finite output.
    """
    if backend == "triton":
        from .kernels import attention as attn

        if layout.packed:
            return attn.attention_varlen(q, k, v, layout.cu_seqlens, layout.seqlen)
        b, s = layout.batch, layout.seqlen
        out = attn.attention(
            q.unflatten(0, (b, s)), k.unflatten(0, (b, s)), v.unflatten(0, (b, s)), layout.key_mask
        )
        return out.flatten(0, 1)
    if layout.buckets is not None:
        return _attention_buckets(q, k, v, layout.buckets)
    if layout.packed:
        return _attention_varlen_torch(q, k, v, layout)
    b, s = layout.batch, layout.seqlen
    # [N, h, D] -> [B, h, S, D]
    q, k, v = (t.unflatten(0, (b, s)).transpose(1, 2) for t in (q, k, v))
    mask = None
    if layout.key_mask is not None:
        # Additive mask as in HF's eager path: a fully masked row then softmaxes to uniform weights (finite).
        mask = torch.zeros(layout.key_mask.shape, dtype=q.dtype, device=q.device)
        mask.masked_fill_(~layout.key_mask, torch.finfo(q.dtype).min)
        mask = mask[:, None, None, :]  # [B, 1, 1, S]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out.transpose(1, 2).flatten(0, 1)  # [B, h, S, D] -> [N, h, D]


def _attention_buckets(q, k, v, buckets: tuple[Bucket, ...]) -> torch.Tensor:
    """Bucketed rows: one SDPA call per bucket on views of q, k, v (no copies in), padded keys masked."""
    outs = []
    for b in buckets:
        # rows [start, start + count * span) -> [count, h, span, D] views
        qb, kb, vb = (t[b.start:b.start + b.count * b.span].unflatten(0, (b.count, b.span)).transpose(1, 2)
                      for t in (q, k, v))
        mask = None if b.key_mask is None else b.key_mask[:, None, None, :]  # [count, 1, 1, span]
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)  # [count, h, span, D]
        outs.append(ob.transpose(1, 2).flatten(0, 1))  # [count * span, h, D]
    if len(outs) == 1:
        return outs[0]
    return torch.cat(outs) if outs else q.new_empty(q.shape)


def _attention_varlen_torch(q, k, v, layout: AttentionLayout) -> torch.Tensor:
    """Packed layout on PyTorch: sequences grouped into length buckets, one padded SDPA call per bucket.

    A bucket pads its sequences to its longest one and masks the padded keys, so its work is at most
    :data:`BUCKET_WASTE` times the real ``sum(L_i^2)`` work of its sequences (except a lone sequence, which is
    never padded). The Python loop runs once per bucket, not once per sequence; on CPU the lengths are read from
    ``cu_seqlens`` for free, on CUDA that read is one host sync.
    """
    cu = layout.cu_seqlens.tolist()
    lengths = [end - start for start, end in zip(cu[:-1], cu[1:])]
    out = torch.empty_like(q)
    for members in _length_buckets(lengths):
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
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)  # [n, h, span, D]
        ob = ob.transpose(1, 2).flatten(0, 1)  # [n*span, h, D]
        keep = real.flatten()
        out.index_copy_(0, flat[keep], ob[keep])
    return out


BUCKET_WASTE = 1.25  # padded attention work / real attention work allowed in one bucket


def _length_buckets(lengths: list[int]) -> list[list[int]]:
    """Sequence indices grouped for padded attention, longest first; empty sequences are left out.

    Greedy over lengths sorted descending: a sequence joins the current bucket while
    ``count * longest^2 <= BUCKET_WASTE * sum(L_i^2)`` still holds with it.
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: -lengths[i])
    buckets: list[list[int]] = []
    work = 0
    for i in order:
        n = lengths[i]
        if buckets:
            top = lengths[buckets[-1][0]]
            if (len(buckets[-1]) + 1) * top * top <= BUCKET_WASTE * (work + n * n):
                buckets[-1].append(i)
                work += n * n
                continue
        buckets.append([i])
        work = n * n
    return buckets


def linear_residual_layernorm(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    ln_weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    backend: str = "torch",
) -> torch.Tensor:
    """LayerNorm(x @ weight.T + bias + residual): x ``[N, K]``, weight ``[M, K]``, residual ``[N, M]`` -> ``[N, M]``.

    On CPU the residual and bias are post-ops of the oneDNN GEMM (one pass over the output and one rounding
    instead of three); elsewhere the linear then :func:`bias_residual_layernorm`.
    """
    if not isinstance(weight, Int8Weight) and backend != "triton" and _onednn_linear_ok(x, weight) \
            and residual.dtype == x.dtype and residual.shape == (x.shape[0], weight.shape[0]):
        h = torch.ops.mkldnn._linear_pointwise.binary(x.contiguous(), residual.contiguous(), weight, bias, "add")
        return F.layer_norm(h, (h.shape[-1],), ln_weight, ln_bias, eps)
    h = linear(x, weight, None, backend=backend)
    return bias_residual_layernorm(h, bias, residual, ln_weight, ln_bias, eps, backend=backend)


def bias_residual_layernorm(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    weight: torch.Tensor,
    ln_bias: torch.Tensor,
    eps: float,
    *,
    backend: str = "torch",
) -> torch.Tensor:
    """LayerNorm(x + bias + residual) over the last dim; x, residual ``[N, H]``, bias/weight/ln_bias ``[H]``."""
    if backend == "triton":
        from .kernels import layernorm

        return layernorm.bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps)
    h = x + bias if bias is not None else x
    h = h + residual
    return F.layer_norm(h, (h.shape[-1],), weight, ln_bias, eps)
