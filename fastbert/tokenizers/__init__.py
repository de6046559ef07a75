"""fastbert's tokenizers: the call signature and outputs of transformers' fast tokenizers, on fastbert's C++
WordPiece for BERT-style checkpoints and on the Rust ``tokenizers`` library for the other families.

>>> tok = fastbert.tokenizers.AutoTokenizer.from_pretrained("path/to/model-folder")     # or BertTokenizer
>>> batch = tok(["a text", "another"], padding=True, truncation=True, max_length=128, return_tensors="pt")

The path of a text, WordPiece (``BertTokenizer``)::

    __call__ (call.py) -> CallOptions, resolved by options.py; text/text_pair read as a batch (truncation.py)
      -> fastbert._C, C++, one unit per stage (csrc/): added tokens -> normalizer (clean text, CJK spacing,
         accents, case) -> pre-tokenizer (whitespace, punctuation) -> WordPiece -> truncation and overflowing
         windows -> [CLS] A [SEP] (B [SEP]) -> padding; a batch on several threads, without the GIL
      -> BatchEncoding (batch_encoding.py): the id arrays, and Encoding rows (encoding.py) read lazily from C++

The other families (``TokenizersTokenizer``, families.py) share every Python layer above; only encoding and
decoding a row go to a ``tokenizers.Tokenizer`` running transformers' pipeline for the family (pipelines.py).

Modules, in import order (each imports only those before it, and nothing of fastbert but ``fastbert._C``):

- errors.py, tensors.py: the error types; lists <-> numpy arrays / torch tensors.
- options.py: ``CallOptions`` and the resolution of padding/truncation strategies, lengths, output fields.
- encoding.py, batch_encoding.py: ``Encoding`` (one row and its token/word/char mappings), ``BatchEncoding``.
- truncation.py: pairs, truncation windows, overflowing rows.
- call.py, padding.py, decode.py, special_tokens.py: the units a tokenizer class composes (``__call__``/
  ``encode``/``tokenize``; ``pad``; ``decode``; the special tokens' ids).
- added_tokens.py, files.py: added tokens; reading and writing a tokenizer folder.
- wordpiece.py: ``BertTokenizer``, wrapping ``fastbert._C``.
- pipelines.py, families.py, auto.py: the families' pipelines as data, ``TokenizersTokenizer``, ``AutoTokenizer``.

Hugging Face's library is also named ``tokenizers``: this package imports it absolutely (``import tokenizers``)
and its own modules relatively, so the two never mix.
"""
from .added_tokens import AddedToken
from .auto import AutoTokenizer, with_lowercase
from .batch_encoding import BatchEncoding
from .encoding import CharSpan, Encoding, TokenSpan
from .errors import InputTypeError, OutOfRangeError
from .families import TokenizersTokenizer
from .files import tokenizer_options
from .wordpiece import BertTokenizer

__all__ = ["AddedToken", "AutoTokenizer", "BatchEncoding", "BertTokenizer", "CharSpan", "Encoding", "InputTypeError",
           "OutOfRangeError", "TokenSpan", "TokenizersTokenizer", "tokenizer_options", "with_lowercase"]
