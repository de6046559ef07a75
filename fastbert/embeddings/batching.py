"""From texts to encoder batches: token ids of every text (truncated or refused at ``max_seq_length``), length-sorted
batches within a token budget, and the padded ``[b, S]`` arrays of one batch. numpy only: no torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

DEFAULT_MAX_BATCH_TOKENS = 16384
_TOKENIZE_CHUNK = 8192  # texts tokenized per call: bounds the memory of Python id lists


class TruncationError(ValueError):
    """Texts longer than ``max_seq_length`` tokens when truncation is off. ``indices``: their positions in the
    input, ``lengths``: their token counts."""

    def __init__(self, indices: list[int], lengths: list[int], total: int, max_length: int):
        self.indices, self.lengths, self.max_length = indices, lengths, max_length
        super().__init__(f"{len(indices)} of {total} texts are longer than max_seq_length={max_length} tokens "
                         f"(the first is texts[{indices[0]}], {lengths[0]} tokens)")


@dataclass(frozen=True)
class TokenizedTexts:
    """Texts as ``encode`` feeds them to the model (prompt prepended, truncated), packed back to back.

    ``ids`` [total] int64: every text's token ids in input order; ``offsets`` [N + 1] int64: text ``i`` is
    ``ids[offsets[i]:offsets[i + 1]]``; ``truncated``: how many texts were cut to ``max_seq_length``;
    ``prompt_length``: leading tokens pooling leaves out (0: none). Made by ``SentenceEncoder.tokenize_texts``,
    embedded by ``SentenceEncoder.encode_tokenized``.
    """

    ids: np.ndarray
    offsets: np.ndarray
    truncated: int = 0
    prompt_length: int = 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per text, [N] int64."""
        return np.diff(self.offsets)

    @classmethod
    def concat(cls, parts: Sequence["TokenizedTexts"]) -> "TokenizedTexts":
        """The texts of ``parts`` one after the other, in order; all parts must share one ``prompt_length``."""
        if not parts:
            raise ValueError("concat needs at least one TokenizedTexts")
        prompt_lengths = {p.prompt_length for p in parts}
        if len(prompt_lengths) != 1:
            raise ValueError(f"cannot concatenate texts with different prompt lengths {sorted(prompt_lengths)}")
        starts = np.cumsum([0] + [len(p.ids) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return cls(np.concatenate([p.ids for p in parts]), offsets, sum(p.truncated for p in parts),
                   parts[0].prompt_length)


def text_list(texts) -> list[str]:
    """A sequence of str (list, tuple, numpy array, any iterable but a str/bytes/dict) -> list[str]."""
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    if isinstance(texts, (bytes, bytearray, dict)) or not isinstance(texts, Iterable):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is a {type(t).__name__}, not a str")
    return texts


def tokenize(tokenizer, texts: list[str], limit: int, truncation: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Token ids of every text, truncated to ``limit``: (ids [total] int64, offsets [N + 1], texts truncated).
    With ``truncation=False`` a text longer than ``limit`` is a :class:`TruncationError` naming every such text."""
    rows: list[np.ndarray] = []
    long_indices: list[int] = []
    long_lengths: list[int] = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = texts[start:start + _TOKENIZE_CHUNK]
        full = tokenizer(chunk)["input_ids"]
        long = [j for j, row in enumerate(full) if len(row) > limit]
        long_indices += [start + j for j in long]
        long_lengths += [len(full[j]) for j in long]
        if long and truncation:
            cut = tokenizer([chunk[j] for j in long], truncation=True, max_length=limit)["input_ids"]
            for j, row in zip(long, cut):
                full[j] = row
        rows += [np.asarray(row, dtype=np.int64) for row in full]
    if long_indices and not truncation:
        raise TruncationError(long_indices, long_lengths, len(texts), limit)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return ids, offsets, len(long_indices)


def token_budget_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None) -> list[list[int]]:
    """Indices sorted by length (longest first, ties in input order), cut into batches of at most ``batch_size``
    texts whose padded size (texts x longest) stays within ``max_batch_tokens``. A text longer than the budget
    gets a batch of its own. Every index appears in exactly one batch."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            batch = batches[-1]
            longest = lengths[batch[0]]  # sorted: the first is the longest
            if len(batch) < batch_size and (max_batch_tokens is None or (len(batch) + 1) * longest <= max_batch_tokens):
                batch.append(i)
                continue
        batches.append([i])
    return batches


def padded_batch(ids: np.ndarray, offsets: np.ndarray, batch: list[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The texts ``batch`` (indices into ``offsets``) -> (input_ids ``[b, S]`` int64 padded with ``pad_id``,
    attention_mask ``[b, S]`` int64), S the longest text of the batch."""
    lengths = [int(offsets[i + 1] - offsets[i]) for i in batch]
    input_ids = np.full((len(batch), max(lengths)), pad_id, dtype=np.int64)
    mask = np.zeros(input_ids.shape, dtype=np.int64)
    for row, (i, n) in enumerate(zip(batch, lengths)):
        input_ids[row, :n] = ids[offsets[i]:offsets[i + 1]]
        mask[row, :n] = 1
    return input_ids, mask


def check_encode_options(batch_size, max_batch_tokens, truncate_dim) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if max_batch_tokens is not None and (not isinstance(max_batch_tokens, int) or max_batch_tokens < 1):
        raise ValueError(f"max_batch_tokens must be a positive integer or None, got {max_batch_tokens!r}")
    if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim < 1):
        raise ValueError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")
