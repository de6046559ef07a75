"""Reduced precision on CPU: the mixed bfloat16 mode.

``fastbert.encoder.precision.quantize(model, "bfloat16")`` is a mixed mode: the weights and biases of the encoder
linears become bfloat16 and each GEMM (oneDNN: AMX-BF16 or AVX512-BF16 where present) takes its input rounded to
bfloat16 and gives bfloat16; attention runs on those bf16 Q/K/V. The residual stream stays float32: every residual
sum and LayerNorm, the embeddings and the pooler run in float32. Keeping the stream in float32 halves the error of
casting the whole model (``dtype=torch.bfloat16``): measured on 400 real paragraphs against sentence-transformers
fp32, min / mean cosine 0.99995 / 0.99998 against 0.99989 / 0.99995.

``"auto"`` chooses by the CPU this runs on (:func:`fastbert.encoder.backends.cpu_features.reduced_precision_choice`):
bfloat16 with AMX-BF16, else the model stays float32.

Fidelity on real text against sentence-transformers fp32, held by ``tests/test_quantize.py``: minimum cosine >= 0.9999
and mean >= 0.99997.

There is no int8 mode any more (it was ``quantize="int8"`` up to this version; asking for it is a ``ValueError``
that says why). Measured on two machines it was no faster than bfloat16 and less faithful:

* Sapphire Rapids class Xeon (AMX): ``torch._int_mm`` does not reach AMX-INT8; the mode ran 1.06x
  sentence-transformers float32 (bfloat16: 3.6x) at min / mean cosine 0.98188 / 0.99603.
* AMD EPYC with AVX512-VNNI/BF16, no AMX (one thread, 4,096 tokens): oneDNN's u8s8 GEMM
  (``torch.ops.onednn.qlinear_pointwise``) alone is 2x the bf16 GEMM, but quantizing each token's activations and
  rescaling the output take the gain back: FFN up 27.1 ms vs bf16 28.3, FFN down 35.3 vs 36.1, attention output
  9.6 vs 6.2. Per-token int8 everywhere reaches min / mean cosine 0.992 / 0.997 (bound 0.995 / 0.999); the bound
  is met only with Q/K/V kept in bf16 and asymmetric activations (0.9973 / 0.9993).

A fused quantize-GEMM-dequantize kernel could change that; until one exists, bfloat16 is the fast mode.

Not built yet: an exact mode from bf16 products (split each float32 operand into bf16 pieces, sum the cross
products in float32). Its accuracy was measured by running the same pieces through float32 GEMMs (the products of
bf16 pieces are exact in float32), on 400 real paragraphs against sentence-transformers fp32, where fastbert's float32
path itself differs by at most 2.2e-7:

* bf16x3 (x = xh + xl, w = wh + wl; xh wh + xh wl + xl wh): min cosine 0.99999993, the same as float32, but max abs
  difference 2.4e-6, 11x float32's own (adding xl wl changes nothing: the pieces' residue dominates).
* bf16x6 (three pieces each; the six products of order <= 2): max abs 1.9e-7, within float32's own.

So the exact bound needs six bf16 GEMMs per float32 one: faster than float32 only where bf16 runs well over 6x the
float32 rate, i.e. AMX (8-15x measured on a Sapphire Rapids class Xeon), not AVX512-BF16 (2.6x on an AMD EPYC).
PyTorch can drive it without new C++: float32 tensors holding bf16-exact pieces, concatenated along K, in one GEMM
under ``torch.backends.mkldnn.matmul.fp32_precision = "bf16"`` (oneDNN's bf16 fpmath mode converts them exactly and
accumulates in float32). On CPUs without AMX oneDNN ignores that mode (``ONEDNN_VERBOSE`` shows
``brg_matmul:avx512_core`` with ``attr-fpmath:bf16``), so its speed can only be measured on an AMX machine.
"""
from __future__ import annotations

import torch

from .backends.cpu_features import reduced_precision_choice
from .model import BertModel

MODES = ("auto", "bfloat16")
LINEARS = ("qkv", "attn_out", "ffn_up", "ffn_down")  # the encoder linears a mode changes, in each layer
REMOVED = {"int8": "quantize mode 'int8' was removed: it was no faster than 'bfloat16' and less faithful (min cosine "
                   "0.98-0.99 against >= 0.9999); use 'bfloat16' (see fastbert.encoder.precision)"}


def check_mode(mode) -> str:
    """``mode`` if it is one of :data:`MODES`; a ``ValueError`` naming the choices (or why a mode is gone)."""
    if mode in REMOVED:
        raise ValueError(REMOVED[mode])
    if mode not in MODES:
        raise ValueError(f"unknown quantize mode {mode!r}; expected one of {MODES}")
    return mode


def quantize(model, mode: str = "auto"):
    """Turn a ``fastbert.BertModel`` into a reduced-precision one, in place; returns the model.

    ``mode``: ``"bfloat16"`` or ``"auto"`` (bfloat16 on CPUs with AMX-BF16, else unchanged float32; see the module
    docstring). The model becomes inference-only (``requires_grad`` off). Raises ``TypeError`` for anything but a
    ``fastbert.BertModel`` and ``ValueError`` for an unknown mode or a model that is already quantized.
    """
    if not isinstance(model, BertModel):
        raise TypeError(f"fastbert.quantize expects a fastbert.BertModel, got {type(model).__name__}")
    check_mode(mode)
    if is_quantized(model):
        raise ValueError(f"the model is already quantized ({quantization_mode(model)})")
    if mode == "auto":
        mode = reduced_precision_choice()
    model.requires_grad_(False)
    if mode is None:
        return model
    model.float()
    for layer in model.layers:
        for name in LINEARS:
            getattr(layer, name).to(torch.bfloat16)
    return model


def quantization_mode(model) -> str | None:
    """``"bfloat16"`` (the mixed mode) or None (a model as loaded, in whatever dtype)."""
    if model.layers[0].qkv.weight.dtype == torch.bfloat16 and model.embeddings.word.weight.dtype == torch.float32:
        return "bfloat16"
    return None


def is_quantized(model) -> bool:
    return quantization_mode(model) is not None
