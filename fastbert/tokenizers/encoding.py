"""The encoded rows of a call: ``Encoding`` (one row, with ``tokenizers.Encoding``'s attributes and its
token/word/character mappings) and ``EncodingRows`` (the rows of one call, each made on first access). A row reads
its fields from the C++ rows of ``fastbert._C.Encodings`` only when asked, so a call that uses only the id arrays
pays nothing for them. (The ``tokenizers``-backed families hand ``tokenizers.Encoding`` rows to ``BatchEncoding``
instead: the same attributes.)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class CharSpan(NamedTuple):
    """Characters [start, end) of an input text."""
    start: int
    end: int


class TokenSpan(NamedTuple):
    """Tokens [start, end) of an encoded row."""
    start: int
    end: int


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


class EncodingRows(Sequence):
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
