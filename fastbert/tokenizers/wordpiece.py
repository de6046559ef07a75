"""``BertTokenizer``: fastbert's WordPiece tokenizer, with the call conventions and outputs of Hugging Face's
``BertTokenizerFast``.

>>> tok = fastbert.BertTokenizer.from_pretrained("path/to/checkpoint")     # vocab.txt / tokenizer.json
>>> batch = tok(["a sentence", "another one"], padding=True, truncation=True, max_length=128, return_tensors="np")
>>> batch["input_ids"].shape, batch.attention_mask.dtype, batch.word_ids(0)

The work happens in the C++ extension ``fastbert._C`` (``csrc/``), one unit per stage of the pipeline: added tokens
-> BERT normalizer (clean text, CJK spacing, accents, case) -> pre-tokenizer (whitespace, punctuation) -> WordPiece
-> truncation with overflowing windows -> [CLS] A [SEP] (B [SEP]) -> padding. It releases the GIL and encodes a batch
on ``num_threads`` threads. This module holds the vocabulary and options, builds the core, and does per call only
what the core cannot: the Python layers above it are the call signature (``call.py``, ``options.py``,
``truncation.py``), the outputs (``batch_encoding.py``, ``encoding.py``), ``pad`` (``padding.py``), ``decode``
(``decode.py``), the added tokens (``added_tokens.py``) and the files (``files.py``).

Where transformers' own behaviour is an accident (a Rust panic, an integer wrap-around, a crash in a helper), this
tokenizer raises a ``ValueError`` instead; see ``CallSignature.__call__``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .added_tokens import AddedVocabulary, read_added_tokens, token_content
from .batch_encoding import BatchEncoding
from .call import CallSignature
from .decode import Decoding, clean_up_tokenization, wordpiece_string
from .encoding import EncodingRows
from .errors import InputTypeError, OutOfRangeError
from .files import read_vocab_txt, save_wordpiece, wordpiece_options
from .options import (VERY_LARGE_INTEGER, CallOptions, check_side, non_negative, output_fields, resolve_strategies,
                      tensor_kind)
from .padding import Padding
from .special_tokens import BERT_SPECIALS, SpecialTokens
from .tensors import to_py
from .truncation import split_inputs

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


class BertTokenizer(CallSignature, Padding, Decoding, SpecialTokens, AddedVocabulary):
    """BERT WordPiece tokenizer with the call conventions of ``transformers.BertTokenizerFast``.

    The C++ core encodes; this class holds the vocabulary and options and composes the units around the core:
    the call signature (``CallSignature``), ``pad`` (``Padding``), ``decode`` (``Decoding``), the special tokens
    (``SpecialTokens``) and added tokens (``AddedVocabulary``); its files are read and written by ``files.py``.

    Args:
        vocab_file: path of a ``vocab.txt`` (one token per line, id = line number), or pass ``vocab``.
        vocab: token -> id mapping (instead of ``vocab_file``).
        do_lower_case: lowercase the text (full Unicode mapping).
        strip_accents: remove accents (NFD, drop nonspacing marks); ``None`` follows ``do_lower_case``.
        tokenize_chinese_chars: put spaces around CJK ideographs.
        clean_text: drop control characters, map whitespace to spaces.
        unk_token, sep_token, pad_token, cls_token, mask_token: the special tokens (added as special tokens;
            one missing from the vocabulary gets the next free id, as in transformers).
        bos_token, eos_token: further named special tokens (MPNet's ``<s>``/``</s>``); BERT has none.
        pair_template: how special tokens frame a pair: ``"bert"``, ``[CLS] A [SEP] B [SEP]`` with B of token type
            1; ``"roberta"``, ``<s> A </s></s> B </s>`` all of type 0 (MPNet's tokenizer).
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
    PAIR_TEMPLATES = ("bert", "roberta")
    pair_template = "bert"
    bos_token = eos_token = None  # BERT has none

    def __init__(self, vocab_file: str | None = None, *, vocab: Mapping[str, int] | None = None,
                 do_lower_case: bool = True, strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 clean_text: bool = True, unk_token: str | None = "[UNK]", sep_token: str | None = "[SEP]",
                 pad_token: str | None = "[PAD]", cls_token: str | None = "[CLS]", mask_token: str | None = "[MASK]",
                 added_tokens: Sequence = (), extra_special_tokens: Sequence = (),
                 model_max_length: int = VERY_LARGE_INTEGER, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 split_special_tokens: bool = False, continuing_subword_prefix: str = "##",
                 max_input_chars_per_word: int = 100, num_threads: int | None = None,
                 bos_token: str | None = None, eos_token: str | None = None, pair_template: str = "bert"):
        if vocab is None:
            if vocab_file is None:
                raise ValueError("BertTokenizer needs a vocab_file or a vocab")
            if not os.path.isfile(vocab_file):
                raise OSError(f"vocabulary file not found: {vocab_file!r}")
            vocab = read_vocab_txt(vocab_file)
        self._vocab = dict(vocab)
        if pair_template not in self.PAIR_TEMPLATES:
            raise ValueError(f"pair_template must be one of {self.PAIR_TEMPLATES}, got {pair_template!r}")
        self.pair_template = pair_template
        check_side(padding_side, "padding_side")
        check_side(truncation_side, "truncation_side")
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.clean_text = clean_text
        self.unk_token, self.sep_token, self.pad_token = (token_content(unk_token), token_content(sep_token),
                                                          token_content(pad_token))
        self.cls_token, self.mask_token = token_content(cls_token), token_content(mask_token)
        self.bos_token, self.eos_token = token_content(bos_token), token_content(eos_token)
        self.extra_special_tokens = [token_content(t) for t in extra_special_tokens]
        self.model_max_length = model_max_length
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.split_special_tokens = split_special_tokens
        self.continuing_subword_prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        self.num_threads = num_threads or len(os.sched_getaffinity(0))
        self._added = read_added_tokens(added_tokens)
        if self.unk_token is None or (self.unk_token not in self._vocab and self.unk_token not in self._added):
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        named = [(t, True) for t in (pad_token, unk_token, cls_token, sep_token, mask_token, bos_token, eos_token)
                 if t is not None]
        self._register_tokens(named + [(t, True) for t in extra_special_tokens])
        self._build()

    # ------------------------------------------------------------------ construction
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
            max_input_chars_per_word=self.max_input_chars_per_word, double_sep=self.pair_template == "roberta")
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
    def from_pretrained(cls, path: str | os.PathLike, *, defaults: Mapping | None = None, **kwargs) -> BertTokenizer:
        """Loads a local checkpoint directory: ``tokenizer.json`` if present, else ``vocab.txt``, with the options
        of ``tokenizer_config.json`` and ``special_tokens_map.json`` and the added tokens (with their flags) of
        ``added_tokens_decoder`` (else of ``tokenizer.json``). Keyword arguments override them; ``defaults`` (a
        family's special tokens and ``pair_template``, from ``AutoTokenizer``) sit under them. The files' ``bos_token``
        and ``eos_token`` are read when ``defaults`` names them."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise OSError(f"not a checkpoint directory: {path!r}")
        defaults = dict(defaults or {})
        specials = BERT_SPECIALS + tuple(name for name in ("bos_token", "eos_token") if name in defaults)
        tokenizer = cls(**{**defaults, **wordpiece_options(path, specials), **kwargs})
        tokenizer.name_or_path = path
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> tuple[str, ...]:
        """Writes ``vocab.txt``, ``tokenizer_config.json`` (options, special tokens, added tokens with their flags)
        and ``special_tokens_map.json``, which this class and transformers' ``from_pretrained`` read back (so a
        Trainer can save it with its checkpoints). Returns the paths written."""
        return save_wordpiece(self, save_directory)

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

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return (4 if self.pair_template == "roberta" else 3) if pair else 2

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - 2

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

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
        return [self._token_of(i) for i in to_py(ids) if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        """WordPiece decoding: pieces joined with spaces, "##" pieces glued, spaces before punctuation removed."""
        return wordpiece_string(tokens)

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

    # ------------------------------------------------------------------ encoding and decoding
    def _tokens_of(self, ids: Sequence[int]) -> list[str]:
        table = self._id_to_token
        return [table[i] if 0 <= i < len(table) and table[i] is not None else self.unk_token for i in ids]

    def _encode(self, text, text_pair, options: CallOptions) -> BatchEncoding:
        """One input or a batch through the C++ core (positional arguments: see ``_C.pyi`` for their order). The
        options are unpacked into locals once: this is the per-call Python of the fast path."""
        (add_special_tokens, padding, truncation, max_length, stride, is_split_into_words, pad_to_multiple_of,
         padding_side, return_tensors, return_token_type_ids, return_attention_mask, return_overflowing_tokens,
         return_special_tokens_mask, return_offsets_mapping, return_length, split_special_tokens, num_threads) = options
        kind = None if return_tensors is None else tensor_kind(return_tensors)
        texts, pairs, batched = split_inputs(text, text_pair, bool(is_split_into_words))
        multiple = non_negative(pad_to_multiple_of, "pad_to_multiple_of")
        pad, trunc, length = resolve_strategies(padding, truncation, max_length, multiple, self.model_max_length,
                                                self.pad_token)
        if return_token_type_ids is None:  # transformers' default: the model's inputs (DistilBERT has no types)
            return_token_type_ids = "token_type_ids" in self.model_input_names
        fields = output_fields(return_token_type_ids, return_attention_mask, return_special_tokens_mask,
                               return_offsets_mapping)
        out, rows = self._core.encode_batch(
            texts, pairs, bool(is_split_into_words), bool(add_special_tokens), trunc, length,
            non_negative(stride, "stride", allow_none=False), self.truncation_side, bool(return_overflowing_tokens),
            pad, self.padding_side if padding_side is None else padding_side, multiple,
            bool(self.split_special_tokens if split_special_tokens is None else split_special_tokens), fields,
            bool(return_length), kind is not None, non_negative(num_threads or self.num_threads, "num_threads"))
        n_sequences = rows.n_sequences
        encodings = EncodingRows(rows, n_sequences, self._tokens_of)
        if kind is None:
            if not batched and not return_overflowing_tokens:
                out = {k: v[0] if v and isinstance(v[0], list) else v for k, v in out.items()}
            return BatchEncoding(out, encodings, n_sequences=n_sequences)
        return BatchEncoding(out, encodings, tensor_type=kind, n_sequences=n_sequences)

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None) -> str:
        """One row: WordPiece pieces joined (``convert_tokens_to_string``), then transformers' text clean-up if
        ``clean_up_tokenization_spaces``. Ids the vocabulary lacks are skipped; negative ids raise
        ``OutOfRangeError``."""
        if isinstance(token_ids, Mapping):
            token_ids = token_ids["input_ids"]
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [token_ids]
        tokens = [t for t in (self._token_of(i) for i in token_ids) if t is not None]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._special_contents]
        text = self.convert_tokens_to_string(tokens)
        if self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces:
            text = clean_up_tokenization(text)
        return text

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"truncation_side={self.truncation_side!r}, pair_template={self.pair_template!r})")
