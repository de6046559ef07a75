"""Deprecated: the old path of ``fastbert.tokenizers`` (``AutoTokenizer`` and the ``tokenizers``-backed families);
removed in the next release. Import from ``fastbert.tokenizers`` instead."""
import warnings

from .tokenizers.auto import (MODEL_TYPES, TOKENIZERS, AutoTokenizer, TokenizerKind, TokenizersTokenizer,  # noqa: F401
                              albert_pipeline, file_pipeline, roberta_pipeline, with_lowercase, xlm_roberta_pipeline)

# stacklevel 2: the line that imports this module (warnings skips importlib's frames)
warnings.warn("fastbert.auto_tokenizer is deprecated and will be removed in the next release; import from "
              "fastbert.tokenizers", DeprecationWarning, stacklevel=2)
