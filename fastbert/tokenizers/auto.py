"""``fastbert.AutoTokenizer``: the tokenizer of any supported family, as transformers' ``AutoTokenizer`` loads it.

>>> tok = fastbert.AutoTokenizer.from_pretrained("path/to/xlm-roberta-folder")
>>> tok(["a text", "another"], padding=True, truncation=True, max_length=128, return_tensors="pt")

Which tokenizer (``TOKENIZERS``, picked by ``tokenizer_class`` in ``tokenizer_config.json``, else by ``model_type``
in ``config.json``):

- WordPiece (BERT, DistilBERT, ELECTRA): fastbert's C++ :class:`~fastbert.tokenizers.BertTokenizer`. DistilBERT's
  inputs have no ``token_type_ids`` (its ``model_input_names``), as with transformers.
- Byte-level BPE (RoBERTa) and Unigram/SentencePiece (XLM-RoBERTa, ALBERT): :class:`TokenizersTokenizer`, a thin
  wrapper over the Rust ``tokenizers`` library with ``BertTokenizer``'s call signature and ``BatchEncoding``.

Why ``tokenizers`` and not C++ for BPE and Unigram: transformers' fast tokenizers of these families *are* the
``tokenizers`` library, so running the same library on the same pipeline gives the same output by construction,
where a C++ port would need its own proof of parity (byte-level pre-tokenizer regex, BPE merge order, Unigram
Viterbi scores, SentencePiece's precompiled normalizer) for no large gain: the WordPiece C++ tokenizer wins
through BERT's simple normalizer and multi-threaded batches, while ``tokenizers`` already runs Rust on all cores
and this wrapper adds only the per-row Python that transformers adds too: it takes 0.82-0.97x transformers' time
on the same batches (``python -m benchmarks.bench_family_tokenizers``; 2-core Intel Xeon).

The pipeline is transformers 5's, not the file's alone: transformers' tokenizer classes for these families
rebuild parts of ``tokenizer.json`` when they load it (RoBERTa: no normalizer, its byte-level pre-tokenizer and
``RobertaProcessing``; XLM-R: only a SentencePiece precompiled normalizer, whitespace split + Metaspace, its
template; ALBERT: its normalizer from ``do_lower_case``/``keep_accents``). ``FAMILY_PIPELINES`` states these
rebuilds as data, so a folder gives what ``transformers.AutoTokenizer`` gives for it, including folders written by
older versions. A folder with only SentencePiece files (``spiece.model``, ``sentencepiece.bpe.model``) and no
``tokenizer.json`` is refused with the command that converts it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .added_tokens import token_content
from .batch_encoding import BatchEncoding
from .call import CallSignature
from .decode import Decoding, clean_up_tokenization
from .errors import InputTypeError
from .files import extra_special_tokens, read_json, tokenizer_options, write_json
from .options import LARGE_INTEGER, VERY_LARGE_INTEGER, CallOptions, check_side, non_negative, resolve_strategies
from .padding import Padding
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES, SpecialTokens
from .tensors import to_py
from .truncation import check_window, overflow_rows, overflow_to_sample_mapping
from .wordpiece import BertTokenizer

_SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")


# ----------------------------------------------------------------------------------------------------------------
# The families' pipelines (transformers 5's tokenizer classes, as data): tokenizer.json dict + options -> dict
# ----------------------------------------------------------------------------------------------------------------

def _precompiled(normalizer: Mapping | None) -> dict | None:
    """The SentencePiece ``Precompiled`` normalizer inside a tokenizer.json normalizer (or a Sequence), if any."""
    if not normalizer:
        return None
    if normalizer.get("type") == "Sequence":
        return next((n for n in map(_precompiled, normalizer.get("normalizers", [])) if n), None)
    return dict(normalizer) if normalizer.get("type") == "Precompiled" else None


def _metaspace_split(add_prefix_space: bool) -> tuple[dict, dict]:
    """(pre-tokenizer, decoder): split on whitespace, then SentencePiece's ``▁`` word marks."""
    scheme = "always" if add_prefix_space else "never"
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}
    return {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]}, dict(metaspace)


def _template(single: list[tuple[str, int]], pair: list[tuple[str, int]], ids: Mapping[str, int]) -> dict:
    """A TemplateProcessing: ``single``/``pair`` list (piece, type id), a piece being ``$A``, ``$B`` or a token."""
    def steps(template):
        return [{"Sequence": {"id": p[1:], "type_id": t}} if p in ("$A", "$B") else
                {"SpecialToken": {"id": p, "type_id": t}} for p, t in template]
    tokens = {p for p, _ in single + pair if p not in ("$A", "$B")}
    return {"type": "TemplateProcessing", "single": steps(single), "pair": steps(pair),
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in sorted(tokens)}}


def roberta_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """RoBERTa: byte-level BPE, no normalizer, ``<s> A </s></s> B </s>`` (all type 0)."""
    prefix, trim = bool(options.get("add_prefix_space", False)), bool(options.get("trim_offsets", True))
    model = dict(spec["model"], dropout=None, unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                 fuse_unk=False, byte_fallback=False)
    sep, cls = options["sep_token"], options["cls_token"]
    return dict(spec, model=model, normalizer=None,
                pre_tokenizer={"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True,
                               "use_regex": True},
                decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                post_processor={"type": "RobertaProcessing", "sep": [sep, ids[sep]], "cls": [cls, ids[cls]],
                                "trim_offsets": trim, "add_prefix_space": prefix})


def xlm_roberta_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """XLM-RoBERTa: Unigram (unknown id 3), only SentencePiece's precompiled normalizer, ``<s> A </s></s> B </s>``."""
    pre, decoder = _metaspace_split(bool(options.get("add_prefix_space", True)))
    bos, eos = options["bos_token"], options["eos_token"]
    post = _template([(bos, 0), ("$A", 0), (eos, 0)], [(bos, 0), ("$A", 0), (eos, 0), (eos, 0), ("$B", 0), (eos, 0)],
                     ids)
    return dict(spec, model=dict(spec["model"], unk_id=3, byte_fallback=False),
                normalizer=_precompiled(spec.get("normalizer")), pre_tokenizer=pre, decoder=decoder,
                post_processor=post)


def albert_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """ALBERT: Unigram (unknown id 1), ``` `` ```/``''`` to ``"``, accents stripped unless ``keep_accents``,
    lowercase if ``do_lower_case``, then the precompiled normalizer; ``[CLS] A [SEP] B [SEP]`` (types 0/1) unless
    the file has its own post-processor."""
    steps = [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
             {"type": "Replace", "pattern": {"String": "''"}, "content": '"'}]
    if not options.get("keep_accents", False):
        steps += [{"type": "NFKD"}, {"type": "StripAccents"}]
    if options.get("do_lower_case", True):
        steps.append({"type": "Lowercase"})
    precompiled = _precompiled(spec.get("normalizer"))
    if precompiled:
        steps.append(precompiled)
    pre, decoder = _metaspace_split(bool(options.get("add_prefix_space", True)))
    cls, sep = options["cls_token"], options["sep_token"]
    post = spec.get("post_processor") or _template(
        [("[CLS]", 0), ("$A", 0), ("[SEP]", 0)], [("[CLS]", 0), ("$A", 0), ("[SEP]", 0), ("$B", 1), ("[SEP]", 1)],
        {"[CLS]": ids[cls], "[SEP]": ids[sep]})
    return dict(spec, model=dict(spec["model"], unk_id=1, byte_fallback=False),
                normalizer={"type": "Sequence", "normalizers": steps}, pre_tokenizer=pre, decoder=decoder,
                post_processor=post)


def file_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """A generic ``tokenizer.json`` (transformers' ``PreTrainedTokenizerFast``): the file as it is."""
    return spec


@dataclass(frozen=True)
class TokenizerKind:
    """How transformers builds one tokenizer class: the model it needs, its special tokens and model inputs, and
    (for ``tokenizers`` ones) the pipeline it rebuilds. ``pipeline=None``: fastbert's WordPiece ``BertTokenizer``."""

    model: str  # the tokenizer.json model type: "WordPiece", "BPE", "Unigram" ("" any)
    pipeline: Callable[[dict, Mapping[str, Any], Mapping[str, int]], dict] | None = None
    specials: Mapping[str, str] = field(default_factory=dict)
    model_input_names: tuple[str, ...] = ("input_ids", "token_type_ids", "attention_mask")


_ROBERTA_SPECIALS = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>", pad_token="<pad>",
                         cls_token="<s>", mask_token="<mask>")
_NO_TYPES = ("input_ids", "attention_mask")
TOKENIZERS: dict[str, TokenizerKind] = {
    "BertTokenizer": TokenizerKind("WordPiece"),
    "ElectraTokenizer": TokenizerKind("WordPiece"),
    "DistilBertTokenizer": TokenizerKind("WordPiece", model_input_names=_NO_TYPES),
    "RobertaTokenizer": TokenizerKind("BPE", roberta_pipeline, _ROBERTA_SPECIALS, _NO_TYPES),
    "XLMRobertaTokenizer": TokenizerKind("Unigram", xlm_roberta_pipeline, _ROBERTA_SPECIALS, _NO_TYPES),
    "AlbertTokenizer": TokenizerKind("Unigram", albert_pipeline, dict(
        bos_token="[CLS]", eos_token="[SEP]", unk_token="<unk>", sep_token="[SEP]", pad_token="<pad>",
        cls_token="[CLS]", mask_token="[MASK]"), _NO_TYPES),
    "PreTrainedTokenizerFast": TokenizerKind("", file_pipeline),
    "TokenizersBackend": TokenizerKind("", file_pipeline),
}
# config.json model_type -> tokenizer class, when tokenizer_config.json names none.
MODEL_TYPES = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer", "electra": "ElectraTokenizer",
               "roberta": "RobertaTokenizer", "xlm-roberta": "XLMRobertaTokenizer", "albert": "AlbertTokenizer"}


# ----------------------------------------------------------------------------------------------------------------
# The tokenizers-library wrapper
# ----------------------------------------------------------------------------------------------------------------

class TokenizersTokenizer(CallSignature, Padding, Decoding, SpecialTokens):
    """A ``tokenizers.Tokenizer`` with the call conventions and outputs of transformers' fast tokenizers.

    The call (``__call__``, ``encode``, ``tokenize``, ``pad``, ``decode``) and its argument resolution are the
    units :class:`~fastbert.tokenizers.BertTokenizer` composes too, the output its ``BatchEncoding`` (holding
    ``tokenizers.Encoding`` rows for ``word_ids``, ``token_to_chars``...); only encoding and decoding one row differ. Build it with
    :meth:`AutoTokenizer.from_pretrained`.

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

    def __init__(self, tokenizer, *, model_input_names: Sequence[str] = _NO_TYPES, bos_token: str | None = None,
                 eos_token: str | None = None, unk_token: str | None = None, sep_token: str | None = None,
                 pad_token: str | None = None, cls_token: str | None = None, mask_token: str | None = None,
                 extra_special_tokens: Sequence[str] = (), model_max_length: int = VERY_LARGE_INTEGER,
                 padding_side: str = "right", truncation_side: str = "right",
                 clean_up_tokenization_spaces: bool = False, split_special_tokens: bool = False):
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
        kind, texts, pairs, batched, multiple = self._read_inputs(text, text_pair, o)
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


# ----------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------

class AutoTokenizer:
    """The tokenizer of a local folder, chosen as transformers' ``AutoTokenizer`` chooses it (see the module
    docstring and ``TOKENIZERS``)."""

    @staticmethod
    def from_pretrained(path: str | os.PathLike, **kwargs) -> BertTokenizer | TokenizersTokenizer:
        """Load the tokenizer in ``path``: ``tokenizer_config.json`` (+ ``special_tokens_map.json``) options,
        ``tokenizer.json`` (or ``vocab.txt`` for WordPiece); keyword arguments override the options.

        Raises ``OSError`` for a missing folder or tokenizer file (a SentencePiece-only folder names the conversion
        command), ``ValueError`` for a tokenizer class or model type fastbert does not implement, or a
        ``tokenizer.json`` whose model does not fit the class."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise OSError(f"not a model folder: {path!r} (fastbert reads only local folders)")
        config = tokenizer_options(path)
        name = _tokenizer_class(path, config)
        kind = TOKENIZERS[name]
        names = kwargs.pop("model_input_names", None) or config.get("model_input_names") or kind.model_input_names
        if kind.pipeline is None:
            tokenizer = BertTokenizer.from_pretrained(path, **kwargs)
            tokenizer.model_input_names = list(names)
            return tokenizer
        unknown = sorted(set(kwargs) - _OPTIONS)
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)} for a {name} (fastbert reads "
                            f"{', '.join(sorted(_OPTIONS))})")
        spec = _tokenizer_json(path, name, kind)
        options = {**kind.specials, **{k: token_content(v) for k, v in config.items()
                                       if k in SPECIAL_TOKENS_ATTRIBUTES}}
        options.update({k: v for k, v in config.items() if k not in SPECIAL_TOKENS_ATTRIBUTES})
        options.update(kwargs)
        tokenizer = _build(path, spec, kind, options)
        max_length = options.get("model_max_length", VERY_LARGE_INTEGER)
        wrapper = TokenizersTokenizer(
            tokenizer, model_input_names=names, **{k: options.get(k) for k in SPECIAL_TOKENS_ATTRIBUTES},
            extra_special_tokens=extra_special_tokens(options),
            model_max_length=VERY_LARGE_INTEGER if max_length is None or max_length > LARGE_INTEGER else max_length,
            padding_side=options.get("padding_side", "right"), truncation_side=options.get("truncation_side", "right"),
            clean_up_tokenization_spaces=bool(options.get("clean_up_tokenization_spaces", False)),
            split_special_tokens=bool(options.get("split_special_tokens", False)))
        wrapper.name_or_path = path
        return wrapper


# The tokenizer_config.json options (and from_pretrained keyword arguments) a tokenizers-library family reads.
_OPTIONS = {*SPECIAL_TOKENS_ATTRIBUTES, "extra_special_tokens", "additional_special_tokens", "model_max_length",
            "padding_side", "truncation_side", "clean_up_tokenization_spaces", "split_special_tokens",
            "add_prefix_space", "trim_offsets", "do_lower_case", "keep_accents"}


def _tokenizer_class(path: str, config: Mapping[str, Any]) -> str:
    """transformers' choice: ``tokenizer_class`` of tokenizer_config.json (``Fast`` suffix dropped), else the
    ``model_type`` of config.json."""
    name = config.get("tokenizer_class")
    if name is not None:
        name = str(name)
        name = name if name in TOKENIZERS else name.removesuffix("Fast")
        if name not in TOKENIZERS:
            raise ValueError(f"{os.path.join(path, 'tokenizer_config.json')}: tokenizer_class {name!r} is not one "
                             f"fastbert implements ({', '.join(sorted(TOKENIZERS))})")
        return name
    file = os.path.join(path, "config.json")
    model_config = read_json(file) if os.path.isfile(file) else {}
    model_type = model_config.get("model_type") if isinstance(model_config, dict) else None
    if model_type is None:
        if os.path.isfile(os.path.join(path, "tokenizer.json")) or os.path.isfile(os.path.join(path, "vocab.txt")):
            return "BertTokenizer" if _json_model(path) in (None, "WordPiece") else "PreTrainedTokenizerFast"
        raise OSError(f"no tokenizer in {path!r}: it has no tokenizer_config.json tokenizer_class, no config.json "
                      "model_type, no tokenizer.json or vocab.txt")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"{file}: model_type {model_type!r} has no tokenizer fastbert implements "
                         f"({', '.join(sorted(MODEL_TYPES))})")
    return MODEL_TYPES[model_type]


def _json_model(path: str) -> str | None:
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        return None
    spec = read_json(file)
    return (spec.get("model") or {}).get("type") if isinstance(spec, dict) else None


def _tokenizer_json(path: str, name: str, kind: TokenizerKind) -> dict:
    """The folder's tokenizer.json as a dict, checked against the class's model."""
    file = os.path.join(path, "tokenizer.json")
    if not os.path.isfile(file):
        spm = next((n for n in _SENTENCEPIECE_FILES if os.path.isfile(os.path.join(path, n))), None)
        found = f"only the SentencePiece model {spm}" if spm else "no tokenizer.json"
        raise OSError(
            f"{path!r} has {found}; fastbert's {name} needs a tokenizer.json. Write one with transformers "
            f"(pip install transformers sentencepiece): python -c \"from transformers import AutoTokenizer; "
            f"AutoTokenizer.from_pretrained('{path}').save_pretrained('{path}')\"")
    spec = read_json(file)
    model = (spec.get("model") or {}).get("type") if isinstance(spec, dict) else None
    if model is None and isinstance(spec, dict) and isinstance(spec.get("model"), dict):
        # old files omit the type: a Unigram vocabulary is a list of [piece, score]
        model = "Unigram" if isinstance(spec["model"].get("vocab"), list) else "BPE" if "merges" in spec["model"] \
            else "WordPiece"
        spec["model"]["type"] = model
    if kind.model and model != kind.model:
        raise ValueError(f"{file}: a {name} needs a {kind.model} model, the file has {model!r}")
    return spec


def _build(path: str, spec: dict, kind: TokenizerKind, options: Mapping[str, Any]):
    """The backend tokenizer: the family's pipeline over the file, named special tokens added if missing."""
    try:
        from tokenizers import AddedToken, Tokenizer
    except ImportError:
        raise ImportError(f"the {kind.model or 'tokenizer.json'} tokenizer in {path!r} runs on the tokenizers "
                          "package: pip install 'fastbert[tokenizers]'") from None

    base = Tokenizer.from_str(json.dumps(spec))
    ids = {}
    for name in SPECIAL_TOKENS_ATTRIBUTES:
        token = options.get(name)
        if token is not None:
            if base.token_to_id(token) is None:
                base.add_special_tokens([AddedToken(token, special=True, normalized=False)])
            ids[token] = base.token_to_id(token)
    for name in ("sep_token", "cls_token", "bos_token", "eos_token"):
        if options.get(name) is None and kind.specials.get(name):
            raise ValueError(f"{path}: the tokenizer needs a {name}, which tokenizer_config.json sets to null")
    built = kind.pipeline(json.loads(base.to_str()), options, ids)
    built["truncation"] = built["padding"] = None  # set per call
    tokenizer = Tokenizer.from_str(json.dumps(built))
    return tokenizer


def with_lowercase(tokenizer: BertTokenizer | TokenizersTokenizer) -> BertTokenizer | TokenizersTokenizer:
    """The tokenizer with sentence-transformers' ``do_lower_case``: a ``Lowercase`` normalizer put in front of the
    tokenizer's own one unless that one already lowercases. WordPiece: reloaded lowercasing, keeping its accent
    handling (which followed the cased setting: no stripping unless asked)."""
    if isinstance(tokenizer, BertTokenizer):
        if tokenizer.do_lower_case:
            return tokenizer
        lowered = BertTokenizer.from_pretrained(tokenizer.name_or_path, do_lower_case=True,
                                                strip_accents=bool(tokenizer.strip_accents))
        lowered.model_input_names = list(tokenizer.model_input_names)
        return lowered
    from tokenizers import normalizers

    normalizer = tokenizer.backend_tokenizer.normalizer
    steps = list(normalizer) if isinstance(normalizer, normalizers.Sequence) else \
        [] if normalizer is None else [normalizer]
    if not any(isinstance(n, normalizers.Lowercase) for n in steps):
        tokenizer.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(), *steps])
    return tokenizer


__all__ = ["AutoTokenizer", "with_lowercase", "TokenizersTokenizer", "TOKENIZERS", "MODEL_TYPES"]
