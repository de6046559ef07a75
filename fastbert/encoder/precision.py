"""Reduced-precision encoders: int8 weights with dynamic per-token int8 activations, or bfloat16.

``fastbert.encoder.precision.quantize(model, "int8")`` replaces the weight of every encoder linear (Q/K/V, attention output,
FFN up and down; not the embeddings, LayerNorms or the pooler) with an :class:`Int8Weight`:

    W [M, K] float  ->  W_q [K, M] int8,  s_w [M] fp32   with  W[m, :] ~= s_w[m] * W_q[:, m]   (per output channel)

and each linear then runs

    s_x[n] = max_k |x[n, k]| / 127,   x_q = round(x / s_x)                                   (per token, at run time)
    y = act((x_q @ W_q) * s_x[:, None] * s_w[None, :] + bias)                                (int32 accumulation)

``torch._int_mm`` does the int8 GEMM (:mod:`fastbert.encoder.backends.int8`: oneDNN on CPU); everything else
(attention, LayerNorm, residuals, softmax) stays in float32.

``fastbert.encoder.precision.quantize(model, "bfloat16")`` is a mixed mode: the weights and biases of the encoder
linears become bfloat16 and each GEMM (oneDNN: AMX-BF16 or AVX512-BF16 where present) takes its input rounded to
bfloat16 and gives bfloat16; attention runs on those bf16 Q/K/V. The residual stream stays float32: every residual
sum and LayerNorm, the embeddings and the pooler run in float32. Keeping the stream in float32 halves the error of
casting the whole model (``dtype=torch.bfloat16``): measured on 400 real paragraphs against sentence-transformers
fp32, min / mean cosine 0.99995 / 0.99998 against 0.99989 / 0.99995.

``"auto"`` chooses by the CPU this runs on (:func:`fastbert.encoder.backends.cpu_features.reduced_precision_choice`): bfloat16 with AMX-BF16,
else the model stays float32 (no reduced mode was measured faster there).

Fidelity on real text against sentence-transformers fp32, held by ``tests/test_quantize.py``:

* bfloat16: minimum cosine >= 0.99990 and mean >= 0.99997 (measured: see above).
* int8: minimum cosine >= 0.98 and mean >= 0.995 (measured 0.991 / 0.997): it misses the bfloat16 bound, mostly
  through Q/K/V, whose inputs (LayerNorm outputs) carry outlier channels that one scale per token cannot
  resolve. It is offered for CPUs without bf16 instructions; on this machine it was no faster than float32.
"""
from __future__ import annotations

import torch
from torch import nn

from .backends.cpu_features import reduced_precision_choice
from .backends.int8 import Int8Weight, quantize_weight
from .model import BertModel

MODES = ("auto", "int8", "bfloat16")
LINEARS = ("qkv", "attn_out", "ffn_up", "ffn_down")  # the encoder linears a mode changes, in each layer


class Int8Linear(nn.Module):
    """Stands in for an ``nn.Linear`` of the encoder after :func:`quantize`: ``weight`` is an :class:`Int8Weight`
    (the op seam runs it with :func:`int8_linear`), ``bias`` stays float32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        q = quantize_weight(linear.weight)
        self.register_buffer("qweight", q.qweight)  # [K, M] int8
        self.register_buffer("scale", q.scale)  # [M]
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> Int8Weight:
        return Int8Weight(self.qweight, self.scale)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize(model, mode: str = "auto"):
    """Turn a ``fastbert.BertModel`` into a reduced-precision one, in place; returns the model.

    ``mode``: ``"int8"``, ``"bfloat16"`` or ``"auto"`` (bfloat16 on CPUs with AMX-BF16, else unchanged
    float32; see the module docstring). The model becomes inference-only (``requires_grad`` off). Raises
    ``TypeError`` for anything but a ``fastbert.BertModel`` and ``ValueError`` for an unknown mode or a model that
    is already quantized.
    """
    if not isinstance(model, BertModel):
        raise TypeError(f"fastbert.quantize expects a fastbert.BertModel, got {type(model).__name__}")
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
    if is_quantized(model):
        raise ValueError(f"the model is already quantized ({quantization_mode(model)})")
    if mode == "auto":
        mode = reduced_precision_choice()
    model.requires_grad_(False)
    if mode is None:
        return model
    model.float()
    if mode == "bfloat16":
        for layer in model.layers:
            for name in LINEARS:
                getattr(layer, name).to(torch.bfloat16)
        return model
    for layer in model.layers:
        for name in LINEARS:
            setattr(layer, name, Int8Linear(getattr(layer, name)))
    return model


def quantization_mode(model) -> str | None:
    """``"int8"``, ``"bfloat16"`` or None (a model as loaded, in whatever dtype)."""
    if any(isinstance(m, Int8Linear) for m in model.modules()):
        return "int8"
    if model.layers[0].qkv.weight.dtype == torch.bfloat16 and model.embeddings.word.weight.dtype == torch.float32:
        return "bfloat16"
    return None


def is_quantized(model) -> bool:
    return quantization_mode(model) is not None
