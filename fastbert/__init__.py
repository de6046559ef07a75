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

# Public name -> the module of its wing that defines it (the layout: ARCHITECTURE.md).
_EXPORTS = {
    "AutoModel": "encoder.model",
    "BertModel": "encoder.model",
    "BertOutput": "encoder.model",
    "BertConfig": "encoder.config",
    "remap_state_dict": "encoder.weights",
    "optimize": "encoder.swap",
    "restore": "encoder.swap",
    "is_optimized": "encoder.swap",
    "AutoTokenizer": "tokenizers",
    "BertTokenizer": "tokenizers",
    "SentenceEncoder": "embeddings.sentence_encoder",
    "default_model_path": "embeddings.folder",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from .embeddings.folder import default_model_path
    from .embeddings.sentence_encoder import SentenceEncoder
    from .encoder.config import BertConfig
    from .encoder.model import AutoModel, BertModel, BertOutput
    from .encoder.swap import is_optimized, optimize, restore
    from .encoder.weights import remap_state_dict
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
