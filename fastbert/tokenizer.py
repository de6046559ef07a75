"""Deprecated: the old path of ``fastbert.tokenizers`` (the WordPiece ``BertTokenizer``); removed in the next
release. Import from ``fastbert.tokenizers`` instead."""
import warnings

from .tokenizers.wordpiece import (LARGE_INTEGER, SPECIAL_TOKENS_ATTRIBUTES, VERY_LARGE_INTEGER,  # noqa: F401
                                   AddedToken, BatchEncoding, BertTokenizer, CharSpan, Encoding, InputTypeError,
                                   OutOfRangeError, TokenSpan, _read_vocab_txt, tokenizer_options)

# stacklevel 2: the line that imports this module (warnings skips importlib's frames)
warnings.warn("fastbert.tokenizer is deprecated and will be removed in the next release; import from "
              "fastbert.tokenizers", DeprecationWarning, stacklevel=2)
