"""Sentence embeddings with sentence-transformers' semantics: folder reading, pooling, the ``SentenceEncoder`` API.

- :mod:`.folder` reads a sentence-transformers model folder (JSON only, no torch);
- :mod:`.pooling` pools token embeddings and applies Dense/Normalize;
- :mod:`.encoder` holds :class:`SentenceEncoder` (tokenize, batch by token budget, encode, pool);
- :mod:`.textfiles` defines a line of input and writes output files atomically (no torch).

Names are imported on first use, so the command line can read files and check paths before torch is imported.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "SentenceEncoder": "encoder",
    "TruncationError": "encoder",
    "TokenizedTexts": "encoder",
    "token_budget_batches": "encoder",
    "DEFAULT_MAX_BATCH_TOKENS": "encoder",
    "read_folder": "folder",
    "SentenceFolder": "folder",
    "POOLING_MODES": "folder",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .encoder import (DEFAULT_MAX_BATCH_TOKENS, SentenceEncoder, TokenizedTexts, TruncationError,
                          token_budget_batches)
    from .folder import POOLING_MODES, SentenceFolder, read_folder


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastbert.sentence' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
