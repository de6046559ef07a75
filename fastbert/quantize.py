"""Deprecated: moved to :mod:`fastbert.encoder.precision`."""
from ._moved import warn_moved
from .encoder.precision import MODES, is_quantized, quantization_mode, quantize  # noqa: F401

warn_moved("fastbert.quantize", "fastbert.encoder.precision")
