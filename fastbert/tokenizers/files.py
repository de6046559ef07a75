"""The files of a tokenizer folder, read and written: ``vocab.txt``, ``tokenizer.json`` (a WordPiece one here; the
other families' in ``auto.py``), ``tokenizer_config.json`` and ``special_tokens_map.json``.

``wordpiece_options`` turns a checkpoint folder into ``BertTokenizer``'s constructor arguments and
``save_wordpiece`` writes them back in the format transformers reads. The wing reads JSON with its own
``read_json``: it imports nothing from the rest of fastbert.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from .added_tokens import token_content
from .special_tokens import BERT_SPECIALS

# tokenizer_config.json options that BertTokenizer takes as they are.
_WORDPIECE_OPTIONS = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "model_max_length", "padding_side",
                      "truncation_side", "clean_up_tokenization_spaces", "split_special_tokens")


def read_json(path: str):
    """A UTF-8 JSON file's value; bad UTF-8 or bad JSON is a ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid UTF-8 JSON ({e})") from None


def write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)


def read_vocab_txt(path: str) -> dict[str, int]:
    """A ``vocab.txt``: one token per line, its id the line number."""
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            vocab[line.rstrip("\n")] = index
    return vocab


def tokenizer_options(path: str) -> dict[str, Any]:
    """The options of a checkpoint's ``special_tokens_map.json`` updated by its ``tokenizer_config.json``."""
    config: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = os.path.join(path, name)
        if os.path.isfile(file):
            data = read_json(file)
            if not isinstance(data, dict):
                raise ValueError(f"{file}: expected a JSON object, got {type(data).__name__}")
            config.update(data)
    return config


def extra_special_tokens(config: Mapping[str, Any]) -> list[str | None]:
    """The further special tokens of a tokenizer config (``extra_special_tokens``, else the older
    ``additional_special_tokens``; a mapping gives its values)."""
    extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
    if isinstance(extra, Mapping):
        extra = list(extra.values())
    return [token_content(t) for t in extra]


def wordpiece_options(path: str, specials: tuple[str, ...] = BERT_SPECIALS) -> dict[str, Any]:
    """``BertTokenizer``'s arguments from a checkpoint folder: ``tokenizer.json`` if present, else ``vocab.txt``,
    with the options of ``tokenizer_config.json`` and ``special_tokens_map.json`` (the named tokens of ``specials``)
    and the added tokens (with their flags) of ``added_tokens_decoder`` (else of ``tokenizer.json``)."""
    config = tokenizer_options(path)
    options: dict[str, Any] = {key: config[key] for key in _WORDPIECE_OPTIONS if key in config}
    options.update({key: token_content(config[key]) for key in specials if key in config})
    options["extra_special_tokens"] = extra_special_tokens(config)
    added = [{**t, "id": int(i)} if isinstance(t, Mapping) else {"content": token_content(t), "id": int(i)}
             for i, t in (config.get("added_tokens_decoder") or {}).items()]
    tokenizer_json = os.path.join(path, "tokenizer.json")
    vocab_txt = os.path.join(path, "vocab.txt")
    if os.path.isfile(tokenizer_json):
        spec = read_json(tokenizer_json)
        options.update(_tokenizer_json_options(tokenizer_json, spec, config, options))
        if not added:
            added = [dict(t) for t in spec.get("added_tokens", [])]
    elif os.path.isfile(vocab_txt):
        options["vocab_file"] = vocab_txt
    else:
        raise OSError(f"no vocab.txt or tokenizer.json in {path!r}")
    options["added_tokens"] = added
    return options


def _tokenizer_json_options(file: str, spec, config: Mapping[str, Any], options: Mapping[str, Any]) -> dict:
    """The arguments a WordPiece ``tokenizer.json`` gives: its vocabulary and model settings, and its
    ``BertNormalizer``'s where the config files (already read into ``options``) leave them unset."""
    model = spec.get("model") or {} if isinstance(spec, dict) else {}
    if model.get("type") != "WordPiece":
        raise ValueError(f"{file} is not a WordPiece tokenizer (model type {model.get('type')!r})")
    out = {"vocab": model["vocab"], "unk_token": options.get("unk_token", model.get("unk_token", "[UNK]")),
           "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
           "max_input_chars_per_word": model.get("max_input_chars_per_word", 100)}
    normalizer = spec.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        out["do_lower_case"] = options.get("do_lower_case", normalizer.get("lowercase", True))
        if "strip_accents" not in config:
            out["strip_accents"] = normalizer.get("strip_accents")
        out["tokenize_chinese_chars"] = options.get("tokenize_chinese_chars",
                                                    normalizer.get("handle_chinese_chars", True))
        out["clean_text"] = normalizer.get("clean_text", True)
    return out


def save_wordpiece(tokenizer, save_directory: str | os.PathLike) -> tuple[str, ...]:
    """Writes a ``BertTokenizer`` as ``tokenizer_config.json`` (options, special tokens, added tokens with their
    flags), ``special_tokens_map.json`` and ``vocab.txt``; returns the paths written."""
    if (not tokenizer.clean_text or tokenizer.continuing_subword_prefix != "##"
            or tokenizer.max_input_chars_per_word != 100):
        raise ValueError("save_pretrained writes BERT's vocab.txt format, which cannot hold clean_text=False, "
                         "another continuing_subword_prefix or max_input_chars_per_word")
    by_id = sorted(tokenizer._vocab.items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise ValueError("save_pretrained needs vocabulary ids 0..n-1 (vocab.txt gives ids by line)")
    if any("\n" in token for token, _ in by_id):
        raise ValueError("save_pretrained cannot write a vocabulary token that holds a newline to vocab.txt")
    names = BERT_SPECIALS + ("bos_token", "eos_token")
    specials = {name: getattr(tokenizer, name) for name in names if getattr(tokenizer, name) is not None}
    # transformers' WordPiece class with RoBERTa's pair template is MPNet's
    tokenizer_class = "MPNetTokenizer" if tokenizer.pair_template == "roberta" else "BertTokenizer"
    config = {
        "tokenizer_class": tokenizer_class, "do_lower_case": tokenizer.do_lower_case,
        "strip_accents": tokenizer.strip_accents, "tokenize_chinese_chars": tokenizer.tokenize_chinese_chars,
        "model_max_length": tokenizer.model_max_length, "padding_side": tokenizer.padding_side,
        "truncation_side": tokenizer.truncation_side,
        "clean_up_tokenization_spaces": tokenizer.clean_up_tokenization_spaces,
        "split_special_tokens": tokenizer.split_special_tokens, **specials,
        "extra_special_tokens": list(tokenizer.extra_special_tokens),
        "added_tokens_decoder": {str(t.id): {"content": t.content, "single_word": t.single_word,
                                             "lstrip": t.lstrip, "rstrip": t.rstrip,
                                             "normalized": t.normalized, "special": t.special}
                                 for t in sorted(tokenizer._added.values(), key=lambda t: t.id)},
    }
    os.makedirs(save_directory, exist_ok=True)
    paths = [os.path.join(save_directory, name)
             for name in ("tokenizer_config.json", "special_tokens_map.json", "vocab.txt")]
    write_json(paths[0], config)
    write_json(paths[1], specials)
    with open(paths[2], "w", encoding="utf-8") as f:
        f.write("".join(token + "\n" for token, _ in by_id))
    return tuple(paths)
