"""``BatchEncoding``: the output of a tokenizer call, as transformers' -- a dict of fields (lists, numpy arrays or
torch tensors) with the rows' token/word/character mappings, and its conversion to tensors.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .encoding import CharSpan, Encoding, EncodingRows, TokenSpan
from .options import tensor_kind
from .tensors import as_numpy, as_torch


class BatchEncoding(dict):
    """The output of fastbert's tokenizers, as transformers' ``BatchEncoding``: a dict (``input_ids``,
    ``token_type_ids``, ``attention_mask``, ...) whose keys can also be read as attributes, plus the mappings
    between tokens, words and characters of each row (``word_ids``, ``sequence_ids``, ``token_to_word``,
    ``word_to_tokens``, ``char_to_token``, ``token_to_chars``, ...). Batch and token indices may be negative
    (counted from the end)."""

    def __init__(self, data: Mapping | None = None, encoding: Sequence[Encoding] | None = None,
                 tensor_type: str | None = None, prepend_batch_axis: bool = False, n_sequences: int | None = None):
        super().__init__(data or {})
        self._encodings = encoding if encoding is None or isinstance(encoding, EncodingRows) else list(encoding)
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
        if type(self._encodings) is EncodingRows:  # straight from the C++ rows: the per-row call of QA recipes
            return self._encodings._rows.sequence_ids(batch_index)
        return self._encoding(batch_index).sequence_ids

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        if type(self._encodings) is EncodingRows:  # straight from the C++ rows: the per-row call of NER recipes
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
        kind = tensor_kind(tensor_type)
        if kind is None:
            return self
        convert = as_numpy if kind == "np" else as_torch
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
