"""``TokenizersTokenizer``: the byte-level BPE (RoBERTa) and Unigram/SentencePiece (XLM-RoBERTa, ALBERT) families on
the Rust ``tokenizers`` library, with the call signature and outputs of fastbert's ``BertTokenizer``.

Why ``tokenizers`` and not C++ for BPE and Unigram: transformers' fast tokenizers of these families *are* the
``tokenizers`` library, so running the same library on the same pipeline gives the same output by construction,
where a C++ port would need its own proof of parity (byte-level pre-tokenizer regex, BPE merge order, Unigram
Viterbi scores, SentencePiece's precompiled normalizer) for no large gain: the WordPiece C++ tokenizer wins
through BERT's simple normalizer and multi-threaded batches, while ``tokenizers`` already runs Rust on all cores
and this wrapper adds only the per-row Python that transformers adds too: it takes 0.82-0.97x transformers' time
on the same batches (``python -m benchmarks.bench_family_tokenizers``; 2-core Intel Xeon).

The ``tokenizers`` library is only used through the backend object handed to the constructor (``auto.py`` builds
it), so this module imports nothing from it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np

from .batch_encoding import BatchEncoding
from .call import CallSignature
from .decode import Decoding, clean_up_tokenization
from .errors import InputTypeError
from .files import write_json
from .options import VERY_LARGE_INTEGER, CallOptions, check_side, non_negative, resolve_strategies, tensor_kind
from .padding import Padding
from .special_tokens import SpecialTokens
from .tensors import to_py
from .truncation import check_window, overflow_rows, overflow_to_sample_mapping, split_inputs


class TokenizersTokenizer(CallSignature, Padding, Decoding, SpecialTokens):
    """A ``tokenizers.Tokenizer`` with the call conventions and outputs of transformers' fast tokenizers.

    The call (``__call__``, ``encode``, ``tokenize``, ``pad``, ``decode``) and its argument resolution are the
    units :class:`~fastbert.tokenizers.BertTokenizer` composes too, the output its ``BatchEncoding`` (holding
    ``tokenizers.Encoding`` rows for ``word_ids``, ``token_to_chars``...); only encoding and decoding one row
    differ. Build it with :meth:`AutoTokenizer.from_pretrained`.

    Args:
        tokenizer: the backend ``tokenizers.Tokenizer`` (its pipeline complete: post-processor included).
        model_input_names: the fields returned by default (``token_type_ids`` only if listed).
        bos_token ... mask_token: the named special tokens (None: absent).
        model_max_length, padding_side, truncation_side, clean_up_tokenization_spaces, split_special_tokens:
            as in transformers.
    """

    is_fast = True
    pad_token_type_id = 0
    name_or_path = ""

    def __init__(self, tokenizer, *, model_input_names: Sequence[str] = ("input_ids", "attention_mask"),
                 bos_token: str | None = None, eos_token: str | None = None, unk_token: str | None = None,
                 sep_token: str | None = None, pad_token: str | None = None, cls_token: str | None = None,
                 mask_token: str | None = None, extra_special_tokens: Sequence[str] = (),
                 model_max_length: int = VERY_LARGE_INTEGER, padding_side: str = "right",
                 truncation_side: str = "right", clean_up_tokenization_spaces: bool = False,
                 split_special_tokens: bool = False):
        check_side(padding_side, "padding_side")
        check_side(truncation_side, "truncation_side")
        self._tokenizer = tokenizer
        self.model_input_names = list(model_input_names)
        self.bos_token, self.eos_token, self.unk_token, self.sep_token = bos_token, eos_token, unk_token, sep_token
        self.pad_token, self.cls_token, self.mask_token = pad_token, cls_token, mask_token
        self.extra_special_tokens = list(extra_special_tokens)
        self.model_max_length = model_max_length
        self.padding_side, self.truncation_side = padding_side, truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.split_special_tokens = split_special_tokens
        self._settings = None  # the truncation/padding last set on the backend

    @property
    def backend_tokenizer(self):
        """The ``tokenizers.Tokenizer`` that does the work."""
        return self._tokenizer

    def __repr__(self) -> str:
        model = type(self._tokenizer.model).__name__
        return (f"TokenizersTokenizer({model}, vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
                f"padding_side={self.padding_side!r}, truncation_side={self.truncation_side!r})")

    # ------------------------------------------------------------------ vocabulary and special tokens
    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    vocab = property(get_vocab)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str] | None) -> int | list[int] | None:
        """Id of a token (the unknown token's id if absent), or ids of a list of tokens."""
        if tokens is None:
            return None
        if isinstance(tokens, str):
            index = self._tokenizer.token_to_id(tokens)
            return self._tokenizer.token_to_id(self.unk_token) if index is None and self.unk_token else index
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False):
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
            return self._tokenizer.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [self._tokenizer.id_to_token(int(i)) for i in to_py(ids) if int(i) not in skip]

    # ------------------------------------------------------------------ encoding
    def _configure(self, pad: str, trunc: str, length: int | None, stride: int, multiple: int | None,
                   padding_side: str | None) -> None:
        """Sets the backend's truncation and padding for this call (as transformers does), when they change."""
        side = check_side(self.padding_side if padding_side is None else padding_side, "padding_side")
        settings = (pad, trunc, length, stride, multiple or None, side, self.truncation_side)
        if settings == self._settings:
            return
        backend = self._tokenizer
        if trunc == "do_not_truncate":
            backend.no_truncation()
        else:
            backend.enable_truncation(length, stride=stride, strategy=trunc, direction=self.truncation_side)
        if pad == "do_not_pad":
            backend.no_padding()
        else:
            backend.enable_padding(direction=side, pad_id=self.pad_token_id, pad_type_id=self.pad_token_type_id,
                                   pad_token=self.pad_token, length=length if pad == "max_length" else None,
                                   pad_to_multiple_of=multiple or None)
        self._settings = settings

    def _encode(self, text, text_pair, options: CallOptions) -> BatchEncoding:
        """One input or a batch on the ``tokenizers`` backend, its truncation and padding set for this call."""
        o = options
        if o.num_threads is not None:
            raise ValueError(f"num_threads is not supported by the {self.__class__.__name__} of this folder (the "
                             "tokenizers library sets its threads once per process: set RAYON_NUM_THREADS)")
        kind = None if o.return_tensors is None else tensor_kind(o.return_tensors)
        texts, pairs, batched = split_inputs(text, text_pair, bool(o.is_split_into_words))
        multiple = non_negative(o.pad_to_multiple_of, "pad_to_multiple_of")
        stride = non_negative(o.stride, "stride", allow_none=False)
        pad, trunc, length = resolve_strategies(o.padding, o.truncation, o.max_length, multiple, self.model_max_length,
                                                self.pad_token)
        if trunc != "do_not_truncate":
            check_window(length, stride, self.num_special_tokens_to_add(pairs is not None) if o.add_special_tokens
                         else 0)
        self._configure(pad, trunc, length, stride, multiple, o.padding_side)
        split = self.split_special_tokens if o.split_special_tokens is None else o.split_special_tokens
        self._tokenizer.encode_special_tokens = bool(split)
        inputs = texts if pairs is None else list(zip(texts, pairs))
        try:
            encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=bool(o.add_special_tokens),
                                                     is_pretokenized=bool(o.is_split_into_words))
        except BaseException as e:  # the library's errors are plain Exceptions, its Rust panics BaseExceptions
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ValueError(f"tokenizers cannot encode this input: {e}") from None
        rows = overflow_rows(encodings, o.return_overflowing_tokens)
        out = self._fields(rows, o)
        if o.return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = overflow_to_sample_mapping(encodings)
        if kind is None and not batched and not o.return_overflowing_tokens:
            out = {k: v[0] if v and isinstance(v[0], list) else v for k, v in out.items()}
        return BatchEncoding(out, rows, tensor_type=kind, n_sequences=rows[0].n_sequences if rows else None)

    def _fields(self, rows, options: CallOptions) -> dict[str, list]:
        """The fields of ``tokenizers.Encoding`` rows that the call asks for (token types and attention mask by
        default where ``model_input_names`` lists them), and ``length``."""
        return_token_type_ids, return_attention_mask = options.return_token_type_ids, options.return_attention_mask
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        fields = {"input_ids": "ids", "token_type_ids": return_token_type_ids and "type_ids",
                  "attention_mask": return_attention_mask and "attention_mask",
                  "special_tokens_mask": options.return_special_tokens_mask and "special_tokens_mask",
                  "offset_mapping": options.return_offsets_mapping and "offsets"}
        out = {key: [getattr(r, attr) for r in rows] for key, attr in fields.items() if attr}
        if options.return_length:
            out["length"] = [len(r.ids) for r in rows]
        return out

    def _decode(self, token_ids, skip_special_tokens: bool, clean_up_tokenization_spaces: bool | None):
        """One row by the backend's decoder; transformers' text clean-up if ``clean_up_tokenization_spaces``
        (never for BPE, as transformers). A mapping (its ``input_ids``) or a deeper batch decodes as ``decode``."""
        if isinstance(token_ids, Mapping):
            return self.decode(token_ids["input_ids"], skip_special_tokens, clean_up_tokenization_spaces)
        if isinstance(token_ids, (list, tuple)) and token_ids and isinstance(token_ids[0], (list, tuple)):
            return self.decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces)
        if isinstance(token_ids, (int, np.integer)):
            token_ids = [token_ids]
        for i in token_ids:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise InputTypeError(f"token ids must be int, not {type(i).__name__}")
            if not 0 <= i < 2**32:
                raise ValueError(f"token id {i} is out of range (ids are >= 0 and < 2**32)")
        text = self._tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else \
            clean_up_tokenization_spaces
        if clean and type(self._tokenizer.model).__name__ != "BPE":
            text = clean_up_tokenization(text)
        return text

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> tuple[str, ...]:
        """Writes ``tokenizer.json`` (the pipeline as it runs) and ``tokenizer_config.json`` (special tokens and
        options, as a generic fast tokenizer that transformers and fastbert load back). Returns the paths."""
        os.makedirs(save_directory, exist_ok=True)
        spec = json.loads(self._tokenizer.to_str())
        spec["truncation"] = spec["padding"] = None
        config = {"tokenizer_class": "PreTrainedTokenizerFast", **self.special_tokens_map,
                  "extra_special_tokens": list(self.extra_special_tokens),
                  "model_input_names": self.model_input_names, "model_max_length": self.model_max_length,
                  "padding_side": self.padding_side, "truncation_side": self.truncation_side,
                  "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
                  "split_special_tokens": self.split_special_tokens}
        paths = tuple(os.path.join(save_directory, n) for n in ("tokenizer.json", "tokenizer_config.json"))
        for path, value in zip(paths, (spec, config)):
            write_json(path, value)
        return paths
