"""The op seam: every encoder operation goes through this module, and only this module picks an implementation.

Backends (one module each under :mod:`fastbert.encoder.backends`, with the same functions):

* ``"torch"`` (:mod:`~fastbert.encoder.backends.torch_ops`) -- plain PyTorch, oneDNN-fused on CPU. Differentiable;
  runs on any device. The reference path. Packed tokens run in length buckets.
* ``"triton"`` (:mod:`~fastbert.encoder.backends.triton_ops`) -- fastbert's fused Triton kernels. Differentiable
  through Triton backward kernels (GEMM + activation, attention, bias + residual + LayerNorm; tested through the
  interpreter and compiled for sm_80/sm_90, not yet run on a GPU); dropout fused into the kernels (hidden dropout
  into bias + residual + LayerNorm, probability dropout into attention, forward and backward; Philox masks from a
  per-call seed drawn from torch's RNG: same distribution as transformers, not the same masks; not in DeBERTa's
  disentangled kernel); no backward through MPNet's relative-position bias.
  Runs on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before
  ``triton`` is imported) -- the path CI uses to test the kernels.

:func:`resolve_backend` makes the choice once per forward: an explicit ``backend`` argument wins, then the
``FASTBERT_BACKEND`` environment variable (``torch`` | ``triton`` | ``auto``), then ``auto``, which takes Triton
on CUDA when it is importable and PyTorch otherwise. When gradients are needed or dropout (train mode) is on, Triton is
kept only when it was asked for by name (argument or ``FASTBERT_BACKEND=triton``) and, when gradients are needed, the
model has a backward on every op (``grad_missing`` None); otherwise, ``auto`` included, the torch path is taken (until
the backward and dropout kernels have run on a GPU, ``auto`` does not pick them), so autograd never silently loses its
graph.

``dropout`` arguments (train mode; 0 in eval) are probabilities applied where transformers applies them: after the
embedding LayerNorm, on the attention probabilities, and on a projection's output before its residual add. A precision
(the mixed bf16 mode) is a
property of the weights the model holds, chosen once at load (:mod:`fastbert.encoder.precision`); the backends
dispatch on it.

Shapes: token matrices are ``[N, H]`` where the N rows are either a padded batch flattened (``N = B * S``) or
packed real tokens (``N = total_tokens``); :class:`~fastbert.encoder.layout.AttentionLayout` says which.
"""
from __future__ import annotations

import functools
import os
from types import ModuleType

import torch

from .backends import torch_ops
from .layout import AttentionLayout, bucketed_layout

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
        from .backends import triton_ops  # noqa: F401  (imports fastbert.kernels)
    except ImportError as e:
        return f"fastbert.kernels cannot be imported: {e}"
    return None


def triton_available() -> bool:
    """True when the Triton backend can run (see :func:`triton_problem`)."""
    return triton_problem() is None


def resolve_backend(requested: str | None, device: torch.device, needs_grad: bool = False,
                    triton_missing: str | None = None, *, dropout: bool = False,
                    grad_missing: str | None = None) -> str:
    """Pick ``"torch"`` or ``"triton"`` for tensors on ``device``; see the module docstring for the rules.
    ``triton_missing``: why the model cannot run on the Triton kernels (a model's
    :attr:`~fastbert.encoder.config.BertConfig.triton_missing`): ``auto`` then takes PyTorch, and asking for
    ``triton`` is a ``ValueError`` saying why. ``dropout``: train mode's dropout is on. ``grad_missing``: why the
    model cannot be differentiated on the Triton kernels
    (:attr:`~fastbert.encoder.config.BertConfig.triton_grad_missing`)."""
    choice = requested if requested not in (None, "auto") else (os.environ.get("FASTBERT_BACKEND") or "auto")
    if choice not in BACKENDS:
        source = "backend argument" if requested not in (None, "auto") else "FASTBERT_BACKEND"
        raise ValueError(f"unknown {source} {choice!r}; expected one of {BACKENDS}")
    if dropout and choice != "triton":
        return "torch"  # Triton's dropout kernels only when asked for by name
    if needs_grad and (choice != "triton" or grad_missing is not None):
        return "torch"
    if triton_missing is not None:
        if choice == "triton":
            raise ValueError(f"backend 'triton' requested but {triton_missing}")
        return "torch"
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


def _backend(name: str) -> ModuleType:
    if name == "triton":
        from .backends import triton_ops

        return triton_ops
    return torch_ops


def packed_layout(batch: int, seqlen: int, cu_seqlens: torch.Tensor, backend: str) -> AttentionLayout:
    """The layout the encoder runs packed tokens (``cu_seqlens`` ``[batch + 1]`` int32) in: the packed rows
    themselves for Triton (its attention kernel reads ``cu_seqlens``), length buckets for PyTorch."""
    if backend == "triton":
        return AttentionLayout(batch=batch, seqlen=seqlen, cu_seqlens=cu_seqlens)
    return bucketed_layout(batch, seqlen, cu_seqlens)


# ----------------------------------------------------------------------------------------------------------------
# Ops
# ----------------------------------------------------------------------------------------------------------------

def embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings, token_type_embeddings,
          ln_weight, ln_bias, eps: float, *, inputs_embeds=None, dropout: float = 0.0,
          backend: str = "torch") -> torch.Tensor:
    """dropout(LayerNorm(word[input_ids] + token_type[token_type_ids] + position[position_ids])) ->
    ``[*ids.shape, E]``.

    ``inputs_embeds`` (``[..., E]``) replaces the word-embedding lookup when given. ``ln_weight`` None: no
    LayerNorm (XLNet).
    """
    return _backend(backend).embed(input_ids, token_type_ids, position_ids, word_embeddings, position_embeddings,
                                   token_type_embeddings, ln_weight, ln_bias, eps, inputs_embeds=inputs_embeds,
                                   dropout=dropout)


def linear(x: torch.Tensor, weight, bias: torch.Tensor | None, activation: str | None = None, *,
           backend: str = "torch") -> torch.Tensor:
    """act(x @ weight.T + bias): x ``[N, K]``, weight ``[M, K]`` (nn.Linear layout), bias
    ``[M]`` -> ``[N, M]``. ``activation``: None, ``"gelu"`` (exact, erf), ``"gelu_tanh"`` (HF's gelu_new) or
    ``"relu"``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    return _backend(backend).linear(x, weight, bias, activation)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout,
              projection: tuple | None = None, *, dropout: float = 0.0,
              backend: str = "torch") -> torch.Tensor:
    """dropout(softmax(q k^T / sqrt(D) + bias + mask)) v per sequence and head (``bias``: the layout's
    relative-position bias, if :func:`position_bias` gave it one; with :func:`disentangled`'s, DeBERTa's attention
    instead, and with :func:`xlnet_attention`'s XLNet's, which also read ``projection``).

    q, k, v: ``[N, heads, D]`` (any strides, e.g. views into a fused QKV projection) -> ``[N, heads, D]``.
    ``projection``: the layer's fused QKV weight ``[3H, H]`` and bias ``[3H]`` (or None), which DeBERTa's attention
    applies to its relative embeddings, and its relative-attention weights
    (:class:`~fastbert.encoder.model.RelativeWeights`, XLNet; else None); other layouts ignore it.
    Keys whose mask is 0 get no weight; a query row whose keys are all masked gets finite output.
    """
    return _backend(backend).attention(q, k, v, layout, dropout, projection)


def position_bias(layout: AttentionLayout, distances: torch.Tensor, columns: torch.Tensor | None, *,
                  backend: str = "torch") -> AttentionLayout:
    """``layout`` with a relative-position bias that every :func:`attention` call on it adds to the scaled scores:
    ``distances[h, clamp(col_j - col_i, -M, M) + M]`` for query row ``i``, key row ``j`` and head ``h``, where
    ``distances`` is ``[heads, 2M + 1]`` (:func:`fastbert.encoder.position_bias.distance_bias`) and ``col`` a
    token's column in the caller's row: ``columns`` ``[N]`` int64 for a packed layout, the row index within the
    sequence for a padded one (``columns`` None). Called once per forward; the backend prepares the bias its
    attention reads (PyTorch: additive masks per length bucket; Triton: the table and the columns, read in-kernel)."""
    if layout.packed and columns is None:
        raise ValueError("a packed layout needs the column of every token row for a relative-position bias")
    return _backend(backend).position_bias(layout, distances, columns)


def disentangled(layout: AttentionLayout, table: torch.Tensor, rows_of: torch.Tensor, columns: torch.Tensor | None,
                 head_dim: int, scale: float, c2p: bool, p2c: bool, *, backend: str = "torch") -> AttentionLayout:
    """``layout`` with DeBERTa's disentangled attention (:mod:`fastbert.encoder.position_bias`), which every
    :func:`attention` call on it then runs: ``softmax((q.k + c2p + p2c) * s / sqrt(D) + mask) v`` (``scale`` = s =
    ``1 / sqrt(1 + #scores)``), c2p/p2c (each when asked) from the layer's own query/key projections of the relative
    embeddings ``table`` ``[2 span, H]``, at row ``rows_of[c_i - c_j + W]`` (``[2W + 1]``) for query and key columns
    ``c_i``, ``c_j``; ``columns`` as in :func:`position_bias`. Called once per forward (PyTorch: the position row of
    every query/key pair per SDPA call; Triton: the rows the batch reaches, read by
    :mod:`fastbert.kernels.disentangled`)."""
    if layout.packed and columns is None:
        raise ValueError("a packed layout needs the column of every token row for DeBERTa's attention")
    return _backend(backend).disentangled(layout, table, rows_of, columns, head_dim, scale, c2p, p2c)


def xlnet_attention(layout: AttentionLayout, sinusoids: torch.Tensor, columns: torch.Tensor | None,
                    segments: torch.Tensor, *, backend: str = "torch") -> AttentionLayout:
    """``layout`` with XLNet's relative attention (:mod:`fastbert.encoder.position_bias`), which every
    :func:`attention` call on it then runs: ``softmax(((q + r_w).k + (q + r_r).(R W_r)[c_i - c_j] + (q + r_s).
    seg[s_ij]) / sqrt(D) + mask) v``, each query attending to the real keys and to itself. ``sinusoids``
    ``[2W + 1, H]``: the positional encoding of each distance in ``[-W, W]`` (W: the widest the batch holds);
    ``segments`` ``[N]`` int64: each row's segment id (token_type_ids); ``columns`` as in :func:`position_bias`. The
    layer's r_w, r_r, r_s, W_r and seg reach :func:`attention` in its ``projection`` (third item). Called once per
    forward. PyTorch only (the Triton backend refuses it)."""
    if layout.packed and columns is None:
        raise ValueError("a packed layout needs the column of every token row for XLNet's attention")
    return _backend(backend).xlnet_attention(layout, sinusoids, columns, segments)


def linear_residual_layernorm(x: torch.Tensor, weight, bias: torch.Tensor | None, residual: torch.Tensor,
                              ln_weight: torch.Tensor, ln_bias: torch.Tensor, eps: float, *, dropout: float = 0.0,
                              backend: str = "torch") -> torch.Tensor:
    """LayerNorm(dropout(x @ weight.T + bias) + residual): x ``[N, K]``, weight ``[M, K]``, residual ``[N, M]`` ->
    ``[N, M]``."""
    return _backend(backend).linear_residual_layernorm(x, weight, bias, residual, ln_weight, ln_bias, eps, dropout)


def bias_residual_layernorm(x: torch.Tensor, bias: torch.Tensor | None, residual: torch.Tensor, weight: torch.Tensor,
                            ln_bias: torch.Tensor, eps: float, *, backend: str = "torch") -> torch.Tensor:
    """LayerNorm(x + bias + residual) over the last dim; x, residual ``[N, H]``, bias/weight/ln_bias ``[H]``."""
    return _backend(backend).bias_residual_layernorm(x, bias, residual, weight, ln_bias, eps)
