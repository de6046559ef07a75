"""Deprecated: the old path of ``fastbert.tokenizers`` (``AutoTokenizer`` and the ``tokenizers``-backed families);
removed in the next release. Import from ``fastbert.tokenizers`` instead."""
import warnings

from .tokenizers import AutoTokenizer, TokenizersTokenizer, with_lowercase  # noqa: F401
from .tokenizers.pipelines import (MODEL_TYPES, TOKENIZERS, TokenizerKind, albert_pipeline,  # noqa: F401
                                   file_pipeline, roberta_pipeline, xlm_roberta_pipeline)

# stacklevel 2: the line that imports this module (warnings skips importlib's frames)
warnings.warn("fastbert.auto_tokenizer is deprecated and will be removed in the next release; import from "
              "fastbert.tokenizers", DeprecationWarning, stacklevel=2)
