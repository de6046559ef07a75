"""int8 linears: a weight quantized per output channel, activations per token at run time, one int8 GEMM.

    W [M, K] float  ->  W_q [K, M] int8,  s_w [M] fp32   with  W[m, :] ~= s_w[m] * W_q[:, m]   (per output channel)
    s_x[n] = max_k |x[n, k]| / 127,   x_q = round(x / s_x)                                   (per token, at run time)
    y = (x_q @ W_q) * s_x[:, None] * s_w[None, :] + bias                                     (int32 accumulation)

``torch._int_mm`` does the int8 GEMM (oneDNN on CPU). Symmetric scales and no zero points keep the arithmetic exact
up to the rounding of ``x`` and ``W``. :mod:`fastbert.encoder.precision` turns a model's linears into these.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class Int8Weight(NamedTuple):
    """A linear's weight quantized per output channel: ``qweight`` ``[K, M]`` int8 (the transposed layout
    ``torch._int_mm`` takes), ``scale`` ``[M]`` float32."""

    qweight: torch.Tensor
    scale: torch.Tensor

    @property
    def shape(self) -> torch.Size:  # the float weight's ``[M, K]``, as the model's shape checks expect
        return torch.Size((self.qweight.shape[1], self.qweight.shape[0]))

    @property
    def device(self) -> torch.device:
        return self.qweight.device


def quantize_weight(weight: torch.Tensor) -> Int8Weight:
    """weight ``[M, K]`` float -> :class:`Int8Weight` (symmetric, per output channel)."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [M]
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)  # [M, K]
    return Int8Weight(q.t().contiguous(), scale)


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x ``[N, K]`` float -> (x_q ``[N, K]`` int8, s_x ``[N, 1]`` float32), one symmetric scale per row."""
    scale = x.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127.0)  # [N, 1]
    return torch.round(x / scale).to(torch.int8), scale


def int8_linear(x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None) -> torch.Tensor:
    """x ``[N, K]`` float32 -> ``x @ W.T + bias`` ``[N, M]`` float32 through an int8 GEMM (see the module doc)."""
    x_q, s_x = quantize_rows(x)
    acc = torch._int_mm(x_q, weight.qweight)  # [N, M] int32
    y = acc * (s_x * weight.scale)  # [N, M] float32
    return y.add_(bias) if bias is not None else y
