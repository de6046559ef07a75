"""Deprecated: moved to :mod:`fastbert.encoder.packing`."""
from ._moved import warn_moved
from .encoder.packing import (pack_indices, pad_input, packed_positions, padded_positions,  # noqa: F401
                              positions_in_sequence, unpad_input)

warn_moved("fastbert.padding", "fastbert.encoder.packing")
