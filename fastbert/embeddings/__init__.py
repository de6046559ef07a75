"""The embeddings wing: sentence-transformers' semantics on fastbert's tokenizer and encoder.

- :mod:`.folder` reads a sentence-transformers model folder (JSON only, no torch);
- :mod:`.batching` tokenizes texts and cuts them into length-sorted batches within a token budget (numpy only);
- :mod:`.head` and :mod:`.pooling`: pooling, Dense and Normalize after the transformer;
- :mod:`.sentence_encoder` holds :class:`SentenceEncoder` (``SentenceTransformer.encode``'s API);
- :mod:`.pool` / :mod:`.pool_worker`: worker processes on several devices; :mod:`.ray`: Ray Data;
- :mod:`.textfiles` defines a line of input and writes output files atomically (no torch).

Names are imported on first use, so the command line can read files and check paths before torch is imported.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "SentenceEncoder": "sentence_encoder",
    "TruncationError": "batching",
    "token_budget_batches": "batching",
    "DEFAULT_MAX_BATCH_TOKENS": "batching",
    "read_folder": "folder",
    "SentenceFolder": "folder",
    "POOLING_MODES": "folder",
    "default_model_path": "folder",
    "EncodePool": "pool",
}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .batching import DEFAULT_MAX_BATCH_TOKENS, TruncationError, token_budget_batches
    from .folder import POOLING_MODES, SentenceFolder, default_model_path, read_folder
    from .pool import EncodePool
    from .sentence_encoder import SentenceEncoder


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastbert.embeddings' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
