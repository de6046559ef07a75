"""Deprecated: the old path of ``fastbert.tokenizers`` (the WordPiece ``BertTokenizer``); removed in the next
release. Import from ``fastbert.tokenizers`` instead."""
import warnings

from .tokenizers import (AddedToken, BatchEncoding, BertTokenizer, CharSpan, Encoding, InputTypeError,  # noqa: F401
                         OutOfRangeError, TokenSpan, tokenizer_options)
from .tokenizers.files import read_vocab_txt as _read_vocab_txt  # noqa: F401
from .tokenizers.options import LARGE_INTEGER, VERY_LARGE_INTEGER  # noqa: F401
from .tokenizers.special_tokens import SPECIAL_TOKENS_ATTRIBUTES  # noqa: F401

# stacklevel 2: the line that imports this module (warnings skips importlib's frames)
warnings.warn("fastbert.tokenizer is deprecated and will be removed in the next release; import from "
              "fastbert.tokenizers", DeprecationWarning, stacklevel=2)
