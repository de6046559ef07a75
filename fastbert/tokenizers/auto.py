"""``fastbert.AutoTokenizer``: the tokenizer of any supported family, as transformers' ``AutoTokenizer`` loads it.

>>> tok = fastbert.AutoTokenizer.from_pretrained("path/to/xlm-roberta-folder")
>>> tok(["a text", "another"], padding=True, truncation=True, max_length=128, return_tensors="pt")

Which tokenizer (``TOKENIZERS``, picked by ``tokenizer_class`` in ``tokenizer_config.json``, else by ``model_type``
in ``config.json``):

- WordPiece (BERT, DistilBERT, ELECTRA, MPNet): fastbert's C++ :class:`~fastbert.tokenizers.BertTokenizer`.
  DistilBERT's and MPNet's inputs have no ``token_type_ids`` (their ``model_input_names``), as with transformers;
  MPNet's has RoBERTa's special tokens and pair template (``<s> A </s></s> B </s>``).
- Byte-level BPE (RoBERTa) and Unigram/SentencePiece (XLM-RoBERTa, ALBERT, DeBERTa-v2/v3, XLNet): :class:`TokenizersTokenizer`, a thin
  wrapper over the Rust ``tokenizers`` library with ``BertTokenizer``'s call signature and ``BatchEncoding``
  (``families.py``).

The pipelines the ``tokenizers`` families run are transformers 5's (``pipelines.py``), built here over the folder's
``tokenizer.json``. A folder with only SentencePiece files (``spiece.model``, ``sentencepiece.bpe.model``) and no
``tokenizer.json`` is refused with the command that converts it. ``with_lowercase`` gives sentence-transformers'
``do_lower_case`` to any of these tokenizers.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .added_tokens import token_content
from .families import TokenizersTokenizer
from .files import extra_special_tokens, read_json, tokenizer_options
from .options import LARGE_INTEGER, VERY_LARGE_INTEGER
from .pipelines import MODEL_TYPES, TOKENIZERS, TokenizerKind
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES
from .wordpiece import BertTokenizer

_SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")


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
            tokenizer = BertTokenizer.from_pretrained(path, defaults={**kind.specials, **kind.wordpiece}, **kwargs)
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
        tokenizer = _backend(path, spec, kind, options)
        max_length = options.get("model_max_length", VERY_LARGE_INTEGER)
        wrapper = TokenizersTokenizer(
            tokenizer, model_input_names=names, **{k: options.get(k) for k in SPECIAL_TOKENS_ATTRIBUTES},
            extra_special_tokens=extra_special_tokens(options),
            model_max_length=VERY_LARGE_INTEGER if max_length is None or max_length > LARGE_INTEGER else max_length,
            padding_side=options.get("padding_side", kind.padding_side), truncation_side=options.get("truncation_side", "right"),
            clean_up_tokenization_spaces=bool(options.get("clean_up_tokenization_spaces", False)),
            split_special_tokens=bool(options.get("split_special_tokens", False)))
        wrapper.name_or_path = path
        return wrapper


# The tokenizer_config.json options (and from_pretrained keyword arguments) a tokenizers-library family reads.
_OPTIONS = {*SPECIAL_TOKENS_ATTRIBUTES, "extra_special_tokens", "additional_special_tokens", "model_max_length",
            "padding_side", "truncation_side", "clean_up_tokenization_spaces", "split_special_tokens",
            "add_prefix_space", "trim_offsets", "do_lower_case", "keep_accents", "split_by_punct", "unk_id"}


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


def _backend(path: str, spec: dict, kind: TokenizerKind, options: Mapping[str, Any]):
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
                                                strip_accents=bool(tokenizer.strip_accents),
                                                pair_template=tokenizer.pair_template, bos_token=tokenizer.bos_token,
                                                eos_token=tokenizer.eos_token)
        lowered.model_input_names = list(tokenizer.model_input_names)
        return lowered
    from tokenizers import normalizers

    normalizer = tokenizer.backend_tokenizer.normalizer
    steps = list(normalizer) if isinstance(normalizer, normalizers.Sequence) else \
        [] if normalizer is None else [normalizer]
    if not any(isinstance(n, normalizers.Lowercase) for n in steps):
        tokenizer.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Lowercase(), *steps])
    return tokenizer


__all__ = ["AutoTokenizer", "with_lowercase"]
