"""Dynamic batching for the embedding server: requests from many clients, one model thread.

Each request enters as a :class:`Job`: its texts already tokenized (:class:`fastbert.embeddings.batching.TokenizedTexts`)
and its options. The model thread takes the oldest waiting jobs whose tokens together stay within
``max_batch_tokens`` (always at least one job, so a request over the budget still runs, alone), groups them by
what changes the rows (prompt length, ``normalize``, ``truncate_dim``), embeds each group with one
``SentenceEncoder.encode_tokenized`` call (which sorts by length and cuts forward passes of at most
``max_batch_tokens`` padded tokens, as ``encode`` does) and hands every job its own rows, in its own order, back on
the event loop that submitted it. A job whose client left before its batch started is skipped.

Nothing here bounds the queue: the server admits at most ``max_concurrent_requests`` requests at a time, and each
holds at most one job.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..batching import TokenizedTexts
from ..sentence_encoder import SentenceEncoder


@dataclass(frozen=True)
class EmbedOptions:
    """Per-request options that change a row: ``encode(normalize_embeddings=normalize, truncate_dim=...)``."""

    normalize: bool = False
    truncate_dim: int | None = None


@dataclass(eq=False)
class Job:
    """One request's texts. ``future`` (of the submitting event loop) gets float32 [N, D'] rows in input order,
    or the exception that embedding raised. Setting ``cancelled`` before the batch starts skips the job."""

    tokens: TokenizedTexts
    options: EmbedOptions
    future: asyncio.Future
    cancelled: bool = False
    n_tokens: int = field(init=False)

    def __post_init__(self):
        self.n_tokens = int(self.tokens.offsets[-1] - self.tokens.offsets[0])


BatchObserver = Callable[[int, int, float], None]  # (texts, tokens, seconds) of each model batch


class Batcher:
    """One thread that runs ``encoder`` on batches of jobs packed by ``max_batch_tokens`` (see the module).

    ``submit`` is called on the event loop; ``close`` lets the thread finish the jobs already queued, then stops it.
    ``on_batch(texts, tokens, seconds)`` is called on the model thread after each batch (for metrics).
    """

    def __init__(self, encoder: SentenceEncoder, max_batch_tokens: int, on_batch: BatchObserver | None = None):
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be a positive integer, got {max_batch_tokens!r}")
        self.encoder, self.max_batch_tokens, self.on_batch = encoder, max_batch_tokens, on_batch
        self._pending: deque[Job] = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fastbert-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Jobs waiting for the model (not counting the batch it is running)."""
        return len(self._pending)

    def submit(self, tokens: TokenizedTexts, options: EmbedOptions) -> Job:
        """Queue one request's texts; await ``job.future`` for its rows. Call on the running event loop."""
        job = Job(tokens, options, asyncio.get_running_loop().create_future())
        with self._wake:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(job)
            self._wake.notify()
        return job

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs; the thread finishes the queued ones and exits (joined for at most ``timeout`` s)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the model thread
    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            jobs = [job for job in jobs if not job.cancelled]
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault((job.tokens.prompt_length, job.options), []).append(job)
            for group in groups.values():
                self._embed(group)

    def _take(self) -> list[Job] | None:
        """Wait for work; then the oldest jobs within the token budget (at least one). None once closed and
        empty."""
        with self._wake:
            while not self._pending:
                if self._closed:
                    return None
                self._wake.wait()
            jobs = [self._pending.popleft()]
            budget = self.max_batch_tokens - jobs[0].n_tokens
            while self._pending and self._pending[0].n_tokens <= budget:
                budget -= self._pending[0].n_tokens
                jobs.append(self._pending.popleft())
            return jobs

    def _embed(self, jobs: list[Job]) -> None:
        """One ``encode_tokenized`` call for jobs that share their options; each job gets its slice of rows."""
        options = jobs[0].options
        start = time.perf_counter()
        try:
            tokens = TokenizedTexts.concat([job.tokens for job in jobs])
            rows = self.encoder.encode_tokenized(
                tokens, batch_size=len(tokens), normalize_embeddings=options.normalize,
                truncate_dim=options.truncate_dim, max_batch_tokens=self.max_batch_tokens)  # [N, D'] float32
        except Exception as error:  # one bad batch fails its own requests, never the thread
            for job in jobs:
                _deliver(job.future, error=error)
            return
        if self.on_batch is not None:
            self.on_batch(len(tokens), sum(job.n_tokens for job in jobs), time.perf_counter() - start)
        first = 0
        for job in jobs:
            n = len(job.tokens)
            _deliver(job.future, rows[first:first + n])
            first += n


def _deliver(future: asyncio.Future, result: np.ndarray | None = None, error: BaseException | None = None) -> None:
    """Resolve ``future`` on its own loop, from any thread; a future already done (client gone) is left alone."""

    def resolve():
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        future.get_loop().call_soon_threadsafe(resolve)
    except RuntimeError:  # the loop is closed: nobody waits for this answer any more
        pass
