"""fastbert's tokenizers, with the call signature and outputs of transformers' fast tokenizers."""
from .auto import AutoTokenizer, TokenizersTokenizer, with_lowercase
from .wordpiece import (AddedToken, BatchEncoding, BertTokenizer, CharSpan, Encoding, InputTypeError,
                        OutOfRangeError, TokenSpan, tokenizer_options)

__all__ = ["AddedToken", "AutoTokenizer", "BatchEncoding", "BertTokenizer", "CharSpan", "Encoding", "InputTypeError",
           "OutOfRangeError", "TokenSpan", "TokenizersTokenizer", "tokenizer_options", "with_lowercase"]
