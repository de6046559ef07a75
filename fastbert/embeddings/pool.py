"""Encode on several devices of one machine: one worker process per device (or N CPU worker processes).

>>> from fastbert.embeddings.pool import EncodePool
>>> with EncodePool(["cuda:0", "cuda:1"]) as pool:                 # or EncodePool(4): four CPU workers
...     embeddings = pool.encode(texts, batch_size=64)              # float32 [len(texts), D], input order
>>> embeddings = encode_multi_process(texts, ["cuda:0", "cuda:1"])   # start, encode, stop
>>> pool = encoder.start_multi_process_pool(["cuda:0", "cuda:1"])  # sentence-transformers' way, from an encoder
>>> embeddings = encoder.encode(texts, pool=pool); encoder.stop_multi_process_pool(pool)

Every worker holds a :class:`fastbert.SentenceEncoder`; the pool takes its constructor options and ``encode``
passes its options on, so the embeddings are the ones single-process ``SentenceEncoder.encode`` gives.

How the work is split: the parent tokenizes the texts once to count their tokens, sorts them by length (longest
first) and cuts that order into chunks of about the same number of tokens, several per worker. Each worker loads the
model once and takes the next chunk as soon as it is free (so a slower device simply takes fewer chunks); within a
chunk it sorts and batches as single-process encode does. Results are written back in input order.

Workers are fresh interpreters (``python -c "...pool_worker.main(fd)"``, :mod:`.pool_worker`, talking over a socket pair),
not ``multiprocessing`` children: they never import the caller's ``__main__`` module, so a script needs no
``if __name__ == "__main__":`` guard, and notebooks work. (sentence-transformers' pool uses the "spawn" start
method, which re-imports the script in every worker and so needs that guard.) Each worker gets an even share of
this process's cores as threads unless ``threads_per_worker`` says otherwise.

This pool is not fault tolerant: a worker that dies ends the call with an error naming it. For long runs that must
survive lost workers or machines, use :mod:`fastbert.ray`. The pool knows nothing of the encoder's code: its workers
(:mod:`.pool_worker`) build the encoders, so the arrows run one way (the encoder starts a pool, a worker holds an
encoder).
"""
from __future__ import annotations

import multiprocessing.connection
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .batching import TruncationError
from .folder import default_model_path, read_folder

CHUNKS_PER_WORKER = 8  # chunks per worker: enough to even out devices of different speed, few enough to batch well


# --------------------------------------------------------------------------------------------------- splitting
def load_tokenizer(path: str | None = None):
    """The tokenizer of the model folder at ``path`` (for counting tokens); reads no weights."""
    from ..tokenizers import AutoTokenizer

    return AutoTokenizer.from_pretrained(read_folder(path or default_model_path()).transformer_path)


def token_lengths(tokenizer, texts: Sequence[str], max_length: int = 512, step: int = 8192) -> np.ndarray:
    """Tokens per text (with special tokens, at most ``max_length``) -> int64 ``[N]``."""
    lengths = np.empty(len(texts), dtype=np.int64)
    for start in range(0, len(texts), step):
        ids = tokenizer(list(texts[start:start + step]), truncation=True, max_length=max_length)["input_ids"]
        lengths[start:start + len(ids)] = [len(x) for x in ids]
    return lengths


def token_balanced_chunks(lengths: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """Indices ``[N]`` sorted by length (longest first, ties in input order) cut into at most ``n_chunks``
    contiguous pieces of about equal token sums. Every index is in exactly one chunk; no chunk is empty."""
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be at least 1, got {n_chunks}")
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if order.size == 0:
        return []
    cumulative = np.cumsum(np.asarray(lengths)[order])  # [N]
    targets = cumulative[-1] * np.arange(1, n_chunks) / n_chunks
    # chunk k ends with the text whose running sum reaches the k-th target (so the first chunk is never empty)
    cuts = np.unique(np.minimum(np.searchsorted(cumulative, targets, side="left") + 1, order.size))
    return [chunk for chunk in np.split(order, cuts) if chunk.size]


def parse_devices(devices: int | str | Sequence[str] | None) -> list[str]:
    """``["cuda:0", "cuda:1"]``, ``"cuda:0,cuda:1"``, or a number of CPU workers (``4`` or ``"4"``) -> device
    list. ``None``: every CUDA device, else one CPU worker per CPU core this process may use."""
    if devices is None:
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["cpu"] * len(os.sched_getaffinity(0))
    if isinstance(devices, str):
        devices = devices.strip()
        devices = int(devices) if devices.isdigit() else [d.strip() for d in devices.split(",")]
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices < 1:
            raise ValueError(f"the number of CPU workers must be at least 1, got {devices}")
        return ["cpu"] * devices
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise TypeError(f"devices must be a list of device names or a number of CPU workers, not {devices!r}")
    devices = [str(d) for d in devices]
    if not devices or any(not d for d in devices):
        raise ValueError(f"devices must name at least one device and no empty ones, got {devices!r}")
    for device in devices:
        kind, _, index = device.partition(":")
        if kind not in ("cpu", "cuda") or (index and not index.isdigit()) or (kind == "cpu" and index):
            raise ValueError(f"unsupported device {device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
    return devices


# --------------------------------------------------------------------------------------------------- the pool
class _WorkerError(Exception):
    """An exception a live worker reported (``.exception``), as opposed to a worker that died."""

    def __init__(self, exception: Exception):
        super().__init__(str(exception))
        self.exception = exception


class _Worker:
    """One worker process and the socket to it."""

    def __init__(self, device: str, threads: int):
        self.device = device
        parent, child = socket.socketpair()
        # before torch (and the tokenizers library, for its families) start their thread pools
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   RAYON_NUM_THREADS=str(threads))
        # The worker imports the same fastbert as this process, installed or only on this process's sys.path.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds fastbert/
        code = (f"import sys; root = {package_root!r}; sys.path.insert(0, root) if root not in sys.path else None; "
                f"from fastbert.embeddings import pool_worker; pool_worker.main({child.fileno()})")
        with child:
            # stdout goes to stderr: the caller's stdout may be its output (e.g. `fastbert encode` JSON lines).
            self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(child.fileno(),),
                                            stdin=subprocess.DEVNULL, stdout=2, env=env)
        self.conn = multiprocessing.connection.Connection(parent.detach())

    def describe(self) -> str:
        return f"fastbert worker {self.device} (pid {self.process.pid})"

    def receive(self) -> tuple[str, list]:
        """The worker's next message as (kind, payload); raises if it died or reported an exception."""
        try:
            kind, *payload = self.conn.recv()
        except (EOFError, OSError):
            code = self.process.wait()
            raise RuntimeError(f"{self.describe()} died (exit code {code})") from None
        if kind == "error":
            exc, remote_traceback = payload
            if hasattr(exc, "add_note"):
                exc.add_note(f"raised in {self.describe()}:\n{remote_traceback}")
            raise _WorkerError(exc)
        return kind, payload

    def stop(self) -> None:
        """Asks the worker to exit (it also exits when the socket closes)."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.conn.close()

    def wait(self, timeout: float = 10.0) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class EncodePool:
    """Worker processes, one per device, each holding the model; a context manager.

    Args:
        devices: ``["cuda:0", "cuda:1"]`` (one process per GPU), ``["cpu", "cpu"]`` or a number of CPU workers;
            ``None``: every CUDA device, else one CPU worker per core.
        path: model folder (default: the bundled all-MiniLM-L6-v2).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` (default: float16 on CUDA, float32 on CPU).
        threads_per_worker: torch (and tokenizer) threads of each worker (default: the cores divided among them).
        encoder_kwargs: further :class:`fastbert.SentenceEncoder` options for every worker (``max_seq_length``,
            ``pooling``, ``normalize``, ``backend``).

    Starting loads the model in every worker (in parallel) and waits until all are ready.
    """

    def __init__(self, devices: int | str | Sequence[str] | None = None, path: str | None = None, *,
                 dtype: str | None = None, threads_per_worker: int | None = None, **encoder_kwargs):
        self.devices = parse_devices(devices)
        self.path = path
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError(f"threads_per_worker must be at least 1, got {threads_per_worker}")
        threads = threads_per_worker or max(1, len(os.sched_getaffinity(0)) // len(self.devices))
        self._tokenizer = load_tokenizer(path)
        self._workers: list[_Worker] = []
        try:
            for device in self.devices:
                self._workers.append(_Worker(device, threads))
            for worker in self._workers:
                worker.conn.send({"path": path, "device": worker.device, "dtype": dtype, "threads": threads,
                                  "encoder_kwargs": encoder_kwargs})
            ready = {tuple(worker.receive()[1]) for worker in self._workers}
        except _WorkerError as e:  # e.g. a setting the folder cannot have
            self.close()
            raise e.exception from None
        except BaseException:
            self.close()
            raise
        assert len(ready) == 1, ready
        # The model's embedding size (encode_kwargs such as truncate_dim may shorten the output) and truncation.
        self.dimension, self.max_seq_length = ready.pop()
        self.last_chunks: dict[str, int] = {}
        self.last_truncated = 0

    def __enter__(self) -> EncodePool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the workers (also on ``with`` exit). The pool cannot be used afterwards."""
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.wait()

    def encode(self, texts: Sequence[str], batch_size: int = 32, *, show_progress_bar: bool = False,
               chunks_per_worker: int = CHUNKS_PER_WORKER, **encode_kwargs) -> np.ndarray:
        """Embeds ``texts`` -> float32 ``[len(texts), D]`` in input order.

        ``batch_size`` and ``encode_kwargs`` (``prompt_name``, ``prompt``, ``normalize_embeddings``,
        ``truncate_dim``, ``max_batch_tokens``, ``truncation``) go to each worker's ``SentenceEncoder.encode``.
        ``chunks_per_worker``: how many token-balanced chunks per worker the texts are cut into (fewer when
        chunks would hold less than two batches, but at least one per worker).
        ``self.last_chunks`` then tells how many chunks each worker took (as ``{worker: chunks}``) and
        ``self.last_truncated`` how many texts were truncated.

        ``truncation=False`` makes texts longer than ``max_seq_length`` a ``TruncationError`` naming their input
        positions; chunks go out longest first, so the chunks that hold every such text are the first ones, and
        the pool stops handing out chunks once one comes back with shorter texts in it.
        """
        if not self._workers:
            raise ValueError("this EncodePool is closed")
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of str, not {type(texts).__name__}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is a {type(text).__name__}, not a str")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        workers = len(self._workers)
        n_chunks = min(workers * chunks_per_worker, max(workers, len(texts) // (2 * batch_size)))
        # No texts: one empty chunk, so the encoder itself says what shape that is (e.g. with truncate_dim).
        lengths = token_lengths(self._tokenizer, texts, self.max_seq_length + 1)  # +1: longer ones tie, in order
        chunks = token_balanced_chunks(lengths, n_chunks) if texts else [np.arange(0)]
        self.last_chunks = {worker.describe(): 0 for worker in self._workers}
        self.last_truncated = 0
        try:
            run = _Run(texts, chunks, batch_size, encode_kwargs, self)
            out = run.dispatch(self._workers, show_progress_bar)
        except BaseException:
            self.close()  # a worker died or we were interrupted: workers may hold unread chunks
            raise
        if run.failure is not None:
            raise run.failure
        if run.too_long:
            too_long = sorted(run.too_long)
            raise TruncationError([i for i, _ in too_long], [n for _, n in too_long], len(texts), run.limit)
        assert out is not None
        return out


class _Run:
    """One ``EncodePool.encode`` call: chunks handed to free workers, longest first, results in input order."""

    def __init__(self, texts: Sequence[str], chunks: list[np.ndarray], batch_size: int, encode_kwargs: dict,
                 pool: EncodePool):
        self.texts, self.chunks, self.batch_size, self.encode_kwargs, self.pool = (
            texts, chunks, batch_size, encode_kwargs, pool)
        self.pending = list(reversed(range(len(chunks))))  # pop() hands out the longest texts first
        self.busy: dict[Any, tuple[_Worker, int]] = {}
        self.out: np.ndarray | None = None  # [N, D], allocated when the first chunk tells D
        self.too_long: list[tuple[int, int]] = []  # (input position, tokens) of texts refused with truncation=False
        self.limit = pool.max_seq_length
        self.failure: Exception | None = None

    def feed(self, worker: _Worker) -> None:
        if self.pending:
            chunk = self.pending.pop()
            worker.conn.send(("encode", [self.texts[i] for i in self.chunks[chunk]], self.batch_size,
                              self.encode_kwargs))
            self.busy[worker.conn] = (worker, chunk)

    def dispatch(self, workers: list[_Worker], show_progress_bar: bool) -> np.ndarray | None:
        from tqdm import tqdm

        with tqdm(total=len(self.texts), unit="text", desc="encoding", disable=not show_progress_bar) as bar:
            for worker in workers:
                self.feed(worker)
            while self.busy:
                for conn in multiprocessing.connection.wait(list(self.busy), timeout=1.0):
                    worker, chunk = self.busy.pop(conn)
                    bar.update(self.take(worker, chunk))
                    self.feed(worker)
                for worker, _ in list(self.busy.values()):
                    if worker.process.poll() is not None:
                        worker.receive()  # raises: the worker died
        return self.out

    def take(self, worker: _Worker, chunk: int) -> int:
        """Reads ``worker``'s answer for ``chunk``; returns how many texts it embedded."""
        try:
            kind, payload = worker.receive()
        except _WorkerError as e:  # the worker lives on; collect the others, then raise
            self.failure = self.failure or e.exception
            self.pending.clear()
            return 0
        members = self.chunks[chunk]
        if kind == "too long":
            indices, counts, self.limit = payload
            self.too_long += [(int(members[i]), n) for i, n in zip(indices, counts)]
            if len(indices) < len(members):  # the texts after this chunk are shorter
                self.pending.clear()
            return 0
        if self.too_long:  # this chunk had no text too long, nor will the ones after it
            self.pending.clear()
            return 0
        embeddings, truncated = payload
        if self.out is None:
            self.out = np.empty((len(self.texts), *embeddings.shape[1:]), dtype=np.float32)
        self.out[members] = embeddings
        self.pool.last_truncated += truncated
        self.pool.last_chunks[worker.describe()] += 1
        return len(members)


def encode_multi_process(texts: Sequence[str], devices: int | str | Sequence[str] | None = None,
                         path: str | None = None, *, dtype: str | None = None, batch_size: int = 32,
                         threads_per_worker: int | None = None, show_progress_bar: bool = False,
                         encoder_kwargs: dict | None = None, **encode_kwargs) -> np.ndarray:
    """Starts an :class:`EncodePool`, embeds ``texts`` -> float32 ``[N, D]`` in input order, stops the pool."""
    with EncodePool(devices, path, dtype=dtype, threads_per_worker=threads_per_worker,
                    **(encoder_kwargs or {})) as pool:
        return pool.encode(texts, batch_size, show_progress_bar=show_progress_bar, **encode_kwargs)
