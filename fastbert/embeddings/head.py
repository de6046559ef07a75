"""What a sentence-transformers folder does after the transformer: pooling, then its Dense and Normalize modules.

:class:`EmbeddingHead` holds the pooling mode(s), the module list (overridable: another pooling, normalisation on or
off), the Dense weights, and applies them to a batch of token embeddings ``[b, S, H]`` -> ``[b, D]`` in float32.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import pooling as P
from .folder import POOLING_MODES, Dense, Normalize, Pooling, SentenceFolder


class EmbeddingHead:
    """Pooling and the folder's modules after it, checked against the encoder's width ``hidden_size``.

    ``pooling`` overrides the folder's pooling mode(s); ``normalize`` ``True`` appends an L2 normalisation, ``False``
    drops the folder's Normalize modules, ``None`` keeps the folder's. A Dense module whose input does not fit is a
    ``ValueError``; its weights are read by :meth:`load`.
    """

    def __init__(self, folder: SentenceFolder, hidden_size: int, pooling: str | Sequence[str] | None = None,
                 normalize: bool | None = None):
        self.pooling = _pooling(folder.pooling, pooling)
        self.modules = _modules(folder.head, normalize)
        self.dimension = _check_dimensions(len(self.pooling.modes) * hidden_size, self.modules)
        self._weights: list[dict[str, torch.Tensor] | None] = [None] * len(self.modules)

    def load(self, device: torch.device) -> None:
        """Reads every Dense module's weights, float32 on ``device``."""
        self._weights = [_load_dense(m, device) if isinstance(m, Dense) else None for m in self.modules]

    def __call__(self, hidden: torch.Tensor, mask: torch.Tensor, prompt_length: int = 0) -> torch.Tensor:
        """Token embeddings ``[b, S, H]`` float32 and their attention mask ``[b, S]`` -> ``[b, D]`` float32. The first
        ``prompt_length`` real tokens are left out of pooling (``include_prompt=False`` folders)."""
        if prompt_length:
            mask = P.prompt_mask(mask, prompt_length)
        x = P.pool(hidden, mask, self.pooling.modes)  # [b, modes * H]
        for module, weights in zip(self.modules, self._weights):
            if isinstance(module, Normalize):
                x = P.normalize(x)
            else:
                x = P.dense(x, weights["linear.weight"], weights.get("linear.bias"), module.activation,
                            weights.get("residual.weight", module.use_residual or None))
        return x


def _pooling(folder_pooling: Pooling, override: str | Sequence[str] | None) -> Pooling:
    if override is None:
        return folder_pooling
    modes = (override,) if isinstance(override, str) else tuple(override)
    bad = [m for m in modes if m not in POOLING_MODES]
    if not modes or bad:
        raise ValueError(f"unknown pooling mode(s) {bad or list(modes)}; expected some of {list(POOLING_MODES)}")
    return Pooling(modes, folder_pooling.include_prompt)


def _modules(head: tuple[Dense | Normalize, ...], normalize: bool | None) -> tuple[Dense | Normalize, ...]:
    if normalize is False:
        return tuple(m for m in head if not isinstance(m, Normalize))
    if normalize is True and not (head and isinstance(head[-1], Normalize)):
        return (*head, Normalize())
    if normalize not in (None, True):
        raise TypeError(f"normalize must be None, True or False, got {normalize!r}")
    return head


def _check_dimensions(size: int, modules) -> int:
    """The embedding size after pooling (``size``) and each Dense module; a Dense that does not fit is a ValueError."""
    for module in modules:
        if isinstance(module, Dense):
            if module.in_features != size:
                raise ValueError(f"Dense module {module.path!r} takes {module.in_features} inputs but the "
                                 f"embedding before it has {size} values")
            size = module.out_features
    return size


def _load_dense(module: Dense, device: torch.device) -> dict[str, torch.Tensor]:
    """The weights of a Dense module folder (``model.safetensors`` or ``pytorch_model.bin``), float32 on
    ``device``, checked against its config: exactly the expected keys and shapes."""
    from ..encoder.weights import read_state_dict

    weights = read_state_dict(module.path)
    expected = {"linear.weight": (module.out_features, module.in_features)}
    if module.bias:
        expected["linear.bias"] = (module.out_features,)
    if module.use_residual and module.in_features != module.out_features:
        expected["residual.weight"] = (module.out_features, module.in_features)
    if set(weights) != set(expected):
        raise ValueError(f"Dense module {module.path!r}: weights have keys {sorted(weights)}, its config needs "
                         f"{sorted(expected)}")
    for key, shape in expected.items():
        tensor = weights[key]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tuple(tensor.shape) != shape:
            raise ValueError(f"Dense module {module.path!r}: {key} must be a float tensor of shape {list(shape)}, "
                             f"got {getattr(tensor, 'dtype', type(tensor).__name__)} "
                             f"{list(getattr(tensor, 'shape', []))}")
    return {k: v.to(device=device, dtype=torch.float32) for k, v in weights.items()}
