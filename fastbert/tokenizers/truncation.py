"""Pairs, truncation and overflow at the Python level: how ``text``/``text_pair`` become a batch of first
sequences and one of second ones (``split_inputs``), and, for the ``tokenizers``-backed families, the check of a
truncation window and the rows of overflowing windows. (fastbert's WordPiece truncates, windows and pairs in C++,
``csrc/post_processor.cpp``; the strategies themselves are resolved in ``options.py``.)
"""
from __future__ import annotations

from collections.abc import Sequence

from .errors import InputTypeError


def _valid_input(t) -> bool:
    """A str, a list of str, or a list of lists of str (pre-tokenized batches)."""
    if isinstance(t, str):
        return True
    if not isinstance(t, (list, tuple)):
        return False
    if not t or isinstance(t[0], str):
        return True
    return isinstance(t[0], (list, tuple)) and (not t[0] or isinstance(t[0][0], str))


def split_inputs(text, text_pair, split_into_words: bool):
    """transformers' reading of text/text_pair: (batch of first sequences, batch of second ones or None,
    whether the input was a batch)."""
    for value, name in ((text, "text"), (text_pair, "text_pair")):
        if value is not None and not _valid_input(value):
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


def check_window(length: int, stride: int, specials: int) -> None:
    """A truncation to ``length`` tokens, ``specials`` of them special, must leave tokens to truncate, and
    overflowing windows must move: ``stride`` below the tokens left (the Rust library panics otherwise)."""
    if length < specials or (stride and stride >= length - specials):
        raise ValueError(f"max_length={length} with stride={stride} leaves no tokens to truncate: "
                         f"{specials} special tokens are added and the stride must be smaller than the "
                         "tokens left")


def overflow_rows(encodings: Sequence, overflowing: bool) -> list:
    """The rows of a ``tokenizers`` batch: each input's encoding, followed by its overflowing windows if asked."""
    return [r for e in encodings for r in ([e, *e.overflowing] if overflowing else [e])]


def overflow_to_sample_mapping(encodings: Sequence) -> list[int]:
    """The input each row of ``overflow_rows(encodings, True)`` comes from."""
    return [i for i, e in enumerate(encodings) for _ in range(1 + len(e.overflowing))]
