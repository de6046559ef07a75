"""Conversions of token ids between Python lists, numpy arrays and torch tensors, as transformers does them.

torch is imported only when a tensor is asked for, so the tokenizers run without it.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def to_py(obj):
    """transformers' to_py_obj: numpy arrays, torch tensors and numpy scalars to Python lists and ints."""
    if isinstance(obj, (int, float, str)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {k: to_py(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        if all(isinstance(x, (int, float, np.number)) for x in obj):
            return list(obj)
        return [to_py(o) for o in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def as_numpy(value):
    """transformers' numpy conversion: ragged rows become an object array of arrays; empty input is int64."""
    if isinstance(value, np.ndarray):
        return value
    dtype = None
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple, np.ndarray)):
        if len({len(v) for v in value}) > 1:
            value, dtype = [np.asarray(v) for v in value], object
    if dtype is None and np.asarray(value, dtype=object).size == 0:
        dtype = np.int64
    return np.asarray(value, dtype=dtype)


def as_torch(value):
    """transformers' torch conversion (empty input is int64)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return torch.from_numpy(np.array(value))
    if np.asarray(value, dtype=object).size == 0:
        return torch.tensor(value, dtype=torch.int64)
    return torch.tensor(value)
