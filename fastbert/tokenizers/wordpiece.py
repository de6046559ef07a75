"""A fast BERT WordPiece tokenizer with the call conventions and outputs of Hugging Face's ``BertTokenizerFast``.

>>> tok = fastbert.BertTokenizer.from_pretrained("path/to/checkpoint")     # vocab.txt / tokenizer.json
>>> batch = tok(["a sentence", "another one"], padding=True, truncation=True, max_length=128, return_tensors="np")
>>> batch["input_ids"].shape, batch.attention_mask.dtype, batch.word_ids(0)

The work happens in the C++ extension ``fastbert._C`` (added tokens -> BERT normalizer -> pre-tokenizer ->
WordPiece -> truncation with overflowing windows -> [CLS] A [SEP] (B [SEP]) -> padding), which releases the GIL and
encodes a batch on ``num_threads`` threads. This module only resolves the Hugging Face call conventions (argument
defaults, single input vs batch, pre-tokenized input, tensor types), reads checkpoint files, and offers
``BatchEncoding``'s token/word/character mappings on top of the rows the extension keeps.

Where transformers' own behaviour is an accident (a Rust panic, an integer wrap-around, a crash in a helper), this
tokenizer raises a ``ValueError`` instead; see ``BertTokenizer.__call__``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

try:
    from .. import _C
except ImportError as e:  # e.g. a source checkout whose extension was never built
    import importlib.util

    built = importlib.util.find_spec("fastbert._C") is not None
    raise ImportError(
        ("fastbert's C++ extension fastbert._C fails to load: " + str(e)) if built else
        "fastbert's C++ extension fastbert._C is not built. In a source checkout run `pip install -e .` (needs a "
        "C++17 compiler); otherwise reinstall fastbert with pip."
    ) from e

# transformers' "no limit" value of model_max_length.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

# transformers' named special tokens, in its order.
SPECIAL_TOKENS_ATTRIBUTES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                             "mask_token")
_BERT_SPECIALS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first",
               "only_second": "only_second", "do_not_truncate": "do_not_truncate"}
_PADDING = {True: "longest", "longest": "longest", "max_length": "max_length", "do_not_pad": "do_not_pad"}
_DEFAULT_FIELDS = ["input_ids", "token_type_ids", "attention_mask"]
# Per-token clean-up of the WordPiece decoder (tokenizers' `decoders.WordPiece(cleanup=True)`).
_DECODER_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                    (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
# transformers' `clean_up_tokenization` of the decoded text.
_TEXT_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class InputTypeError(TypeError, ValueError):
    """An input of the wrong type. A ``TypeError``; also a ``ValueError``, which transformers raises for it."""


class OutOfRangeError(ValueError, OverflowError):
    """A negative or too large number (a length, a stride, a token id). A ``ValueError``; also an
    ``OverflowError``, which transformers raises for it."""


class CharSpan(NamedTuple):
    """Characters [start, end) of an input text."""
    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoded row."""
    start: int
    end: int


class AddedToken(NamedTuple):
    """A token matched in the text before WordPiece and kept whole, with the flags of tokenizers' ``AddedToken``:
    ``single_word`` (no word character may touch it), ``lstrip``/``rstrip`` (it takes the whitespace on its
    left/right), ``normalized`` (matched in the normalized text), ``special`` (dropped by ``skip_special_tokens``)."""
    content: str
    id: int
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False
    special: bool = False


def _added_token(token, index: int | None, *, special: bool | None = None) -> AddedToken:
    """An AddedToken from a str, a mapping (serialized AddedToken) or an object with AddedToken's attributes.
    Flags left unset take tokenizers' defaults (normalized = not special)."""
    if isinstance(token, AddedToken):
        return token if index is None else token._replace(id=index)
    if isinstance(token, str):
        fields = {"content": token}
    elif isinstance(token, Mapping):
        fields = dict(token)
    elif hasattr(token, "content"):
        fields = {k: getattr(token, k) for k in ("content", "single_word", "lstrip", "rstrip", "normalized", "special")
                  if hasattr(token, k)}
    else:
        raise InputTypeError(f"an added token must be a str, a dict or an AddedToken, not {type(token).__name__}")
    is_special = bool(fields.get("special", False) if special is None else special or fields.get("special", False))
    content = fields["content"]
    if not isinstance(content, str):
        raise InputTypeError(f"added token content must be str, not {type(content).__name__}")
    return AddedToken(content, -1 if index is None else int(index), bool(fields.get("single_word", False)),
                      bool(fields.get("lstrip", False)), bool(fields.get("rstrip", False)),
                      bool(fields.get("normalized", not is_special)), is_special)


def _token_content(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return value.get("content")  # transformers' serialized AddedToken
    return str(getattr(value, "content", value))


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid UTF-8 JSON ({e})") from None


def _read_vocab_txt(path: str) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


def _value(x):
    """The value of a str Enum (transformers' PaddingStrategy, TruncationStrategy, TensorType), else x."""
    return x if x is None or type(x) in (bool, str) else getattr(x, "value", x)


def _non_negative(value, name: str, allow_none: bool = True) -> int | None:
    if type(value) is int and 0 <= value < 2**32:
        return value
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise OutOfRangeError(f"{name} must be >= 0, got {value}")
    if value >= 2**32:
        raise OutOfRangeError(f"{name} must be < 2**32, got {value}")
    return int(value)


def _to_py(obj):
    """transformers' to_py_obj: numpy arrays, torch tensors and numpy scalars to Python lists and ints."""
    if isinstance(obj, (int, float, str)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {k: _to_py(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, (int, float, np.number)) for x in obj):
            return list(obj)
        return [_to_py(o) for o in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def _as_numpy(value):
    """transformers' numpy conversion: ragged rows become an object array of arrays; empty input is int64."""
    if isinstance(value, np.ndarray):
        return value
    dtype = None
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        if len({len(v) for v in value}) > 1:
            value, dtype = [np.asarray(v) for v in value], object
    if dtype is None and np.asarray(value, dtype=object).size == 0:
        dtype = np.int64
    return np.asarray(value, dtype=dtype)


def _as_torch(value):
    """transformers' torch conversion (empty input is int64)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return torch.from_numpy(np.array(value))
    if np.asarray(value, dtype=object).size == 0:
        return torch.tensor(value, dtype=torch.int64)
    return torch.tensor(value)


def _tensor_type(return_tensors) -> str | None:
    kind = _value(return_tensors)
    if kind not in (None, "np", "pt"):
        raise ValueError(f"return_tensors must be None, 'np' or 'pt', not {return_tensors!r}")
    return kind


class Encoding:
    """One encoded row (an input, or an overflowing window of it), with the attributes and mappings of
    ``tokenizers.Encoding``. Fields are read from the C++ rows on first use."""

    __slots__ = ("_rows", "_row", "_n_sequences", "_tokens_of", "_cache")

    def __init__(self, rows, row: int, n_sequences: int, tokens_of):
        self._rows, self._row, self._n_sequences, self._tokens_of = rows, row, n_sequences, tokens_of
        self._cache: dict[str, list] = {}

    def _field(self, name: str) -> list:
        """The row's field, read once (the lists handed out are copies, as tokenizers makes new ones)."""
        if name not in self._cache:
            self._cache[name] = self._rows.row(self._row, name)
        return self._cache[name]

    def __getstate__(self):
        for name in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping",
                     "word_ids", "sequence_ids"):
            self._field(name)
        self.tokens  # noqa: B018 -- fills the cache
        return {"row": self._row, "n_sequences": self._n_sequences, "cache": self._cache}

    def __setstate__(self, state):
        self._rows, self._row, self._tokens_of = None, state["row"], None
        self._n_sequences, self._cache = state["n_sequences"], state["cache"]

    def __len__(self) -> int:
        return len(self._field("input_ids"))

    def __repr__(self) -> str:
        return f"Encoding(num_tokens={len(self)})"

    ids = property(lambda self: list(self._field("input_ids")), doc="Token ids.")
    type_ids = property(lambda self: list(self._field("token_type_ids")), doc="Token type (segment) ids.")
    attention_mask = property(lambda self: list(self._field("attention_mask")), doc="1 for tokens, 0 for padding.")
    special_tokens_mask = property(lambda self: list(self._field("special_tokens_mask")),
                                   doc="1 for [CLS], [SEP] and padding.")
    offsets = property(lambda self: list(self._field("offset_mapping")),
                       doc="(start, end) in characters of the input text (of the word, for pre-tokenized input).")
    word_ids = property(lambda self: list(self._field("word_ids")), doc="Word of each token; None for special tokens.")
    words = word_ids
    sequence_ids = property(lambda self: list(self._field("sequence_ids")),
                            doc="0 or 1: the sequence of each token; None for special tokens and padding.")
    n_sequences = property(lambda self: self._n_sequences, doc="1, or 2 for pairs.")

    @property
    def tokens(self) -> list[str]:
        """Token strings (vocabulary form: an added token shows its content, without stripped whitespace)."""
        if "tokens" not in self._cache:
            self._cache["tokens"] = self._tokens_of(self._field("input_ids"))
        return list(self._cache["tokens"])

    def _range(self, sequence_index: int) -> range:
        """Tokens of a sequence; a sequence the row does not have means the whole row (as tokenizers)."""
        seq = self._field("sequence_ids")
        if sequence_index >= self._n_sequences or sequence_index < 0:
            return range(len(seq))
        first = next((i for i, s in enumerate(seq) if s == sequence_index), None)
        if first is None:
            return range(0)
        last = first
        while last < len(seq) and seq[last] == sequence_index:
            last += 1
        return range(first, last)

    def token_to_sequence(self, token_index: int) -> int | None:
        seq = self._field("sequence_ids")
        return seq[token_index] if 0 <= token_index < len(seq) else None

    def token_to_word(self, token_index: int) -> int | None:
        if self.token_to_sequence(token_index) is None:
            return None
        return self._field("word_ids")[token_index]

    def token_to_chars(self, token_index: int) -> tuple[int, int] | None:
        if self.token_to_sequence(token_index) is None:
            return None
        return self._field("offset_mapping")[token_index]

    def word_to_tokens(self, word_index: int, sequence_index: int = 0) -> tuple[int, int] | None:
        words = self._field("word_ids")
        start = end = None
        for i in self._range(sequence_index):
            w = words[i]
            if w is not None and w > word_index:
                break
            if w == word_index:
                start = i if start is None else start
                end = i + 1
        return None if start is None else (start, end)

    def word_to_chars(self, word_index: int, sequence_index: int = 0) -> tuple[int, int] | None:
        span = self.word_to_tokens(word_index, sequence_index)
        if span is None:
            return None
        offsets = self._field("offset_mapping")
        return offsets[span[0]][0], offsets[span[1] - 1][1]

    def char_to_token(self, char_pos: int, sequence_index: int = 0) -> int | None:
        offsets = self._field("offset_mapping")
        for i in self._range(sequence_index):
            if offsets[i][0] <= char_pos < offsets[i][1]:
                return i
        return None

    def char_to_word(self, char_pos: int, sequence_index: int = 0) -> int | None:
        token = self.char_to_token(char_pos, sequence_index)
        return None if token is None else self.token_to_word(token)


class _Encodings(Sequence):
    """The rows of one call as Encoding objects, each made on first access."""

    def __init__(self, rows, n_sequences: int, tokens_of):
        self._rows, self._n_sequences, self._tokens_of = rows, n_sequences, tokens_of
        self._made: dict[int, Encoding] = {}

    def __len__(self) -> int:
        return self._rows.rows

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} out of range ({len(self)} rows)")
        if index not in self._made:
            self._made[index] = Encoding(self._rows, index, self._n_sequences, self._tokens_of)
        return self._made[index]


class BatchEncoding(dict):
    """The output of :class:`BertTokenizer`, as transformers' ``BatchEncoding``: a dict (``input_ids``,
    ``token_type_ids``, ``attention_mask``, ...) whose keys can also be read as attributes, plus the mappings
    between tokens, words and characters of each row (``word_ids``, ``sequence_ids``, ``token_to_word``,
    ``word_to_tokens``, ``char_to_token``, ``token_to_chars``, ...). Batch and token indices may be negative
    (counted from the end)."""

    def __init__(self, data: Mapping | None = None, encoding: Sequence[Encoding] | None = None,
                 tensor_type: str | None = None, prepend_batch_axis: bool = False, n_sequences: int | None = None):
        super().__init__(data or {})
        self._encodings = encoding if encoding is None or isinstance(encoding, _Encodings) else list(encoding)
        if n_sequences is None and self._encodings:
            n_sequences = self._encodings[0].n_sequences
        self._n_sequences = n_sequences
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_encodings", "_n_sequences"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, item):
        if isinstance(item, str):
            return dict.__getitem__(self, item)
        if self._encodings is not None:
            return self._encodings[item]
        if isinstance(item, slice):
            return {key: value[item] for key, value in self.items()}
        raise KeyError("a BatchEncoding is indexed by a key (str), a row (int) or a slice of rows")

    def __getstate__(self):
        return {"encodings": self.encodings, "n_sequences": self._n_sequences}

    def __setstate__(self, state):
        self._encodings, self._n_sequences = state["encodings"], state["n_sequences"]

    @property
    def data(self) -> BatchEncoding:
        """The dict itself (transformers keeps its values in ``.data``)."""
        return self

    @property
    def n_sequences(self) -> int | None:
        return self._n_sequences

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    @property
    def encodings(self) -> list[Encoding] | None:
        return None if self._encodings is None else list(self._encodings)

    def _encoding(self, batch_index: int) -> Encoding:
        if not self._encodings:
            raise ValueError("this BatchEncoding has no token mappings (it was not made by the tokenizer's __call__)")
        return self._encodings[batch_index]

    @staticmethod
    def _split(batch_or_index: int, index: int | None) -> tuple[int, int]:
        return (batch_or_index, index) if index is not None else (0, batch_or_index)

    def _token(self, encoding: Encoding, token_index: int) -> int:
        return token_index + len(encoding) if token_index < 0 else token_index

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._encoding(batch_index).tokens

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        if type(self._encodings) is _Encodings:  # straight from the C++ rows: the per-row call of QA recipes
            return self._encodings._rows.sequence_ids(batch_index)
        return self._encoding(batch_index).sequence_ids

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        if type(self._encodings) is _Encodings:  # straight from the C++ rows: the per-row call of NER recipes
            return self._encodings._rows.word_ids(batch_index)
        return self._encoding(batch_index).word_ids

    def words(self, batch_index: int = 0) -> list[int | None]:
        return self.word_ids(batch_index)

    def token_to_sequence(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        e = self._encoding(batch_index)
        return e.token_to_sequence(self._token(e, token_index))

    def token_to_word(self, batch_or_token_index: int, token_index: int | None = None) -> int | None:
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        e = self._encoding(batch_index)
        return e.token_to_word(self._token(e, token_index))

    def word_to_tokens(self, batch_or_word_index: int, word_index: int | None = None,
                       sequence_index: int = 0) -> TokenSpan | None:
        batch_index, word_index = self._split(batch_or_word_index, word_index)
        span = self._encoding(batch_index).word_to_tokens(word_index, sequence_index)
        return None if span is None else TokenSpan(*span)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> CharSpan | None:
        batch_index, token_index = self._split(batch_or_token_index, token_index)
        e = self._encoding(batch_index)
        span = e.token_to_chars(self._token(e, token_index))
        return None if span is None else CharSpan(*span)

    def char_to_token(self, batch_or_char_index: int, char_index: int | None = None,
                      sequence_index: int = 0) -> int | None:
        batch_index, char_index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def word_to_chars(self, batch_or_word_index: int, word_index: int | None = None,
                      sequence_index: int = 0) -> CharSpan | None:
        batch_index, word_index = self._split(batch_or_word_index, word_index)
        span = self._encoding(batch_index).word_to_chars(word_index, sequence_index)
        return None if span is None else CharSpan(*span)

    def char_to_word(self, batch_or_char_index: int, char_index: int | None = None,
                     sequence_index: int = 0) -> int | None:
        batch_index, char_index = self._split(batch_or_char_index, char_index)
        return self._encoding(batch_index).char_to_word(char_index, sequence_index)

    def convert_to_tensors(self, tensor_type: str | None = None, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Converts every value to numpy arrays ("np") or torch tensors ("pt"), as transformers does."""
        kind = _tensor_type(tensor_type)
        if kind is None:
            return self
        convert = _as_numpy if kind == "np" else _as_torch
        for key, value in list(self.items()):
            try:
                self[key] = convert([value] if prepend_batch_axis else value)
            except Exception as e:
                raise ValueError(
                    "Unable to create tensor, you should probably activate truncation and/or padding with "
                    "'padding=True' 'truncation=True' to have batched tensors with the same length "
                    f"(`{key}` has rows of different lengths).") from e
        return self

    def to(self, device, *, non_blocking: bool = False) -> BatchEncoding:
        """Moves torch tensors to ``device`` (other values are kept); returns this BatchEncoding."""
        for key, value in list(self.items()):
            if hasattr(value, "to") and callable(value.to):
                self[key] = value.to(device=device, non_blocking=non_blocking)
        return self


def tokenizer_options(path: str) -> dict[str, Any]:
    """The options of a checkpoint's ``special_tokens_map.json`` updated by its ``tokenizer_config.json``."""
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            data = _read_json(file)
            if not isinstance(data, dict):
                raise ValueError(f"{file}: expected a JSON object, got {type(data).__name__}")
            config.update(data)
    return config


class BertTokenizer:
    """BERT WordPiece tokenizer with the call conventions of ``transformers.BertTokenizerFast``.

    Args:
        vocab_file: path of a ``vocab.txt`` (one token per line, id = line number), or pass ``vocab``.
        vocab: token -> id mapping (instead of ``vocab_file``).
        do_lower_case: lowercase the text (full Unicode mapping).
        strip_accents: remove accents (NFD, drop nonspacing marks); ``None`` follows ``do_lower_case``.
        tokenize_chinese_chars: put spaces around CJK ideographs.
        clean_text: drop control characters, map whitespace to spaces.
        unk_token, sep_token, pad_token, cls_token, mask_token: the special tokens (added as special tokens;
            one missing from the vocabulary gets the next free id, as in transformers).
        added_tokens: further tokens kept whole: ``AddedToken``s, serialized AddedToken dicts (with ``id``), or
            legacy ``(content, id)`` pairs (matched verbatim).
        extra_special_tokens: further special tokens (transformers' ``extra_special_tokens``).
        model_max_length: the default ``max_length`` of truncation and of ``padding="max_length"``.
        padding_side, truncation_side: ``"right"`` or ``"left"``; also settable attributes.
        clean_up_tokenization_spaces: the default of ``decode``'s argument.
        split_special_tokens: tokenize special tokens in the text as plain text (default of the call argument).
        num_threads: threads used for a batch (default: the CPUs this process may run on).
    """

    model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    is_fast = True
    pad_token_type_id = 0
    name_or_path = ""

    def __init__(self, vocab_file: str | None = None, *, vocab: Mapping[str, int] | None = None,
                 do_lower_case: bool = True, strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 clean_text: bool = True, unk_token: str | None = "[UNK]", sep_token: str | None = "[SEP]",
                 pad_token: str | None = "[PAD]", cls_token: str | None = "[CLS]", mask_token: str | None = "[MASK]",
                 added_tokens: Sequence = (), extra_special_tokens: Sequence = (),
                 model_max_length: int = VERY_LARGE_INTEGER, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 split_special_tokens: bool = False, continuing_subword_prefix: str = "##",
                 max_input_chars_per_word: int = 100, num_threads: int | None = None):
        if vocab is None:
            if vocab_file is None:
                raise ValueError("BertTokenizer needs a vocab_file or a vocab")
            if not os.path.isfile(vocab_file):
                raise OSError(f"vocabulary file not found: {vocab_file!r}")
            vocab = _read_vocab_txt(vocab_file)
        self._vocab = dict(vocab)
        for side, name in ((padding_side, "padding_side"), (truncation_side, "truncation_side")):
            if side not in ("right", "left"):
                raise ValueError(f"{name} must be 'right' or 'left', not {side!r}")
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.clean_text = clean_text
        self.unk_token, self.sep_token, self.pad_token = (_token_content(unk_token), _token_content(sep_token),
                                                          _token_content(pad_token))
        self.cls_token, self.mask_token = _token_content(cls_token), _token_content(mask_token)
        self.extra_special_tokens = [_token_content(t) for t in extra_special_tokens]
        self.model_max_length = model_max_length
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.split_special_tokens = split_special_tokens
        self.continuing_subword_prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.num_threads = num_threads or len(os.sched_getaffinity(0))
        self._added: dict[str, AddedToken] = {}
        for token in added_tokens:
            if isinstance(token, tuple) and not isinstance(token, AddedToken):
                content, index = token  # legacy (content, id): matched verbatim
                spec = AddedToken(content, int(index), normalized=False)
            else:
                index = token.get("id") if isinstance(token, Mapping) else getattr(token, "id", None)
                spec = _added_token(token, index)
            self._added[spec.content] = spec
        if self.unk_token is None or (self.unk_token not in self._vocab and self.unk_token not in self._added):
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        named = [(t, True) for t in (pad_token, unk_token, cls_token, sep_token, mask_token) if t is not None]
        self._register_tokens(named + [(t, True) for t in extra_special_tokens])
        self._build()

    # ------------------------------------------------------------------ construction
    def _register_tokens(self, tokens, replace: bool = False) -> int:
        """Adds (token, special) entries, as tokenizers' AddedVocabulary: an existing vocabulary id is reused, else
        the next free id. A known added token keeps its id; with `replace` it takes the new flags (a special token
        stays special). Returns how many entries were added or changed."""
        new = 0
        for token, special in tokens:
            index = self._vocab.get(_token_content(token))
            spec = _added_token(token, index, special=special)
            old = self._added.get(spec.content)
            if old is not None:
                updated = spec._replace(id=old.id, special=old.special or spec.special) if replace else \
                    old._replace(special=old.special or special)
                new += updated != old and replace
                self._added[spec.content] = updated
                continue
            if spec.id < 0:
                spec = spec._replace(id=max([len(self._vocab) - 1, *self._vocab.values(),
                                             *(t.id for t in self._added.values())]) + 1)
            self._added[spec.content] = spec
            new += 1
        return new

    def _build(self):
        """(Re)builds the C++ core and the id tables from the vocabulary, the added tokens and the options."""
        added = sorted(self._added.values(), key=lambda t: t.id)
        ids = {**self._vocab, **{t.content: t.id for t in added}}

        def id_of(token):
            return ids.get(token, -1) if token is not None else -1

        self._core = _C.Tokenizer(
            list(self._vocab.items()), [tuple(t) for t in added], unk_id=id_of(self.unk_token),
            cls_id=id_of(self.cls_token), sep_id=id_of(self.sep_token), pad_id=id_of(self.pad_token),
            pad_type_id=self.pad_token_type_id, lowercase=self.do_lower_case, strip_accents=self.strip_accents,
            handle_chinese_chars=self.tokenize_chinese_chars, clean_text=self.clean_text,
            continuing_subword_prefix=self.continuing_subword_prefix,
            max_input_chars_per_word=self.max_input_chars_per_word)
        size = max(ids.values()) + 1
        table: list[str | None] = [None] * size
        for token, index in self._vocab.items():
            table[index] = token
        for t in added:
            # tokenizers shows a normalized added token in its normalized form
            table[t.id] = self._core.normalize(t.content) if t.normalized else t.content
        self._id_to_token = table
        self._special_contents = {t.content for t in added if t.special}

    def __getstate__(self) -> dict:
        """Pickles (and deep-copies) as the vocabulary and options; the C++ core is rebuilt on loading."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_core", "_id_to_token", "_special_contents")}

    def __setstate__(self, state: dict):
        self.__dict__.update(state)
        self._build()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> BertTokenizer:
        """Loads a local checkpoint directory: ``tokenizer.json`` if present, else ``vocab.txt``, with the options
        of ``tokenizer_config.json`` and ``special_tokens_map.json`` and the added tokens (with their flags) of
        ``added_tokens_decoder`` (else of ``tokenizer.json``). Keyword arguments override them."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise OSError(f"not a checkpoint directory: {path!r}")
        config = tokenizer_options(path)
        options: dict[str, Any] = {}
        for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length", "padding_side",
                    "truncation_side", "clean_up_tokenization_spaces", "split_special_tokens"):
            if key in config:
                options[key] = config[key]
        for key in _BERT_SPECIALS:
            if key in config:
                options[key] = _token_content(config[key])
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        if isinstance(extra, Mapping):
            extra = list(extra.values())
        options["extra_special_tokens"] = [_token_content(t) for t in extra]
        added = [{**t, "id": int(i)} if isinstance(t, Mapping) else {"content": _token_content(t), "id": int(i)}
                 for i, t in (config.get("added_tokens_decoder") or {}).items()]

        tokenizer_json = os.path.join(path, "tokenizer.json")
        vocab_txt = os.path.join(path, "vocab.txt")
        if os.path.isfile(tokenizer_json):
            spec = _read_json(tokenizer_json)
            model = spec.get("model") or {} if isinstance(spec, dict) else {}
            if model.get("type") != "WordPiece":
                raise ValueError(f"{tokenizer_json} is not a WordPiece tokenizer (model type {model.get('type')!r})")
            options["vocab"] = model["vocab"]
            options.setdefault("unk_token", model.get("unk_token", "[UNK]"))
            options["continuing_subword_prefix"] = model.get("continuing_subword_prefix", "##")
            options["max_input_chars_per_word"] = model.get("max_input_chars_per_word", 100)
            normalizer = spec.get("normalizer") or {}
            if normalizer.get("type") == "BertNormalizer":
                options.setdefault("do_lower_case", normalizer.get("lowercase", True))
                if "strip_accents" not in config:
                    options["strip_accents"] = normalizer.get("strip_accents")
                options.setdefault("tokenize_chinese_chars", normalizer.get("handle_chinese_chars", True))
                options["clean_text"] = normalizer.get("clean_text", True)
            if not added:
                added = [dict(t) for t in spec.get("added_tokens", [])]
        elif os.path.isfile(vocab_txt):
            options["vocab_file"] = vocab_txt
        else:
            raise OSError(f"no vocab.txt or tokenizer.json in {path!r}")
        options["added_tokens"] = added
        options.update(kwargs)
        tokenizer = cls(**options)
        tokenizer.name_or_path = path
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> tuple[str, ...]:
        """Writes ``vocab.txt``, ``tokenizer_config.json`` (options, special tokens, added tokens with their flags)
        and ``special_tokens_map.json``, which this class and transformers' ``from_pretrained`` read back (so a
        Trainer can save it with its checkpoints). Returns the paths written."""
        if not self.clean_text or self.continuing_subword_prefix != "##" or self.max_input_chars_per_word != 100:
            raise ValueError("save_pretrained writes BERT's vocab.txt format, which cannot hold clean_text=False, "
                             "another continuing_subword_prefix or max_input_chars_per_word")
        by_id = sorted(self._vocab.items(), key=lambda item: item[1])
        if [index for _, index in by_id] != list(range(len(by_id))):
            raise ValueError("save_pretrained needs vocabulary ids 0..n-1 (vocab.txt gives ids by line)")
        if any("\n" in token for token, _ in by_id):
            raise ValueError("save_pretrained cannot write a vocabulary token that holds a newline to vocab.txt")
        specials = {name: getattr(self, name) for name in _BERT_SPECIALS if getattr(self, name) is not None}
        config = {
            "tokenizer_class": "BertTokenizer", "do_lower_case": self.do_lower_case,
            "strip_accents": self.strip_accents, "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "model_max_length": self.model_max_length, "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "split_special_tokens": self.split_special_tokens, **specials,
            "extra_special_tokens": list(self.extra_special_tokens),
            "added_tokens_decoder": {str(t.id): {"content": t.content, "single_word": t.single_word,
                                                 "lstrip": t.lstrip, "rstrip": t.rstrip,
                                                 "normalized": t.normalized, "special": t.special}
                                     for t in sorted(self._added.values(), key=lambda t: t.id)},
        }
        os.makedirs(save_directory, exist_ok=True)
        paths = [os.path.join(save_directory, name)
                 for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")]
        with open(paths[0], "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
        with open(paths[1], "w", encoding="utf-8") as f:
            json.dump(specials, f, indent=2, ensure_ascii=False)
        with open(paths[2], "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token, _ in by_id))
        return tuple(paths)

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return {**self._vocab, **{t.content: t.id for t in self._added.values()}}

    def get_vocab(self) -> dict[str, int]:
        return self.vocab

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return {t.id: t for t in sorted(self._added.values(), key=lambda t: t.id)}

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: t.id for t in sorted(self._added.values(), key=lambda t: t.id)}

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    unk_token_id = property(lambda self: self._id(self.unk_token))
    sep_token_id = property(lambda self: self._id(self.sep_token))
    pad_token_id = property(lambda self: self._id(self.pad_token))
    cls_token_id = property(lambda self: self._id(self.cls_token))
    mask_token_id = property(lambda self: self._id(self.mask_token))
    bos_token = eos_token = bos_token_id = eos_token_id = None

    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in SPECIAL_TOKENS_ATTRIBUTES if getattr(self, name) is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """Named special tokens (transformers' order), then the extra ones."""
        out: list[str] = []
        for token in [*self.special_tokens_map.values(), *self.extra_special_tokens]:
            if token not in out:
                out.append(token)
        return out

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - 2

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - 3

    def convert_tokens_to_ids(self, tokens: str | Sequence[str] | None) -> int | list[int] | None:
        """Id of a token (the unknown token's id if absent), or ids of a list of tokens."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            index = self._core.token_to_id(tokens)
            return self._core.token_to_id(self.unk_token) if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def _token_of(self, index) -> str | None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InputTypeError(f"token ids must be int, not {type(index).__name__}")
        if index < 0 or index >= 2**32:
            raise OutOfRangeError(f"token id {index} is out of range (ids are >= 0 and < 2**32)")
        return self._id_to_token[index] if index < len(self._id_to_token) else None

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False):
        """Token of an id (None for an id the vocabulary lacks), or tokens of a list of ids. Negative ids raise
        ``OutOfRangeError`` (a ValueError and OverflowError; transformers raises OverflowError)."""
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
            return self._token_of(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._token_of(i) for i in _to_py(ids) if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """WordPiece decoding: pieces joined with spaces, "##" pieces glued, spaces before punctuation removed."""
        pieces = []
        for i, token in enumerate(tokens):
            if i:
                token = token[2:] if token.startswith("##") else " " + token
            for old, new in _DECODER_CLEANUP:
                token = token.replace(old, new)
            pieces.append(token)
        return "".join(pieces)

    def get_special_tokens_mask(self, token_ids_0: Sequence[int], token_ids_1: Sequence[int] | None = None,
                                already_has_special_tokens: bool = False) -> list[int]:
        """1 for the special tokens of an already encoded sequence (as transformers' fast tokenizers)."""
        if not already_has_special_tokens:
            raise NotImplementedError("get_special_tokens_mask needs already_has_special_tokens=True "
                                      "(as transformers' BertTokenizerFast)")
        if token_ids_1 is not None:
            raise ValueError("token_ids_1 must be None when already_has_special_tokens=True")
        special = set(self.all_special_ids)
        return [1 if int(t) in special else 0 for t in token_ids_0]

    def add_tokens(self, new_tokens, special_tokens: bool = False) -> int:
        """Adds tokens (str or AddedToken-like; str ones are normalized unless special) kept whole when they
        appear in the text. With special_tokens=True, tokenizers.AddedToken objects are marked special in place,
        as transformers does. Returns how many were added or changed."""
        if isinstance(new_tokens, (str, AddedToken)) or not isinstance(new_tokens, Sequence):
            new_tokens = [new_tokens]
        if special_tokens:
            for token in new_tokens:
                if not isinstance(token, (str, Mapping, AddedToken)) and hasattr(token, "special"):
                    # as tokenizers' add_special_tokens: the caller's AddedToken becomes special, and a
                    # `normalized` it was not given then defaults to False
                    token.special = True
        added = self._register_tokens([(t, special_tokens) for t in new_tokens], replace=True)
        self._build()
        return added

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any]) -> int:
        """Sets named special tokens (e.g. ``{"cls_token": "<s>"}``) and adds ``extra_special_tokens`` /
        ``additional_special_tokens``; returns how many tokens were new."""
        new = 0
        for key, value in special_tokens_dict.items():
            if key in ("extra_special_tokens", "additional_special_tokens"):
                new += self.add_tokens(list(value), special_tokens=True)
            elif key in _BERT_SPECIALS:
                new += self._register_tokens([(value, True)])
                setattr(self, key, _token_content(value))
                self._build()
            else:
                raise ValueError(f"{key!r} is not a special token of BERT ({', '.join(_BERT_SPECIALS)}, "
                                 "extra_special_tokens)")
        return new

    # ------------------------------------------------------------------ encoding
    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The tokens of ``text`` (and ``pair``), without special tokens unless asked."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def _tokens_of(self, ids: Sequence[int]) -> list[str]:
        table = self._id_to_token
        return [table[i] if 0 <= i < len(table) and table[i] is not None else self.unk_token for i in ids]

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length: int | None = None, stride: int = 0, padding_side: str | None = None,
               return_tensors: str | None = None, **kwargs) -> list[int]:
        """The ids of one text (or pair); accepts the arguments of ``__call__``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors,
                    **kwargs)["input_ids"]

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """transformers' resolution of padding/truncation arguments into (padding, truncation, max_length)."""
        padding, truncation = _value(padding), _value(truncation)
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone implies truncation
        if padding is not False and padding not in _PADDING:
            raise ValueError(f"padding must be one of False, True, 'longest', 'max_length', 'do_not_pad', "
                             f"not {padding!r}")
        if truncation not in (None, False) and truncation not in _TRUNCATION:
            raise ValueError(f"truncation must be one of None, False, True, 'longest_first', 'only_first', "
                             f"'only_second', 'do_not_truncate', not {truncation!r}")
        pad = "do_not_pad" if padding is False else _PADDING[padding]
        trunc = "do_not_truncate" if truncation in (None, False) else _TRUNCATION[truncation]
        max_length = _non_negative(max_length, "max_length")
        if max_length is None:
            limit = self.model_max_length if self.model_max_length <= LARGE_INTEGER else None
            if pad == "max_length":
                pad = "do_not_pad" if limit is None else pad
                max_length = limit
            if trunc != "do_not_truncate":
                trunc = "do_not_truncate" if limit is None else trunc
                max_length = limit
        if pad != "do_not_pad" and self.pad_token is None:
            raise ValueError("Asking to pad but the tokenizer does not have a padding token (pad_token is None)")
        if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of and max_length is not None
                and max_length % pad_to_multiple_of != 0):
            raise ValueError("Truncation and padding are both activated but truncation length "
                             f"({max_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return pad, trunc, max_length

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, stride: int = 0, is_split_into_words: bool = False,
                 pad_to_multiple_of: int | None = None, padding_side: str | None = None,
                 return_tensors: str | None = None, return_token_type_ids: bool | None = None,
                 return_attention_mask: bool | None = None, return_overflowing_tokens: bool = False,
                 return_special_tokens_mask: bool = False, return_offsets_mapping: bool = False,
                 return_length: bool = False, verbose: bool = True, split_special_tokens: bool | None = None,
                 tokenizer_kwargs: Mapping[str, Any] | None = None, num_threads: int | None = None,
                 **kwargs) -> BatchEncoding:
        """Encodes one text (or pair) or a batch, exactly as ``BertTokenizerFast.__call__``.

        ``text``/``text_pair``: a str or a list of str; with ``is_split_into_words=True`` a list of words or a
        list of such lists. ``text_target``/``text_pair_target``: encoded the same way; their ids become
        ``labels``. ``padding``: False | True | "longest" | "max_length" (``pad_to_multiple_of``,
        ``padding_side`` "right"/"left"). ``truncation``: None | False | True | "longest_first" | "only_first" |
        "only_second"; ``max_length`` counts the special tokens. ``return_overflowing_tokens=True`` returns every
        window of ``max_length`` tokens (consecutive windows share ``stride`` tokens) as a row, with
        ``overflow_to_sample_mapping``. ``return_tensors``: None (lists), "np" or "pt" (int64). ``num_threads``:
        threads for this call (fastbert only).

        A single pair whose second member is empty (``""`` or ``[]``) is encoded as a single text, while an
        empty member in a batch stays a (short) pair, as in transformers. Raises ``ValueError`` where transformers
        raises (a truncation strategy that cannot reach ``max_length``, "only_second" without pairs, lone
        surrogates) and where transformers is not well-defined: ``max_length`` smaller than the special tokens
        with truncation (transformers' integer wraps around and silently disables truncation), a ``stride`` not
        smaller than the tokens a truncated sequence keeps (a Rust panic), negative numbers (``OutOfRangeError``,
        also an OverflowError as in transformers). Wrong input types raise ``InputTypeError`` (a TypeError and
        a ValueError); unknown keyword arguments raise TypeError. ``pad_to_multiple_of=0`` means no multiple.
        """
        if tokenizer_kwargs:
            call = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                        max_length=max_length, stride=stride, is_split_into_words=is_split_into_words,
                        pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
                        return_tensors=return_tensors, return_token_type_ids=return_token_type_ids,
                        return_attention_mask=return_attention_mask,
                        return_overflowing_tokens=return_overflowing_tokens,
                        return_special_tokens_mask=return_special_tokens_mask,
                        return_offsets_mapping=return_offsets_mapping, return_length=return_length,
                        split_special_tokens=split_special_tokens, num_threads=num_threads)
            call.update(tokenizer_kwargs)
            call.update(kwargs)
            return self(text, text_pair, text_target, text_pair_target, **call)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(kwargs))} (not supported by fastbert's "
                            "BertTokenizer)")
        if text is None and text_target is None:
            raise InputTypeError("You need to specify either `text` or `text_target`.")
        options = (add_special_tokens, padding, truncation, max_length, stride, is_split_into_words,
                   pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids, return_attention_mask,
                   return_overflowing_tokens, return_special_tokens_mask, return_offsets_mapping, return_length,
                   split_special_tokens, num_threads)
        encodings = None if text is None else self._encode(text, text_pair, *options)
        if text_target is None:
            return encodings
        targets = self._encode(text_target, text_pair_target, *options)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def _encode(self, text, text_pair, add_special_tokens, padding, truncation, max_length, stride,
                is_split_into_words, pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids,
                return_attention_mask, return_overflowing_tokens, return_special_tokens_mask,
                return_offsets_mapping, return_length, split_special_tokens, num_threads) -> BatchEncoding:
        kind = None if return_tensors is None else _tensor_type(return_tensors)
        texts, pairs, batched = self._inputs(text, text_pair, bool(is_split_into_words))
        pad_to_multiple_of = _non_negative(pad_to_multiple_of, "pad_to_multiple_of")
        pad, trunc, length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        if return_token_type_ids is None:  # transformers' default: the model's inputs (DistilBERT has no types)
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_token_type_ids is not False and return_attention_mask is not False and not (
                return_special_tokens_mask or return_offsets_mapping):
            fields = _DEFAULT_FIELDS
        else:
            fields = ["input_ids"]
            if return_token_type_ids is not False:
                fields.append("token_type_ids")
            if return_attention_mask is not False:
                fields.append("attention_mask")
            if return_special_tokens_mask:
                fields.append("special_tokens_mask")
            if return_offsets_mapping:
                fields.append("offset_mapping")
        out, rows = self._core.encode_batch(  # positional: see _C.pyi for the order
            texts, pairs, bool(is_split_into_words), bool(add_special_tokens), trunc, length,
            _non_negative(stride, "stride", allow_none=False), self.truncation_side,
            bool(return_overflowing_tokens), pad, self.padding_side if padding_side is None else padding_side,
            pad_to_multiple_of, bool(self.split_special_tokens if split_special_tokens is None
                                     else split_special_tokens),
            fields, bool(return_length), kind is not None, _non_negative(num_threads or self.num_threads,
                                                                         "num_threads"))
        n_sequences = rows.n_sequences
        encodings = _Encodings(rows, n_sequences, self._tokens_of)
        if kind is None:
            if not batched and not return_overflowing_tokens:
                out = {k: v[0] if v and isinstance(v[0], list) else v for k, v in out.items()}
            return BatchEncoding(out, encodings, n_sequences=n_sequences)
        return BatchEncoding(out, encodings, tensor_type=kind, n_sequences=n_sequences)

    @staticmethod
    def _inputs(text, text_pair, split_into_words: bool):
        """transformers' reading of text/text_pair: (batch of first sequences, batch of second ones or None,
        whether the input was a batch)."""
        def valid(t):
            if isinstance(t, str):
                return True
            if not isinstance(t, (list, tuple)):
                return False
            if not t or isinstance(t[0], str):
                return True
            return isinstance(t[0], (list, tuple)) and (not t[0] or isinstance(t[0][0], str))

        for value, name in ((text, "text"), (text_pair, "text_pair")):
            if value is not None and not valid(value):
                raise InputTypeError(f"{name} must be a str, a list of str or (with is_split_into_words=True) a list "
                                     f"of lists of str, not {type(value).__name__}")
        if split_into_words:
            batched = isinstance(text, (list, tuple)) and bool(text) and isinstance(text[0], (list, tuple))
            if isinstance(text, str) or isinstance(text_pair, str):
                raise InputTypeError("with is_split_into_words=True, text and text_pair must be lists of words "
                                     "(or batches of them), not str")
        else:
            batched = isinstance(text, (list, tuple))
        if batched:
            if isinstance(text_pair, str):
                raise InputTypeError("when tokenizing batches of text, `text_pair` must be a list or tuple with "
                                     "the same length as `text`.")
            if text_pair is not None and len(text) != len(text_pair):
                raise ValueError(f"batch length of `text`: {len(text)} does not match batch length of `text_pair`: "
                                 f"{len(text_pair)}.")
            return text, text_pair, True
        if not split_into_words and text_pair is not None and not isinstance(text_pair, str):
            raise InputTypeError(f"text_pair must be a str when text is a str, not {type(text_pair).__name__}")
        # transformers: `[(text, text_pair)] if text_pair else [text]` -- an empty second member is dropped
        return [text], ([text_pair] if text_pair else None), False

    def pad(self, encoded_inputs, padding=True, max_length: int | None = None, pad_to_multiple_of: int | None = None,
            padding_side: str | None = None, return_attention_mask: bool | None = None,
            return_tensors: str | None = None, verbose: bool = True) -> BatchEncoding:
        """Pads already encoded inputs (a dict of lists, a list of dicts, or a BatchEncoding), as transformers'
        ``pad`` does for data collators: ``input_ids`` with the pad id, ``token_type_ids`` with 0,
        ``attention_mask`` and ``special_tokens_mask`` with 0 / 1; other keys are kept as they are."""
        if isinstance(encoded_inputs, (list, tuple)) and encoded_inputs and isinstance(encoded_inputs[0], Mapping):
            encoded_inputs = {key: [example[key] for example in encoded_inputs] for key in encoded_inputs[0].keys()}
        if "input_ids" not in encoded_inputs:
            raise ValueError("pad needs an encoding (or list of encodings) with input_ids, but got keys "
                             f"{list(encoded_inputs.keys())}")
        required = encoded_inputs["input_ids"]
        if required is None or (hasattr(required, "__len__") and len(required) == 0):
            if return_attention_mask:
                encoded_inputs["attention_mask"] = []
            return encoded_inputs
        first = required[0]
        if isinstance(first, (list, tuple)):
            first = next((row[0] for row in required if len(row)), first)
        if not isinstance(first, (int, list, tuple)):
            if isinstance(first, np.ndarray) or isinstance(first, np.generic):
                return_tensors = "np" if return_tensors is None else return_tensors
            elif type(first).__module__.startswith("torch"):
                return_tensors = "pt" if return_tensors is None else return_tensors
            else:
                raise ValueError(f"type of {first} unknown: {type(first)}. Should be a python, numpy or torch object.")
            encoded_inputs = {key: _to_py(value) for key, value in encoded_inputs.items()}
        pad, _, max_length = self._strategies(padding, None, max_length, None)
        pad_to_multiple_of = _non_negative(pad_to_multiple_of, "pad_to_multiple_of")
        side = self.padding_side if padding_side is None else padding_side
        if side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', not {side!r}")
        required = encoded_inputs["input_ids"]
        if required and not isinstance(required[0], (list, tuple)):
            return BatchEncoding(self._pad_one(dict(encoded_inputs), max_length, pad, pad_to_multiple_of, side,
                                               return_attention_mask), tensor_type=return_tensors)
        if any(len(v) != len(required) for v in encoded_inputs.values()):
            raise ValueError("Some items in the output dictionary have a different batch size than others.")
        if pad == "longest":
            max_length, pad = max(len(row) for row in required), "max_length"
        batch: dict[str, list] = {}
        for i in range(len(required)):
            row = self._pad_one({k: v[i] for k, v in encoded_inputs.items()}, max_length, pad, pad_to_multiple_of,
                                side, return_attention_mask)
            for key, value in row.items():
                batch.setdefault(key, []).append(value)
        return BatchEncoding(batch, tensor_type=return_tensors)

    def _pad_one(self, inputs: dict, max_length, pad: str, multiple, side: str, return_attention_mask) -> dict:
        """transformers' ``_pad`` of one encoded input (a dict of lists)."""
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        ids = list(inputs["input_ids"])
        if pad == "longest":
            max_length = len(ids)
        if max_length is not None and multiple and max_length % multiple:
            max_length = (max_length // multiple + 1) * multiple
        if return_attention_mask and "attention_mask" not in inputs:
            inputs["attention_mask"] = [1] * len(ids)
        if pad == "do_not_pad" or max_length is None or len(ids) == max_length:
            return inputs
        n = max_length - len(ids)
        fill = {"input_ids": self.pad_token_id, "token_type_ids": self.pad_token_type_id, "attention_mask": 0,
                "special_tokens_mask": 1}
        for key, value in fill.items():
            if key in inputs and (key != "attention_mask" or return_attention_mask):
                row = list(inputs[key])
                inputs[key] = row + [value] * n if side == "right" else [value] * n + row
        return inputs

    # ------------------------------------------------------------------ decoding
    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               **kwargs) -> str | list[str]:
        """Text of ids (a list, array or tensor; a batch of them gives a list of texts): WordPiece pieces joined
        ("##" pieces glued), with the WordPiece decoder's clean-up of punctuation, and transformers' text
        clean-up if ``clean_up_tokenization_spaces`` (default: the tokenizer's attribute). Ids the vocabulary
        lacks are skipped; negative ids raise ``OutOfRangeError`` (transformers: OverflowError)."""
        kwargs.pop("use_source_tokenizer", None)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        token_ids = _to_py(token_ids)
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            return [self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in token_ids]
        return self._decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        if isinstance(token_ids, Mapping):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [token_ids]
        tokens = [t for t in (self._token_of(i) for i in token_ids) if t is not None]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._special_contents]
        text = self.convert_tokens_to_string(tokens)
        if self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces:
            for old, new in _TEXT_CLEANUP:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs) -> list[str]:
        result = self.decode(sequences, skip_special_tokens=skip_special_tokens,
                             clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        return [result] if isinstance(result, str) else result

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"truncation_side={self.truncation_side!r})")
