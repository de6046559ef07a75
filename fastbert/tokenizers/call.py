"""The call signature of transformers' fast tokenizers, shared by every fastbert tokenizer: ``__call__`` (its
defaults, ``tokenizer_kwargs``, ``text_target`` -> ``labels``), ``encode`` and ``tokenize``. The call's arguments
travel as one ``CallOptions`` to the host class's ``_encode``, the only step each tokenizer does its own way.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .batch_encoding import BatchEncoding
from .errors import InputTypeError
from .options import CallOptions


class CallSignature:
    """Mixin: transformers' tokenizer call on top of the host's ``_encode(text, text_pair, options: CallOptions)
    -> BatchEncoding``, which encodes one input or a batch."""

    def _encode(self, text, text_pair, options: CallOptions) -> BatchEncoding:
        raise NotImplementedError

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
        """Encodes one text (or pair) or a batch, exactly as transformers' fast tokenizers (for WordPiece:
        ``BertTokenizerFast.__call__``).

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
        options = CallOptions(add_special_tokens, padding, truncation, max_length, stride, is_split_into_words,
                              pad_to_multiple_of, padding_side, return_tensors, return_token_type_ids,
                              return_attention_mask, return_overflowing_tokens, return_special_tokens_mask,
                              return_offsets_mapping, return_length, split_special_tokens, num_threads)
        if tokenizer_kwargs:
            call = options._asdict()
            call.update(tokenizer_kwargs)
            call.update(kwargs)
            return self(text, text_pair, text_target, text_pair_target, **call)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(kwargs))} (not supported by fastbert's "
                            "BertTokenizer)")
        if text is None and text_target is None:
            raise InputTypeError("You need to specify either `text` or `text_target`.")
        encodings = None if text is None else self._encode(text, text_pair, options)
        if text_target is None:
            return encodings
        targets = self._encode(text_target, text_pair_target, options)
        if encodings is None:
            return targets
        encodings["labels"] = targets["input_ids"]
        return encodings

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False, **kwargs) -> list[str]:
        """The tokens of ``text`` (and ``pair``), without special tokens unless asked."""
        return self(text, pair, add_special_tokens=add_special_tokens, **kwargs).tokens()

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, padding=False, truncation=None,
               max_length: int | None = None, stride: int = 0, padding_side: str | None = None,
               return_tensors: str | None = None, **kwargs) -> list[int]:
        """The ids of one text (or pair); accepts the arguments of ``__call__``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                    max_length=max_length, stride=stride, padding_side=padding_side, return_tensors=return_tensors,
                    **kwargs)["input_ids"]
