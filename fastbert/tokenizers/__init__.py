"""fastbert's tokenizers, with the call signature and outputs of transformers' fast tokenizers."""
from .added_tokens import AddedToken
from .auto import AutoTokenizer, TokenizersTokenizer, with_lowercase
from .batch_encoding import BatchEncoding
from .encoding import CharSpan, Encoding, TokenSpan
from .errors import InputTypeError, OutOfRangeError
from .files import tokenizer_options
from .wordpiece import BertTokenizer

__all__ = ["AddedToken", "AutoTokenizer", "BatchEncoding", "BertTokenizer", "CharSpan", "Encoding", "InputTypeError",
           "OutOfRangeError", "TokenSpan", "TokenizersTokenizer", "tokenizer_options", "with_lowercase"]
