"""Deprecated: moved to :mod:`fastbert.embeddings`."""
from .._moved import warn_moved
from ..embeddings.batching import DEFAULT_MAX_BATCH_TOKENS, TruncationError, token_budget_batches  # noqa: F401
from ..embeddings.folder import POOLING_MODES, SentenceFolder, read_folder  # noqa: F401
from ..embeddings.sentence_encoder import SentenceEncoder  # noqa: F401

warn_moved("fastbert.sentence", "fastbert.embeddings")
