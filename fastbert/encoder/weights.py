"""Loading Hugging Face checkpoints of the BERT family.

Each family's weight names are data (:data:`fastbert.encoder.families.NAMES`: where it keeps each fastbert module).
:func:`remap_state_dict` is a pure function from a HF state dict to fastbert's names, made of small named steps.
:func:`load_pretrained` reads a checkpoint directory and loads strictly: a missing or unexpected key, or a wrong
shape, is a ``ValueError`` naming the key.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Mapping

import torch

from .config import BertConfig, read_json
from .families import NAMES, module_names, parameter_as_weight

Tensors = dict[str, torch.Tensor]


# Buffers older checkpoints carry that are not parameters, and XLNet's query-stream embedding (two-stream attention,
# which fastbert does not run; transformers' XLNetModel holds it whatever the task).
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids", "mask_emb")
_QKV = ("query", "key", "value")


def strip_prefix(sd: Mapping[str, torch.Tensor], prefix: str = "bert") -> Tensors:
    """A task-head checkpoint (``BertFor*``, ``RobertaFor*``, ...) keeps the base model under ``prefix.``: keep those
    keys without the prefix (the others are head weights). A base-model checkpoint passes through whole."""
    p = prefix + "."
    if not any(k.startswith(p) for k in sd):
        return dict(sd)
    return {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}


def rename_legacy(sd: Mapping[str, torch.Tensor]) -> Tensors:
    """Old TF-converted checkpoints name LayerNorm parameters gamma/beta."""
    return {re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", k)): v for k, v in sd.items()}


def drop_buffers(sd: Mapping[str, torch.Tensor]) -> Tensors:
    """Drop buffers that are not encoder parameters."""
    return {k: v for k, v in sd.items() if k not in _BUFFERS}


def drop_unused_positions(sd: Mapping[str, torch.Tensor], config: BertConfig) -> Tensors:
    """A family without absolute positions (DeBERTa with ``position_biased_input=False``) ignores a position table
    its checkpoint may still hold, as transformers does."""
    if config.absolute_positions:
        return dict(sd)
    if "embeddings.position" not in NAMES[config.model_type].modules:  # XLNet: none to drop
        return dict(sd)
    table = f"{NAMES[config.model_type].modules['embeddings.position']}.weight"
    return {k: v for k, v in sd.items() if k != table}


def rename(sd: Mapping[str, torch.Tensor], config: BertConfig) -> Tensors:
    """The family's names -> fastbert's. Query/key/value keep a marker for :func:`fuse_qkv`; unknown keys pass
    through unchanged so the strict load can name them. A family's bare parameters (XLNet's, ``Names.parameters``)
    become the weights of fastbert's modules (:func:`~fastbert.encoder.families.parameter_as_weight`)."""
    fastbert_name, kinds = {}, {}
    parameters = NAMES[config.model_type].parameters
    for fb, hf in module_names(config).items():
        kind = parameters.get(fb.split(".", 2)[-1]) if fb.startswith("layers.") else None
        if kind is None:
            fastbert_name.update({f"{hf}.weight": f"{fb}.weight", f"{hf}.bias": f"{fb}.bias"})
        else:  # a module's weight, or (as_is) a parameter of fastbert's own
            fastbert_name[hf] = fb if kind == "as_is" else f"{fb}.weight"
            kinds[hf] = kind
    return {fastbert_name.get(k, k): parameter_as_weight(v, kinds[k]).contiguous() if k in kinds else v
            for k, v in sd.items()}


def fuse_qkv(sd: Mapping[str, torch.Tensor], config: BertConfig) -> Tensors:
    """Stack each layer's query, key and value projections into one ``qkv`` projection ([3H, H] and [3H])."""
    out = dict(sd)
    for layer in range(config.num_layer_weights):
        for kind in ("weight", "bias"):
            names = [f"layers.{layer}.qkv.{p}.{kind}" for p in _QKV]
            present = [n for n in names if n in out]
            if not present:
                continue  # reported as a missing key by the strict load
            if len(present) < 3:
                missing = sorted(set(names) - set(present))
                raise ValueError(f"layer {layer}: checkpoint has {present} but not {missing} (attention)")
            parts = [out.pop(n) for n in names]
            if len({p.shape for p in parts}) != 1:
                shapes = [list(p.shape) for p in parts]
                raise ValueError(f"layer {layer}: query/key/value {kind} shapes differ: {shapes}")
            out[f"layers.{layer}.qkv.{kind}"] = torch.cat(parts, dim=0)
    return out


def remap_state_dict(hf_state_dict: Mapping[str, torch.Tensor], config: BertConfig) -> Tensors:
    """HF state dict of the family's base model or any of its task heads -> ``fastbert.BertModel`` state dict.
    Pure: the input is not changed."""
    sd = strip_prefix(hf_state_dict, NAMES[config.model_type].prefix)
    sd = rename_legacy(sd)
    sd = drop_buffers(sd)
    sd = drop_unused_positions(sd, config)
    sd = rename(sd, config)
    return fuse_qkv(sd, config)


def check_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Strict check of ``sd`` against ``model``: every key present, none extra, every shape equal."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise ValueError(f"checkpoint is missing {len(missing)} key(s), first: {missing[:5]}")
    if unexpected:
        raise ValueError(f"checkpoint has {len(unexpected)} unexpected key(s), first: {unexpected[:5]}")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise ValueError(f"checkpoint key {k!r} has shape {list(sd[k].shape)}, the model needs {list(v.shape)}")


def read_state_dict(path: str | os.PathLike, *, allow_nonfinite: bool = False) -> Tensors:
    """Read the weights of a checkpoint directory: ``model.safetensors`` (or its sharded index), else
    ``pytorch_model.bin``.

    Every problem is an ``OSError`` (missing, unreadable, truncated or corrupt file), ``ValueError`` (a file that
    does not hold a state dict, NaN/Inf weights) or ``TypeError`` (complex weights) naming the file and the key.
    Weights holding NaN or Inf are refused unless ``allow_nonfinite``.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise OSError(f"checkpoint directory {path!r} does not exist")
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    pickle = os.path.join(path, "pytorch_model.bin")
    # lexists: a broken or looping symlink is reported as such, not as a missing file.
    if os.path.lexists(single):
        files = [single]
    elif os.path.lexists(index):
        files = _shards(index)
    elif os.path.lexists(pickle):
        files = [pickle]
    else:
        raise OSError(f"no model.safetensors or pytorch_model.bin in {path!r}")
    sd: Tensors = {}
    for file in files:
        tensors = _read_weights(file)
        check_tensors(tensors, file, allow_nonfinite=allow_nonfinite)
        sd.update(tensors)
    return sd


def _shards(index: str) -> list[str]:
    """The shard files a ``model.safetensors.index.json`` names, in sorted order."""
    d = read_json(index)
    weight_map = d.get("weight_map") if isinstance(d, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index} has no 'weight_map' object (tensor name -> shard file name)")
    bad = [k for k, v in weight_map.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{index}: weight_map[{bad[0]!r}] is {weight_map[bad[0]]!r}, not a shard file name")
    folder = os.path.dirname(index)
    return [os.path.join(folder, shard) for shard in sorted(set(weight_map.values()))]


def _read_weights(file: str) -> Tensors:
    """One ``.safetensors`` or ``.bin`` file -> its tensors on the CPU."""
    from safetensors.torch import load_file

    try:
        size = os.stat(file).st_size
    except FileNotFoundError:
        raise OSError(f"{file} does not exist") from None
    except OSError as e:  # e.g. a symlink loop, permissions
        raise OSError(f"cannot read {file}: {e.strerror or e}") from None
    if size == 0:
        raise OSError(f"{file} is empty (0 bytes)")
    if file.endswith(".safetensors"):
        try:
            return load_file(file)
        except Exception as e:  # safetensors raises its own error type for a bad header or a short file
            raise OSError(f"{file} is not a valid safetensors file (truncated or corrupt?): {_first_line(e)}") from None
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of many types
        why = f"{type(e).__name__}: {_first_line(e)}"
        raise OSError(f"{file} could not be read as a PyTorch checkpoint: {why}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{file} holds a {type(obj).__name__}, not a state dict (a dict of tensor names to tensors)")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise ValueError(f"{file}: {k!r} is not a tensor (got {type(v).__name__})")
    return dict(obj)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else "no details"


def check_tensors(sd: Mapping[str, torch.Tensor], file: str, *, allow_nonfinite: bool = False) -> None:
    """Refuse complex tensors, and NaN/Inf in floating tensors unless ``allow_nonfinite``; errors name the key."""
    for k, v in sd.items():
        if v.is_complex():
            raise TypeError(f"{file}: {k!r} has dtype {v.dtype}; fastbert loads real-valued weights")
        if not allow_nonfinite and v.is_floating_point():
            bad = int((~torch.isfinite(v)).sum())
            if bad:
                raise ValueError(
                    f"{file}: {k!r} holds {bad} NaN/Inf value(s); pass allow_nonfinite=True to load it anyway"
                )


@contextlib.contextmanager
def _without_random_init():
    """Build modules whose weights the checkpoint replaces without drawing random ones. On the meta device
    ``nn.init.normal_`` runs through ``torch._refs``, whose first use imports ``torch._dynamo``: seconds of start-up
    for values that are thrown away (transformers skips the init for the same reason)."""
    names = ("normal_", "uniform_", "kaiming_uniform_")
    saved = {name: getattr(torch.nn.init, name) for name in names}
    try:
        for name in names:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def load_pretrained(cls, path, *, dtype, device, backend, add_pooling_layer, allow_nonfinite=False,
                    requires_grad=False):
    """Read, remap and strictly load a checkpoint into a new ``cls`` (``fastbert.BertModel``), in eval mode.

    Integer and bool tensors are cast to ``dtype`` as transformers does; parameters require grad only if asked.
    """
    dtype = parse_dtype(dtype)
    config = BertConfig.from_pretrained(path)
    sd = remap_state_dict(read_state_dict(path, allow_nonfinite=allow_nonfinite), config)
    if add_pooling_layer is None:
        add_pooling_layer = "pooler.weight" in sd
    elif not add_pooling_layer:  # asked for no pooler: its weights, if any, are not needed
        sd = {k: v for k, v in sd.items() if not k.startswith("pooler.")}
    with torch.device("meta"), _without_random_init():
        model = cls(config, add_pooling_layer=add_pooling_layer, backend=backend)
    check_state_dict(model, sd)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    return model.to(device=device).requires_grad_(requires_grad).eval()


DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A dtype the encoder runs in (float32, float16 or bfloat16), from its torch dtype or one of :data:`DTYPES`."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}; expected one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported dtype {dtype}; fastbert runs in float32, float16 or bfloat16")
    return dtype
