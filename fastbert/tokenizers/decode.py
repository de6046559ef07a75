"""Decoding ids back to text: the WordPiece decoder (pieces joined, ``##`` pieces glued, punctuation clean-up),
transformers' ``clean_up_tokenization`` of the text, and ``decode``/``batch_decode`` over single rows and batches.
"""
from __future__ import annotations

from collections.abc import Sequence

from .tensors import to_py

# Per-token clean-up of the WordPiece decoder (tokenizers' `decoders.WordPiece(cleanup=True)`).
_DECODER_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                    (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))
# transformers' `clean_up_tokenization` of the decoded text.
_TEXT_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def wordpiece_string(tokens: Sequence[str]) -> str:
    """WordPiece decoding: pieces joined with spaces, "##" pieces glued, spaces before punctuation removed."""
    pieces = []
    for i, token in enumerate(tokens):
        if i:
            token = token[2:] if token.startswith("##") else " " + token
        for old, new in _DECODER_CLEANUP:
            token = token.replace(old, new)
        pieces.append(token)
    return "".join(pieces)


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: no space before punctuation and English contractions."""
    for old, new in _TEXT_CLEANUP:
        text = text.replace(old, new)
    return text


class Decoding:
    """Mixin: ``decode`` and ``batch_decode`` on top of the host's ``_decode(token_ids, skip_special_tokens,
    clean_up_tokenization_spaces)``, which decodes one row of ids (Python ints)."""

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None):
        raise NotImplementedError

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               **kwargs) -> str | list[str]:
        """Text of ids (a list, array or tensor; a batch of them gives a list of texts). Ids the vocabulary lacks
        are skipped; negative ids raise a ValueError (transformers: OverflowError). With
        ``clean_up_tokenization_spaces`` (default: the tokenizer's attribute), transformers' text clean-up."""
        kwargs.pop("use_source_tokenizer", None)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(kwargs))}")
        token_ids = to_py(token_ids)
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            return [self._decode(ids, skip_special_tokens, clean_up_tokenization_spaces) for ids in token_ids]
        return self._decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs) -> list[str]:
        result = self.decode(sequences, skip_special_tokens=skip_special_tokens,
                             clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        return [result] if isinstance(result, str) else result
