"""A fast BERT WordPiece tokenizer, output-compatible with Hugging Face's ``BertTokenizerFast``.

>>> tok = fastbert.BertTokenizer.from_pretrained("path/to/checkpoint")     # vocab.txt / tokenizer.json
>>> batch = tok(["a sentence", "another one"], padding=True, truncation=True, max_length=128, return_tensors="np")
>>> batch["input_ids"].shape, batch.attention_mask.dtype

The work happens in the C++ extension ``fastbert._C`` (added tokens -> BERT normalizer -> pre-tokenizer ->
WordPiece -> truncation/padding), which releases the GIL and encodes a batch on ``num_threads`` threads.
This module only resolves the Hugging Face call conventions (padding/truncation strategies, single text vs
batch, tensor types) and reads checkpoint files.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    from . import _C
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

_SPECIAL_NAMES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_TRUNCATION = {True: "longest_first", False: "do_not_truncate", "longest_first": "longest_first",
               "only_first": "only_first", "only_second": "only_second", "do_not_truncate": "do_not_truncate"}
_PADDING = {True: "longest", False: "do_not_pad", "longest": "longest", "max_length": "max_length",
            "do_not_pad": "do_not_pad"}
# WordPiece decoder clean-up, as in BERT: spaces before punctuation and English contractions.
_CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
            (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


class BatchEncoding(dict):
    """The output of :class:`BertTokenizer`: a dict (``input_ids``, ``token_type_ids``, ``attention_mask``,
    ``offset_mapping``) whose keys can also be read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device) -> BatchEncoding:
        """Moves torch tensors to ``device`` (other values are kept)."""
        return BatchEncoding({k: v.to(device) if hasattr(v, "to") else v for k, v in self.items()})


def _token_content(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.get("content")  # transformers' serialized AddedToken


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_vocab_txt(path: str) -> dict[str, int]:
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


class BertTokenizer:
    """BERT WordPiece tokenizer with the call conventions of ``transformers.BertTokenizerFast``.

    Args:
        vocab_file: path of a ``vocab.txt`` (one token per line, id = line number), or pass ``vocab``.
        vocab: token -> id mapping (instead of ``vocab_file``).
        do_lower_case: lowercase the text (full Unicode mapping).
        strip_accents: remove accents (NFD, drop nonspacing marks); ``None`` follows ``do_lower_case``.
        tokenize_chinese_chars: put spaces around CJK ideographs.
        clean_text: drop control characters, map whitespace to spaces.
        unk_token, sep_token, pad_token, cls_token, mask_token: the special tokens.
        added_tokens: further (content, id) tokens kept whole when they appear in the text.
        model_max_length: the default ``max_length`` of truncation and of ``padding="max_length"``.
        num_threads: threads used for a batch (default: the CPUs this process may run on).
    """

    def __init__(self, vocab_file: str | None = None, *, vocab: dict[str, int] | None = None,
                 do_lower_case: bool = True, strip_accents: bool | None = None, tokenize_chinese_chars: bool = True,
                 clean_text: bool = True, unk_token: str = "[UNK]", sep_token: str = "[SEP]",
                 pad_token: str = "[PAD]", cls_token: str = "[CLS]", mask_token: str = "[MASK]",
                 added_tokens: Sequence[tuple[str, int]] = (), model_max_length: int = VERY_LARGE_INTEGER,
                 continuing_subword_prefix: str = "##", max_input_chars_per_word: int = 100,
                 num_threads: int | None = None):
        if vocab is None:
            if vocab_file is None:
                raise ValueError("BertTokenizer needs a vocab_file or a vocab")
            if not os.path.isfile(vocab_file):
                raise OSError(f"vocabulary file not found: {vocab_file!r}")
            vocab = _read_vocab_txt(vocab_file)
        self._vocab = dict(vocab)
        if unk_token not in self._vocab:
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.clean_text = clean_text
        self.unk_token, self.sep_token, self.pad_token = unk_token, sep_token, pad_token
        self.cls_token, self.mask_token = cls_token, mask_token
        self.model_max_length = model_max_length
        self.num_threads = num_threads or len(os.sched_getaffinity(0))

        added = {}
        for token in (pad_token, unk_token, cls_token, sep_token, mask_token):
            if token is not None and token in self._vocab:
                added[token] = self._vocab[token]
        for content, index in added_tokens:
            added[content] = index
        self._added = added
        self._special_tokens = {t for t in (unk_token, sep_token, pad_token, cls_token, mask_token) if t is not None}
        size = max([*self._vocab.values(), *added.values()]) + 1
        self._id_to_token: list[str | None] = [None] * size
        for token, index in self._vocab.items():
            self._id_to_token[index] = token
        for token, index in added.items():
            self._id_to_token[index] = token

        def id_of(token):
            return added.get(token, self._vocab.get(token, -1)) if token is not None else -1

        self._core = _C.Tokenizer(
            list(self._vocab.items()), list(added.items()), unk_id=id_of(unk_token), cls_id=id_of(cls_token),
            sep_id=id_of(sep_token), pad_id=id_of(pad_token), lowercase=do_lower_case, strip_accents=strip_accents,
            handle_chinese_chars=tokenize_chinese_chars, clean_text=clean_text,
            continuing_subword_prefix=continuing_subword_prefix, max_input_chars_per_word=max_input_chars_per_word)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> BertTokenizer:
        """Loads a local checkpoint directory: ``tokenizer.json`` if present, else ``vocab.txt``, with the options
        of ``tokenizer_config.json`` and ``special_tokens_map.json``. Keyword arguments override them."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise OSError(f"not a checkpoint directory: {path!r}")
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            file = os.path.join(path, name)
            if os.path.isfile(file):
                config.update(_read_json(file))
        options: dict[str, Any] = {}
        for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length"):
            if key in config:
                options[key] = config[key]
        for key in _SPECIAL_NAMES:
            if key in config:
                options[key] = _token_content(config[key])
        added: list[tuple[str, int]] = [(_token_content(t), int(i))
                                        for i, t in config.get("added_tokens_decoder", {}).items()]

        tokenizer_json = os.path.join(path, "tokenizer.json")
        vocab_txt = os.path.join(path, "vocab.txt")
        if os.path.isfile(tokenizer_json):
            spec = _read_json(tokenizer_json)
            model = spec.get("model") or {}
            if model.get("type") != "WordPiece":
                raise ValueError(f"{tokenizer_json} is not a WordPiece tokenizer (model type {model.get('type')!r})")
            options["vocab"] = model["vocab"]
            options["unk_token"] = model.get("unk_token", options.get("unk_token", "[UNK]"))
            options["continuing_subword_prefix"] = model.get("continuing_subword_prefix", "##")
            options["max_input_chars_per_word"] = model.get("max_input_chars_per_word", 100)
            normalizer = spec.get("normalizer") or {}
            if normalizer.get("type") == "BertNormalizer":
                options["do_lower_case"] = normalizer.get("lowercase", True)
                options["strip_accents"] = normalizer.get("strip_accents")
                options["tokenize_chinese_chars"] = normalizer.get("handle_chinese_chars", True)
                options["clean_text"] = normalizer.get("clean_text", True)
            added += [(t["content"], t["id"]) for t in spec.get("added_tokens", [])]
        elif os.path.isfile(vocab_txt):
            options["vocab_file"] = vocab_txt
        else:
            raise OSError(f"no vocab.txt or tokenizer.json in {path!r}")
        options["added_tokens"] = added
        options.update(kwargs)
        return cls(**options)

    # ------------------------------------------------------------------ vocabulary
    @property
    def vocab(self) -> dict[str, int]:
        """Token -> id, added tokens included."""
        return {**self._vocab, **self._added}

    def get_vocab(self) -> dict[str, int]:
        return self.vocab

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def sep_token_id(self) -> int | None:
        return self._id(self.sep_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def cls_token_id(self) -> int | None:
        return self._id(self.cls_token)

    @property
    def mask_token_id(self) -> int | None:
        return self._id(self.mask_token)

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in sorted(self._special_tokens)]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Id of a token (the unknown token's id if absent), or ids of a list of tokens."""
        if isinstance(tokens, str):
            index = self._core.token_to_id(tokens)
            return self._vocab[self.unk_token] if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False):
        """Token of an id, or tokens of a list of ids."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token[int(ids)]
        tokens = [self._id_to_token[int(i)] for i in ids]
        if skip_special_tokens:
            tokens = [t for t in tokens if t not in self._special_tokens]
        return tokens

    # ------------------------------------------------------------------ encoding
    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text``, without special tokens."""
        ids = self._core.encode_batch([text], add_special_tokens=False, num_threads=1)["input_ids"][0]
        return [self._id_to_token[i] for i in ids]

    def encode(self, text: str, text_pair: str | None = None, add_special_tokens: bool = True, **kwargs) -> list[int]:
        """The ids of one text (or pair); accepts the padding/truncation arguments of ``__call__``."""
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    def _strategies(self, padding, truncation, max_length, pad_to_multiple_of):
        """transformers' resolution of padding/truncation arguments into (padding, truncation, max_length)."""
        if padding not in _PADDING:
            raise ValueError(f"padding must be one of {list(_PADDING)}, not {padding!r}")
        if truncation is not None and truncation not in _TRUNCATION:
            raise ValueError(f"truncation must be one of {list(_TRUNCATION)}, not {truncation!r}")
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"  # transformers: max_length alone implies truncation
        pad = _PADDING[padding]
        trunc = _TRUNCATION[truncation if truncation is not None else False]
        pad_length = trunc_length = max_length
        if max_length is None:
            limit = self.model_max_length if self.model_max_length <= LARGE_INTEGER else None
            if pad == "max_length":
                if limit is None:
                    pad = "do_not_pad"
                pad_length = limit
            if trunc != "do_not_truncate":
                if limit is None:
                    trunc = "do_not_truncate"
                trunc_length = limit
        if (trunc != "do_not_truncate" and pad != "do_not_pad" and pad_to_multiple_of is not None
                and trunc_length is not None and trunc_length % pad_to_multiple_of != 0):
            raise ValueError("Truncation and padding are both activated but truncation length "
                             f"({trunc_length}) is not a multiple of pad_to_multiple_of ({pad_to_multiple_of}).")
        return pad, trunc, trunc_length if trunc != "do_not_truncate" else pad_length

    def __call__(self, text: str | Sequence[str], text_pair: str | Sequence[str] | None = None,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 return_tensors: str | None = None, return_offsets_mapping: bool = False,
                 return_attention_mask: bool | None = None, return_token_type_ids: bool | None = None,
                 num_threads: int | None = None) -> BatchEncoding:
        """Encodes one text (or text pair) or a batch, like ``BertTokenizerFast.__call__``.

        ``text``: a str or a list of str; ``text_pair``: the same shape. ``padding``: False | True | "longest" |
        "max_length"; ``truncation``: None | False | True | "longest_first" | "only_first" | "only_second";
        ``max_length`` counts the special tokens. ``return_tensors``: None (lists), "np" or "pt" (int64).
        Raises TypeError for non-str inputs and ValueError where transformers raises (e.g. "only_second" when
        the second sequence cannot be shortened enough) and for text with lone surrogates.
        """
        if return_tensors not in (None, "np", "pt"):
            raise ValueError(f"return_tensors must be None, 'np' or 'pt', not {return_tensors!r}")
        single = isinstance(text, str)
        if single:
            if text_pair is not None and not isinstance(text_pair, str):
                raise TypeError(f"text_pair must be a str when text is a str, not {type(text_pair).__name__}")
            texts = [text]
            pairs = None if text_pair is None else [text_pair]
        elif isinstance(text, (list, tuple)):
            texts = text
            if text_pair is not None and (isinstance(text_pair, str) or not isinstance(text_pair, (list, tuple))):
                raise TypeError("text_pair must be a list of str when text is a list")
            pairs = text_pair
        else:
            raise TypeError(f"text must be a str or a list of str, not {type(text).__name__}")
        pad, trunc, length = self._strategies(padding, truncation, max_length, pad_to_multiple_of)
        out = self._core.encode_batch(
            texts, pairs, add_special_tokens=add_special_tokens, truncation=trunc, max_length=length, padding=pad,
            pad_to_multiple_of=pad_to_multiple_of, return_offsets=return_offsets_mapping,
            as_numpy=return_tensors is not None, num_threads=num_threads or self.num_threads)
        if return_attention_mask is False:
            del out["attention_mask"]
        if return_token_type_ids is False:
            del out["token_type_ids"]
        if return_tensors is None:
            if single:
                out = {k: v[0] for k, v in out.items()}
        elif isinstance(out["input_ids"], list):  # rows of different lengths
            if return_tensors == "pt":
                raise ValueError("Unable to create tensor, you should probably activate truncation and/or padding "
                                 "with 'padding=True' 'truncation=True' to have batched tensors with the same length.")
            out = {k: _object_array(v) for k, v in out.items()}
        if return_tensors == "pt":
            import torch
            out = {k: torch.from_numpy(v) for k, v in out.items()}
        return BatchEncoding(out)

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: int | Sequence[int], skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool = False) -> str:
        """Text of ids: WordPiece pieces joined ("##" pieces glued), with BERT's spacing clean-up of punctuation."""
        if isinstance(ids, (int, np.integer)):
            ids = [ids]
        elif hasattr(ids, "tolist"):
            ids = ids.tolist()
        tokens = [t for t in self.convert_ids_to_tokens(ids, skip_special_tokens=skip_special_tokens)
                  if t is not None]
        pieces = []
        for i, token in enumerate(tokens):
            if i:
                token = token[2:] if token.startswith("##") else " " + token
            for old, new in _CLEANUP:
                token = token.replace(old, new)
            pieces.append(token)
        text = "".join(pieces)
        if clean_up_tokenization_spaces:
            for old, new in _CLEANUP:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences, **kwargs) -> list[str]:
        return [self.decode(s, **kwargs) for s in sequences]

    def __repr__(self) -> str:
        return (f"BertTokenizer(vocab_size={self.vocab_size}, do_lower_case={self.do_lower_case}, "
                f"strip_accents={self.strip_accents}, tokenize_chinese_chars={self.tokenize_chinese_chars}, "
                f"model_max_length={self.model_max_length})")


def _object_array(rows: list) -> np.ndarray:
    """transformers' numpy output for rows of different lengths: an object array of int64 arrays."""
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = np.asarray(row, dtype=np.int64)
    return out
