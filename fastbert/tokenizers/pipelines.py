"""The pipelines of the ``tokenizers``-backed families, as transformers 5 builds them, stated as data.

transformers' tokenizer classes for these families rebuild parts of ``tokenizer.json`` when they load it (RoBERTa: no
normalizer, its byte-level pre-tokenizer and ``RobertaProcessing``; XLM-R: only a SentencePiece precompiled
normalizer, whitespace split + Metaspace, its template; ALBERT: its normalizer from ``do_lower_case``/
``keep_accents``; DeBERTa-v2 and XLNet: everything but the vocabulary and the precompiled map). Each ``*_pipeline`` function states one such rebuild (a ``tokenizer.json`` dict + the options ->
the dict that runs), and ``TOKENIZERS`` maps each tokenizer class to its ``TokenizerKind``, so a folder gives what
``transformers.AutoTokenizer`` gives for it, including folders written by older versions.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable


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


def deberta_v2_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """DeBERTa v2/v3: Unigram (unknown: the unknown token's piece if its score is 0, else ``unk_id``, default 1);
    lowercase if ``do_lower_case``, then SentencePiece's precompiled normalizer, a right strip and runs of spaces to
    one, or, without a precompiled one, whitespace runs/tabs/newlines to a space, NFC and a right strip; punctuation
    isolated if ``split_by_punct``, then Metaspace (prepended always, or to the first word only when
    ``add_prefix_space=False``); ``[CLS] A [SEP] B [SEP]`` (types 0/1). transformers' class rebuilds all of this
    from the file's vocabulary and precompiled map."""
    vocab = spec["model"].get("vocab") or []
    unk = options.get("unk_token")
    found = [i for i, (piece, score) in enumerate(vocab) if piece == unk and score == 0.0]
    unk_id = found[0] if found else options.get("unk_id", 1)
    steps = [{"type": "Lowercase"}] if options.get("do_lower_case", False) else []
    precompiled = _precompiled(spec.get("normalizer"))
    strip = {"type": "Strip", "strip_left": False, "strip_right": True}
    if precompiled:
        steps += [precompiled, strip, {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]
    else:
        steps += [{"type": "Replace", "pattern": {"Regex": "\\s{2,}|[\n\r\t]"}, "content": " "}, {"type": "NFC"},
                  strip]
    scheme = "always" if options.get("add_prefix_space", True) else "first"
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}
    pre = [{"type": "Punctuation", "behavior": "Isolated"}] if options.get("split_by_punct", False) else []
    cls, sep = options["cls_token"], options["sep_token"]
    post = _template([(cls, 0), ("$A", 0), (sep, 0)], [(cls, 0), ("$A", 0), (sep, 0), ("$B", 1), (sep, 1)], ids)
    return dict(spec, model=dict(spec["model"], unk_id=unk_id, byte_fallback=False),
                normalizer={"type": "Sequence", "normalizers": steps},
                pre_tokenizer={"type": "Sequence", "pretokenizers": pre + [metaspace]}, decoder=dict(metaspace),
                post_processor=post)


def xlnet_pipeline(spec: dict, options: Mapping[str, Any], ids: Mapping[str, int]) -> dict:
    """XLNet: Unigram (unknown id ``unk_id``, default 0); ``` `` ```/``''`` to ``"``, accents always stripped (NFKD,
    StripAccents: transformers 5's class ignores ``keep_accents``), lowercase if ``do_lower_case``, then the
    precompiled normalizer; whitespace split + Metaspace; ``A <sep> <cls>`` and ``A <sep> B <sep> <cls>`` (types
    0, 1 and 2 for ``<cls>``). transformers' class rebuilds all of this from the file's vocabulary and precompiled
    map; it pads on the left (``TokenizerKind.padding_side``)."""
    steps = [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
             {"type": "Replace", "pattern": {"String": "''"}, "content": '"'}, {"type": "NFKD"},
             {"type": "StripAccents"}]
    if options.get("do_lower_case", False):
        steps.append({"type": "Lowercase"})
    precompiled = _precompiled(spec.get("normalizer"))
    if precompiled:
        steps.append(precompiled)
    pre, decoder = _metaspace_split(True)
    sep, cls = options["sep_token"], options["cls_token"]
    post = _template([("$A", 0), (sep, 0), (cls, 2)], [("$A", 0), (sep, 0), ("$B", 1), (sep, 1), (cls, 2)], ids)
    return dict(spec, model=dict(spec["model"], unk_id=options.get("unk_id", 0), byte_fallback=False),
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
    wordpiece: Mapping[str, Any] = field(default_factory=dict)  # BertTokenizer options under the files' (MPNet's)
    padding_side: str = "right"  # the class's default (XLNet: "left"); tokenizer_config.json's wins


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
    # MPNet: fastbert's C++ WordPiece with RoBERTa's special tokens and pair template
    "MPNetTokenizer": TokenizerKind("WordPiece", specials=dict(_ROBERTA_SPECIALS, unk_token="[UNK]"),
                                    model_input_names=_NO_TYPES, wordpiece=dict(pair_template="roberta")),
    "DebertaV2Tokenizer": TokenizerKind("Unigram", deberta_v2_pipeline, dict(
        bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
        cls_token="[CLS]", mask_token="[MASK]"), ("input_ids", "attention_mask", "token_type_ids")),
    "XLNetTokenizer": TokenizerKind("Unigram", xlnet_pipeline, dict(
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="<sep>", pad_token="<pad>",
        cls_token="<cls>", mask_token="<mask>"), _NO_TYPES, padding_side="left"),
    "PreTrainedTokenizerFast": TokenizerKind("", file_pipeline),
    "TokenizersBackend": TokenizerKind("", file_pipeline),
}
# config.json model_type -> tokenizer class, when tokenizer_config.json names none.
MODEL_TYPES = {"bert": "BertTokenizer", "distilbert": "DistilBertTokenizer", "electra": "ElectraTokenizer",
               "roberta": "RobertaTokenizer", "xlm-roberta": "XLMRobertaTokenizer", "albert": "AlbertTokenizer",
               "mpnet": "MPNetTokenizer", "deberta-v2": "DebertaV2Tokenizer", "xlnet": "XLNetTokenizer"}
