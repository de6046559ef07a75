"""Deprecated: moved to :mod:`fastbert.embeddings.pool`."""
from ._moved import warn_moved
from .embeddings.pool import (EncodePool, encode_multi_process, load_tokenizer, parse_devices,  # noqa: F401
                              token_balanced_chunks, token_lengths)
from .embeddings.sentence_encoder import load_encoder  # noqa: F401

warn_moved("fastbert.parallel", "fastbert.embeddings.pool")
