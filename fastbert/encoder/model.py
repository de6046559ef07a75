"""The BERT-family encoder, read in one sitting.

The math lives in two functions, :func:`encoder_layer` and :func:`bert_forward`, that take weights as arguments.
``fastbert.BertModel`` feeds them its own parameters; ``fastbert.optimize`` feeds them the parameters of an existing
``transformers`` model, so both run the very same code and no weights are copied. The families differ only in data
(:class:`~fastbert.encoder.config.BertConfig`): how position ids are counted, whether there are token types, an embedding
projection, and which layer weights each layer application uses (ALBERT shares them).

Every tensor operation goes through :mod:`fastbert.encoder.ops`; this module never chooses between Triton and PyTorch.

Output at padding positions: ``last_hidden_state`` rows whose ``attention_mask`` is 0 are finite but carry no
meaning; do not rely on them. On the padding-free path they are zeros; on the padded path with the PyTorch backend
they hold what the reference computes for a padding query, and with the Triton backend trailing padding rows
skip attention (their attention output is zero) while leading padding and holes are computed like the reference.
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import ops
from .config import BertConfig, DropoutRates
from .packing import TokenRows, packed_rows, padded_rows
from .position_bias import deberta_rows, deberta_table, distance_bias, xlnet_sinusoids
from .weights import load_pretrained


class EmbeddingWeights(NamedTuple):
    word: torch.Tensor  # [vocab, E]; E = embedding_dim (= H unless ALBERT/ELECTRA factorize it)
    position: torch.Tensor | None  # [max_positions, E]; None: no absolute positions (DeBERTa v3)
    token_type: torch.Tensor | None  # [type_vocab, E]; None: no token types (DistilBERT)
    norm_weight: torch.Tensor | None  # [E]; None: no embedding LayerNorm (XLNet)
    norm_bias: torch.Tensor | None  # [E]
    project_weight: torch.Tensor | None = None  # [H, E]: the projection to the encoder width, if any
    project_bias: torch.Tensor | None = None  # [H]


class RelativeWeights(NamedTuple):
    """XLNet's per-layer relative attention weights (:func:`fastbert.encoder.ops.xlnet_attention`)."""

    position_weight: torch.Tensor  # [H, H]: the positional encoding's key projection W_r (nn.Linear layout)
    content_bias: torch.Tensor  # [heads, D]: r_w_bias, added to the query for the content scores
    position_bias: torch.Tensor  # [heads, D]: r_r_bias, for the position scores
    segment_bias: torch.Tensor  # [heads, D]: r_s_bias, for the segment scores
    segments: torch.Tensor  # [2, heads, D]: seg_embed (same segment, different segment)


class LayerWeights(NamedTuple):
    qkv_weight: torch.Tensor  # [3H, H]: query, key, value stacked (nn.Linear layout)
    qkv_bias: torch.Tensor | None  # [3H]; None: no bias (XLNet)
    attn_out_weight: torch.Tensor  # [H, H]
    attn_out_bias: torch.Tensor | None  # [H]
    attn_norm_weight: torch.Tensor  # [H]
    attn_norm_bias: torch.Tensor  # [H]
    ffn_up_weight: torch.Tensor  # [I, H]
    ffn_up_bias: torch.Tensor  # [I]
    ffn_down_weight: torch.Tensor  # [H, I]
    ffn_down_bias: torch.Tensor  # [H]
    ffn_norm_weight: torch.Tensor  # [H]
    ffn_norm_bias: torch.Tensor  # [H]
    relative: RelativeWeights | None = None  # XLNet's relative attention weights; None: other families


@dataclass
class BertOutput:
    """Encoder output. Indexes like HF's ``BaseModelOutputWithPooling``: ``out[0]`` is ``last_hidden_state``,
    ``out[1]`` ``pooler_output`` (when the model has a pooler), then ``hidden_states`` when requested."""

    last_hidden_state: torch.Tensor  # [B, S, H]
    pooler_output: torch.Tensor | None = None  # [B, H]
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings output, then each layer's, [B, S, H] each
    # [T]: where the real tokens sit in the flattened [B * S] batch when a padded batch ran packed (the other rows of
    # last_hidden_state are zeros); None when it ran padded, and for the packed API. Not part of to_tuple().
    packed_indices: torch.Tensor | None = None

    def to_tuple(self) -> tuple:
        return tuple(v for v in (self.last_hidden_state, self.pooler_output, self.hidden_states) if v is not None)

    def __getitem__(self, index):
        if isinstance(index, str):
            return getattr(self, index)
        return self.to_tuple()[index]

    def __len__(self) -> int:
        return len(self.to_tuple())

    def __iter__(self):
        return iter(self.to_tuple())


# ----------------------------------------------------------------------------------------------------------------
# The math
# ----------------------------------------------------------------------------------------------------------------

_NO_DROPOUT = DropoutRates()


def encoder_layer(
    x: torch.Tensor, w: LayerWeights, layout: ops.AttentionLayout, config: BertConfig, backend: str,
    dropout: DropoutRates = _NO_DROPOUT,
) -> torch.Tensor:
    """One post-LayerNorm BERT layer on token rows ``x`` ``[N, H]`` -> ``[N, H]`` (``dropout``: train mode)."""
    n, hidden = x.shape
    qkv = ops.linear(x, w.qkv_weight, w.qkv_bias, backend=backend)  # [N, 3H]
    q, k, v = qkv.view(n, 3, config.num_attention_heads, config.head_dim).unbind(1)  # 3 x [N, heads, D] views
    # (the QKV projection goes along for DeBERTa's attention, which also projects its relative embeddings, and the
    # relative weights for XLNet's)
    ctx = ops.attention(q, k, v, layout, (w.qkv_weight, w.qkv_bias, w.relative), dropout=dropout.attention,
                        backend=backend).reshape(n, hidden)  # [N, H]
    x = ops.linear_residual_layernorm(
        ctx, w.attn_out_weight, w.attn_out_bias, x, w.attn_norm_weight, w.attn_norm_bias, config.layer_norm_eps,
        dropout=dropout.attention_output, backend=backend,
    )
    up = ops.linear(x, w.ffn_up_weight, w.ffn_up_bias, config.activation, backend=backend)  # [N, I]
    return ops.linear_residual_layernorm(
        up, w.ffn_down_weight, w.ffn_down_bias, x, w.ffn_norm_weight, w.ffn_norm_bias, config.layer_norm_eps,
        dropout=dropout.ffn_output, backend=backend,
    )


# Over 80 lines because it is the whole forward in order (inputs to rows, the per-forward attention extras of MPNet,
# DeBERTa and XLNet, embeddings, layers, pooler) and most of its length is the argument list and its docstring; splitting it
# would scatter the one place that reads top to bottom.
def bert_forward(
    config: BertConfig,
    embeddings: EmbeddingWeights,
    layers: Iterable[LayerWeights],
    pooler: tuple[torch.Tensor, torch.Tensor] | None,
    input_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    *,
    inputs_embeds: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
    max_seqlen: int | None = None,
    backend: str | None = None,
    validate: bool = True,
    output_hidden_states: bool = False,
    needs_grad: bool = False,
    padding_free: bool | None = None,
    relative_bias: torch.Tensor | None = None,
    dropout: DropoutRates | None = None,
    checkpoint: Callable | None = None,
    relative_embeddings: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None,
) -> BertOutput:
    """Embeddings (-> projection) -> encoder layers -> pooler.

    ``layers``: the weights of each layer application, in order (ALBERT passes its shared weights repeatedly).
    ``relative_bias``: MPNet's ``[buckets, heads]`` relative-position table, added in every layer's attention (the
    bias is prepared once here, :func:`fastbert.encoder.ops.position_bias`); None: no bias.
    ``dropout``: train mode's dropout rates (None: eval; nonzero rates run the PyTorch backend unless ``triton`` was
    asked for by name, see :func:`fastbert.encoder.ops.resolve_backend`). ``checkpoint``:
    gradient checkpointing, a function called as ``checkpoint(fn, x)`` (``torch.utils.checkpoint.checkpoint`` or
    transformers' ``_gradient_checkpointing_func``) that runs each layer application without keeping its
    activations; its dropout masks are replayed by the checkpoint's RNG-state preservation.
    ``relative_embeddings``: DeBERTa's relative embeddings ``[2 span, H]`` and their LayerNorm weight and bias (None
    without ``norm_rel_ebd``), for the disentangled attention of every layer (prepared once here,
    :func:`fastbert.encoder.ops.disentangled`).

    Padded input: ``input_ids`` ``[B, S]`` (or ``inputs_embeds`` ``[B, S, E]``) with an optional 0/1
    ``attention_mask``; outputs are ``[B, S, H]``. Packed input: ``input_ids`` ``[T]`` with ``cu_seqlens``
    ``[B + 1]`` and ``max_seqlen``; outputs are packed ``[T, H]``. Which token rows the layers run on (padded,
    packed, length buckets) is decided once, here, by :mod:`fastbert.encoder.packing`; see
    :func:`~fastbert.encoder.packing.padded_rows` for when a padded batch runs packed.
    """
    device = embeddings.word.device
    dropout = dropout or _NO_DROPOUT
    if dropout.active and config.train_dropout_missing:
        raise ValueError(config.train_dropout_missing)
    backend = ops.resolve_backend(backend, device, needs_grad, config.triton_missing, dropout=dropout.active,
                                  grad_missing=config.triton_grad_missing)
    if config.ignore_token_types and not config.type_vocab_size:  # DeBERTa without token types, as transformers
        token_type_ids = None
    if cu_seqlens is not None:
        if attention_mask is not None or inputs_embeds is not None:
            raise ValueError("packed input (cu_seqlens) takes no attention_mask or inputs_embeds")
        rows = packed_rows(config, input_ids, cu_seqlens, max_seqlen, token_type_ids, position_ids,
                           device=device, backend=backend, validate=validate)
    else:
        if max_seqlen is not None:
            raise ValueError("max_seqlen is only for packed input (with cu_seqlens)")
        rows = padded_rows(config, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                           device=device, dtype=embeddings.word.dtype, backend=backend, validate=validate,
                           padding_free=padding_free)

    layout = rows.layout
    if relative_bias is not None:  # one bias for every layer (MPNet)
        layout = ops.position_bias(layout, distance_bias(relative_bias), rows.columns, backend=backend)
    if config.disentangled is not None:  # DeBERTa: the relative embedding of every distance the batch holds
        table, norm_weight, norm_bias = relative_embeddings
        width = int(rows.columns.max()) if rows.columns is not None and rows.columns.numel() else layout.seqlen - 1
        norm = (norm_weight, norm_bias) if config.disentangled.norm else None
        table = deberta_table(table, norm, config.layer_norm_eps)  # [2 span, H]
        rows_of = deberta_rows(max(width, 0), config.disentangled).to(device)  # [2W + 1]: the table row per distance
        layout = ops.disentangled(layout, table, rows_of, rows.columns, config.head_dim, config.disentangled.scale,
                                  config.disentangled.c2p, config.disentangled.p2c, backend=backend)
    if config.xlnet is not None:  # XLNet: the positional encoding of every distance the batch holds, segment ids
        width = int(rows.columns.max()) if rows.columns is not None and rows.columns.numel() else layout.seqlen - 1
        sinusoids = xlnet_sinusoids(max(width, 0), config.hidden_size, config.xlnet.clamp_len, device)  # [2W + 1, H]
        layout = ops.xlnet_attention(layout, sinusoids, rows.columns, rows.token_type_ids.reshape(-1),
                                     backend=backend)
    x = embed_rows(rows, embeddings, config, backend, needs_grad, dropout.embeddings)  # [N, H]
    hidden_states = [x] if output_hidden_states else None
    layer = encoder_layer if checkpoint is None else functools.partial(_checkpointed, checkpoint)
    for w in layers:
        x = layer(x, w, layout, config, backend, dropout)
        if hidden_states is not None:
            hidden_states.append(x)

    pooled = None
    if pooler is not None:
        first = rows.first_tokens(x).contiguous()  # [B, H]: as HF pools (with left padding, a padding position)
        pooled = torch.tanh(ops.linear(first, pooler[0], pooler[1], backend=backend))  # [B, H]
        if rows.empty is not None:  # packed API: an empty sequence has no first token
            pooled = pooled.masked_fill(rows.empty[:, None], 0)
    return BertOutput(rows.finish(x), pooled,
                      None if hidden_states is None else tuple(rows.finish(h) for h in hidden_states),
                      rows.indices if rows.shape is not None else None)


def _checkpointed(checkpoint: Callable, x: torch.Tensor, *args) -> torch.Tensor:
    """:func:`encoder_layer` under gradient checkpointing: only ``x`` is a checkpoint input (the weights, layout
    and settings are closed over, so the gradients of the weights flow as for any other captured tensor)."""
    return checkpoint(functools.partial(_layer_of_x, args), x)


def _layer_of_x(args: tuple, x: torch.Tensor) -> torch.Tensor:
    return encoder_layer(x, *args)


def embed_rows(rows: TokenRows, w: EmbeddingWeights, config: BertConfig, backend: str, needs_grad: bool,
               dropout: float = 0.0):
    """The embeddings of the token rows ``[N, H]``: dropout(LayerNorm(word + token type + position)), then the
    projection to the encoder width where the family has one."""
    input_ids, inputs_embeds, position = rows.input_ids, rows.inputs_embeds, w.position
    token_type = w.token_type if w.token_type is not None else w.word.new_zeros(1, w.word.shape[1])  # adds nothing
    token_type_ids = rows.token_type_ids if w.token_type is not None else torch.zeros_like(rows.token_type_ids)
    if position is None:  # no absolute positions: a table of zeros, one row read for every position
        position = w.word.new_zeros(1, w.word.shape[1]).expand(config.max_position_embeddings, -1)
    if needs_grad and config.pad_token_id is not None:
        # transformers' nn.Embedding(padding_idx=pad_token_id): no gradient reaches the padding row of the word
        # table, nor (RoBERTa) of the position table.
        if input_ids is not None:
            inputs_embeds, input_ids = F.embedding(input_ids, w.word, padding_idx=config.pad_token_id), None
        if config.padding_aware_positions and w.position is not None:
            position = _without_grad_at(position, config.pad_token_id)
    x = ops.embed(
        input_ids, token_type_ids, rows.position_ids, w.word, position, token_type, w.norm_weight, w.norm_bias,
        config.layer_norm_eps, inputs_embeds=inputs_embeds, dropout=dropout, backend=backend,
    ).reshape(rows.rows, config.embedding_dim)  # [N, E]
    if w.project_weight is not None:
        x = ops.linear(x, w.project_weight, w.project_bias, backend=backend)  # [N, H]
    key_mask = rows.layout.key_mask
    if config.mask_embeddings and key_mask is not None and not rows.layout.packed:  # padded rows: zeros
        x = x * key_mask.reshape(-1, 1).to(x.dtype)  # [N, H]
    return x


def _without_grad_at(table: torch.Tensor, row: int) -> torch.Tensor:
    """``table`` ``[rows, E]`` with the same values, but no gradient flows to ``table[row]``."""
    return torch.cat([table[:row], table[row:row + 1].detach(), table[row + 1:]])


def needs_grad(module: nn.Module, *inputs: torch.Tensor | None) -> bool:
    """Whether this forward must stay differentiable: grad mode on and a parameter or float input requires grad."""
    if not torch.is_grad_enabled():
        return False
    if any(t is not None and t.requires_grad for t in inputs):
        return True
    return any(p.requires_grad for p in module.parameters())


def check_backend(backend: str | None) -> str | None:
    """Check a backend name when it is given: ``None``/``"auto"``, ``"torch"`` or ``"triton"`` (importable)."""
    if backend is not None and (not isinstance(backend, str) or backend not in ops.BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; expected None or one of {ops.BACKENDS}")
    if backend == "triton" and ops.triton_problem() is not None:
        raise ValueError(f"backend 'triton' requested but {ops.triton_problem()}")
    return backend


_WARNED_GRAD_FALLBACK: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _caller_stacklevel() -> int:
    """``warnings.warn``'s stacklevel for the first frame outside fastbert, torch and transformers (the user's)."""
    frame, level = sys._getframe(2), 2  # 1 is the caller of warn, i.e. our own function
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in ("fastbert", "torch",
                                                                                       "transformers"):
        frame, level = frame.f_back, level + 1
    return level if frame is not None else 2


def choose_backend(owner: nn.Module, backend: str | None, device: torch.device, grad: bool,
                   dropout: bool = False, triton_missing: str | None = None, grad_missing: str | None = None) -> str:
    """The backend one forward of ``owner`` runs (:func:`fastbert.encoder.ops.resolve_backend`). When autograd alone keeps
    it off Triton, warn once per ``owner`` and name the fix; when train mode's dropout (``dropout``) keeps it off
    Triton (``backend`` not ``'triton'`` by name, or no backward), no warning (fine-tuning)."""
    chosen = ops.resolve_backend(backend, device, triton_missing=triton_missing)
    if dropout and ops.resolve_backend(backend, device, grad, triton_missing, dropout=True,
                                       grad_missing=grad_missing) == "torch":
        return "torch"
    if grad and chosen != "torch" and ops.resolve_backend(backend, device, True, triton_missing,
                                                          grad_missing=grad_missing) == "torch":
        if owner not in _WARNED_GRAD_FALLBACK:
            _WARNED_GRAD_FALLBACK.add(owner)
            warnings.warn(
                f"fastbert: {type(owner).__name__} runs on the slower PyTorch path instead of {chosen!r} because "
                "autograd is recording (grad mode is on and parameters or inputs_embeds require grad)"
                f"{'; ' + grad_missing if grad_missing else ''}. For "
                "inference, call it under torch.inference_mode() or torch.no_grad() (or model.requires_grad_(False)). "
                "This warning is shown once per model.",
                UserWarning,
                stacklevel=_caller_stacklevel(),
            )
        return "torch"
    return chosen


# ----------------------------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------------------------

class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        e = config.embedding_dim
        self.word = nn.Embedding(config.vocab_size, e)
        self.position = nn.Embedding(config.max_position_embeddings, e) if config.absolute_positions else None
        self.token_type = nn.Embedding(config.type_vocab_size, e) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(e, eps=config.layer_norm_eps) if config.embedding_norm else None
        self.project = nn.Linear(e, config.hidden_size) if config.embedding_projection else None

    def weights(self) -> EmbeddingWeights:
        return EmbeddingWeights(
            self.word.weight, self.position.weight if self.position is not None else None,
            self.token_type.weight if self.token_type is not None else None,
            *((self.norm.weight, self.norm.bias) if self.norm is not None else (None, None)),
            *((self.project.weight, self.project.bias) if self.project else ()),
        )


class RelativeAttention(nn.Module):
    """XLNet's per-layer relative attention weights (:class:`RelativeWeights`)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        h, heads, d = config.hidden_size, config.num_attention_heads, config.head_dim
        self.position = nn.Linear(h, h, bias=False)
        self.content_bias = nn.Parameter(torch.zeros(heads, d))
        self.position_bias = nn.Parameter(torch.zeros(heads, d))
        self.segment_bias = nn.Parameter(torch.zeros(heads, d))
        self.segments = nn.Parameter(torch.zeros(2, heads, d))

    def weights(self) -> RelativeWeights:
        return RelativeWeights(self.position.weight, self.content_bias, self.position_bias, self.segment_bias,
                               self.segments)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        h, i = config.hidden_size, config.intermediate_size
        self.qkv = nn.Linear(h, 3 * h, bias=config.attention_bias)
        self.attn_out = nn.Linear(h, h, bias=config.attention_bias)
        self.attn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.ffn_up = nn.Linear(h, i)
        self.ffn_down = nn.Linear(i, h)
        self.ffn_norm = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.relative = RelativeAttention(config) if config.xlnet is not None else None  # XLNet

    def weights(self) -> LayerWeights:
        return LayerWeights(
            self.qkv.weight, self.qkv.bias, self.attn_out.weight, self.attn_out.bias,
            self.attn_norm.weight, self.attn_norm.bias, self.ffn_up.weight, self.ffn_up.bias,
            self.ffn_down.weight, self.ffn_down.bias, self.ffn_norm.weight, self.ffn_norm.bias,
            self.relative.weights() if self.relative is not None else None,
        )


class RelativeEmbeddings(nn.Module):
    """DeBERTa's relative embeddings ``[2 span, H]``, shared by every layer, and their LayerNorm (``norm_rel_ebd``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        spec = config.disentangled
        self.embeddings = nn.Embedding(2 * spec.span, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if spec.norm else None

    def weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return (self.embeddings.weight, *((self.norm.weight, self.norm.bias) if self.norm is not None else (None,
                                                                                                            None)))


class BertModel(nn.Module):
    """A BERT-family encoder (embeddings, post-LN layers, optional pooler) running on fastbert's op seam.

    ``backend``: ``None``/``"auto"``, ``"torch"`` or ``"triton"`` (see :mod:`fastbert.encoder.ops`); settable later, and
    checked when set. With autograd recording (grad mode on and parameters requiring grad) a forward runs the
    differentiable PyTorch path and warns once; ``from_pretrained`` models do not require grad.
    ``validate_inputs``: check token-id ranges and mask values before running (one host sync per call); turn it off
    for CUDA-graph capture once inputs are known good. Shape and dtype checks always run.
    ``padding_free``: pack real tokens when the batch has padding (``None``: on for the Triton backend and on CPU).
    There is no dropout: this is an inference encoder (``train()`` changes nothing).

    Every family in :data:`fastbert.encoder.families.FAMILIES` runs here (``config.model_type``); ``layers`` holds each set
    of layer weights once (ALBERT: one per shared layer), applied in ``config.layer_schedule`` order.
    """

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, backend: str | None = None):
        super().__init__()
        self.config = config
        self.backend = backend
        self.validate_inputs = True
        self.padding_free: bool | None = None
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_layer_weights))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        buckets = config.relative_attention_buckets  # MPNet: one [buckets, heads] table shared by every layer
        self.relative_bias = nn.Embedding(buckets, config.num_attention_heads) if buckets else None
        self.relative = RelativeEmbeddings(config) if config.disentangled is not None else None  # DeBERTa

    def forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        *,
        cu_seqlens: torch.Tensor | None = None,
        max_seqlen: int | None = None,
        output_hidden_states: bool = False,
    ) -> BertOutput:
        """Padded: input_ids ``[B, S]`` int, attention_mask ``[B, S]`` of 0/1 (any pattern) -> ``[B, S, H]``.

        Packed (padding-free, for callers that hold unpadded tokens): input_ids ``[T]`` with ``cu_seqlens``
        ``[B + 1]`` (int32 offsets, ``cu_seqlens[0] = 0``, ``cu_seqlens[-1] = T``) and ``max_seqlen`` (the longest
        sequence) -> ``last_hidden_state`` ``[T, H]``; token_type_ids / position_ids are ``[T]`` if given.
        """
        pooler = (self.pooler.weight, self.pooler.bias) if self.pooler is not None else None
        grad = needs_grad(self)
        weights = [layer.weights() for layer in self.layers]
        return bert_forward(
            self.config,
            self.embeddings.weights(),
            [weights[i] for i in self.config.layer_schedule],  # ALBERT: the same weights, applied repeatedly
            pooler,
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            cu_seqlens=cu_seqlens,
            max_seqlen=max_seqlen,
            backend=choose_backend(self, self.backend, self.embeddings.word.weight.device, grad,
                                   triton_missing=self.config.triton_missing,
                                   grad_missing=self.config.triton_grad_missing),
            validate=self.validate_inputs,
            output_hidden_states=output_hidden_states,
            needs_grad=grad,
            padding_free=self.padding_free,
            relative_bias=self.relative_bias.weight if self.relative_bias is not None else None,
            relative_embeddings=self.relative.weights() if self.relative is not None else None,
        )

    @property
    def backend(self) -> str | None:
        return self._backend

    @backend.setter
    def backend(self, value: str | None) -> None:
        self._backend = check_backend(value)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        dtype: torch.dtype | str = torch.float32,
        device: torch.device | str = "cpu",
        backend: str | None = None,
        add_pooling_layer: bool | None = None,
        requires_grad: bool = False,
        allow_nonfinite: bool = False,
    ) -> "BertModel":
        """Load a local Hugging Face checkpoint directory of any supported family (``config.json`` +
        ``model.safetensors``, its sharded index, or ``pytorch_model.bin``; the base model's or a task head's)
        strictly, in eval mode.

        ``add_pooling_layer=None`` keeps the pooler if the checkpoint has one. The parameters do not require grad
        (an inference model, so the Triton path runs even with autograd on) unless ``requires_grad=True``.
        Integer or bool weights are cast to ``dtype`` as transformers does; weights holding NaN or Inf are refused
        (``ValueError`` naming the file and key) unless ``allow_nonfinite=True``. A missing, truncated or corrupt
        file is an ``OSError`` naming it.
        """
        return load_pretrained(cls, path, dtype=dtype, device=device, backend=backend,
                               add_pooling_layer=add_pooling_layer, requires_grad=requires_grad,
                               allow_nonfinite=allow_nonfinite)


class AutoModel:
    """The encoder of any supported family, picked by the ``model_type`` in its ``config.json`` as transformers'
    ``AutoModel`` does: ``bert``, ``roberta``, ``xlm-roberta``, ``distilbert``, ``electra``, ``albert``, ``mpnet``,
    ``deberta-v2`` (DeBERTa v2 and v3; no pooler), ``xlnet`` (PyTorch backend only, no pooler)."""

    @staticmethod
    def from_pretrained(path: str | os.PathLike, **kwargs) -> BertModel:
        """:meth:`BertModel.from_pretrained` (same arguments); returns a :class:`BertModel` configured for the
        checkpoint's family, whose ``forward(input_ids, attention_mask, token_type_ids, position_ids)`` gives
        ``last_hidden_state`` (and ``pooler_output`` when the checkpoint has a pooler).

        ``position_ids`` follow transformers >= 5.25 whatever transformers is installed: for BERT, RoBERTa,
        XLM-RoBERTa and ELECTRA, positions that restart (a step other than +1) in a batch given without an
        ``attention_mask`` split the row into packed sequences that attend only within themselves (the format of
        transformers' ``DataCollatorWithFlattening``); the pooler still reads each row's first token. With an
        ``attention_mask``, or for DistilBERT and ALBERT, each row is one sequence. (``fastbert.optimize`` follows
        the installed transformers instead: older versions attend across the whole row.)"""
        return BertModel.from_pretrained(path, **kwargs)


__all__: Sequence[str] = ["AutoModel", "BertModel", "BertOutput", "bert_forward", "encoder_layer", "LayerWeights",
                          "EmbeddingWeights", "RelativeWeights"]
