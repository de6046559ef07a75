"""Embed with Ray Data: a callable class for ``map_batches`` and a resumable pipeline over Parquet / JSON lines shards.

Needs ``pip install 'fastbert[ray]'``. In your own Ray Data pipeline::

    import ray
    from fastbert.ray import Embedder

    ds = ray.data.read_parquet("s3://bucket/corpus/")
    ds = ds.map_batches(Embedder, fn_constructor_kwargs={"path": "/models/minilm", "text_column": "text"},
                        compute=ray.data.ActorPoolStrategy(size=8), num_gpus=1, batch_size=1024)
    ds.write_parquet("s3://bucket/embeddings/")

Each actor loads the model once; each batch is sorted by length and encoded in length-packed sub-batches, and comes
back in its own row order with an ``embedding`` column (float32 ``[rows, D]``) added. Give Ray batches of a
thousand rows or more: the Embedder sorts by length only within one, and more sorting means less padding. (``concurrency=8``
does the same as ``compute=ActorPoolStrategy(size=8)``; Ray 2.51 and later warn that it is deprecated.)

Over files, with output shards named by input shard (what ``fastbert encode --ray`` runs)::

    ray.init()                      # or ray.init(address="ray://head:10001")
    embed_files("corpus/*.parquet", "embeddings/", text_column="text", num_gpus=1)

Nothing lost, nothing twice: every input shard becomes exactly one output shard at the same relative path (its
rows, in its order, plus the embedding column), written to a temporary file and renamed into place when complete.
A run that crashes can simply be started again: finished shards are skipped, unfinished ones are redone from the
start. The shards run on plain Ray actors (not Ray Data's): an actor that dies mid-shard is restarted by Ray from its
constructor's arguments, which travel inline with it, and redoes its shard; what it had half written is discarded.
One run per output directory at a time.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .parallel import load_encoder

try:
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastbert.ray needs Ray Data: pip install 'fastbert[ray]'") from e

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
EXTENSIONS = {"parquet": ".parquet", "jsonl": ".jsonl"}


def _check_texts(texts: Any, column: str, first_row: int = 0, where: str = "") -> list[str]:
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{where}column {column!r} must hold strings; row {first_row + i} is {text!r}")
    return texts


class Embedder:
    """A Ray Data callable class: ``batch`` (a dict of numpy columns) -> the same dict plus an embedding column.

    Args:
        path: model folder, readable on every node (default: the bundled all-MiniLM-L6-v2).
        text_column: the column holding the texts (str).
        embedding_column: the column added, float32 ``[rows, D]`` (an error if the batch already has one).
        device: default ``"cuda"`` when the actor sees a GPU (Ray assigns it with ``num_gpus=1``), else ``"cpu"``.
        dtype: default float16 on CUDA, float32 on CPU.
        batch_size: texts per forward pass inside a Ray batch; ``encode_kwargs`` (e.g. ``normalize_embeddings``)
            go to the encoder's ``encode`` as well.
        encoder_kwargs: further options for the encoder's constructor (see :func:`fastbert.parallel.load_encoder`).
    """

    def __init__(self, path: str | None = None, *, text_column: str = "text", embedding_column: str = "embedding",
                 device: str | None = None, dtype: str | None = None, batch_size: int = 32,
                 encoder_kwargs: dict | None = None, **encode_kwargs):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for name in ("convert_to_numpy", "convert_to_tensor"):
            if name in encode_kwargs:
                raise ValueError(f"Embedder always returns numpy embeddings; drop {name}")
        self.text_column = text_column
        self.embedding_column = embedding_column
        self.batch_size = batch_size
        self.encode_kwargs = encode_kwargs
        self.encoder = load_encoder(path, device, dtype, **(encoder_kwargs or {}))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 ``[N, D]`` in input order."""
        embeddings = self.encoder.encode(texts, batch_size=self.batch_size, **self.encode_kwargs)
        return np.asarray(embeddings, dtype=np.float32)

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"Embedder takes numpy batches (a dict of columns, batch_format='numpy'), not "
                            f"{type(batch).__name__}")
        if self.text_column not in batch:
            raise ValueError(f"the batch has no text column {self.text_column!r}; its columns: {sorted(batch)}")
        if self.embedding_column in batch:
            raise ValueError(f"the batch already has a column {self.embedding_column!r}")
        out = dict(batch)
        out[self.embedding_column] = self.embed(_check_texts(batch[self.text_column], self.text_column))
        return out


# --------------------------------------------------------------------------------------------------- shards
def input_files(input: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[str, list[str]]:
    """(root, files): the Parquet / JSON lines files of a directory (searched recursively), a glob pattern, or a
    list of files, sorted; output shards keep their paths relative to ``root``. Names starting with ``.`` or
    ``_`` are skipped in directories."""
    if isinstance(input, (str, os.PathLike)):
        input = os.fspath(input)
        if os.path.isdir(input):
            root, files = input, []
            for directory, dirs, names in os.walk(input):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                files += [os.path.join(directory, name) for name in names
                          if not name.startswith((".", "_")) and os.path.splitext(name)[1] in FORMATS]
            files.sort()
        else:
            files = sorted(f for f in glob.glob(input, recursive=True) if os.path.isfile(f))
            magic = next((i for i, part in enumerate(input.split(os.sep)) if glob.has_magic(part)), None)
            root = os.sep.join(input.split(os.sep)[:magic]) if magic is not None else os.path.dirname(input)
    else:
        files = sorted(os.fspath(f) for f in input)
        root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    if not files:
        raise OSError(f"no input files found at {input!r}")
    for f in files:
        if os.path.splitext(f)[1] not in FORMATS:
            raise ValueError(f"{f!r} is neither Parquet nor JSON lines (expected one of {sorted(FORMATS)})")
        if not os.path.isfile(f):
            raise OSError(f"input file not found: {f!r}")
    return os.path.abspath(root or "."), [os.path.abspath(f) for f in files]


def output_path(file: str, root: str, output_dir: str, output_format: str | None = None) -> str:
    """Where the output shard of input ``file`` goes: its path relative to ``root``, under ``output_dir``, with the
    extension of ``output_format`` (default: the input's own format)."""
    fmt = output_format or FORMATS[os.path.splitext(file)[1]]
    stem = os.path.splitext(os.path.relpath(file, root))[0]
    return os.path.join(os.path.abspath(output_dir), stem + EXTENSIONS[fmt])


def _read_batches(path: str, text_column: str, rows: int):
    """An input shard as a stream of pyarrow RecordBatches of at most ``rows`` rows, with its text column."""
    import pyarrow.json
    import pyarrow.parquet as pq

    if FORMATS[os.path.splitext(path)[1]] == "parquet":
        file = pq.ParquetFile(path)
        schema = file.schema_arrow
        batches = file.iter_batches(batch_size=rows)
    else:
        table = pyarrow.json.read_json(path)
        schema, batches = table.schema, table.to_batches(max_chunksize=rows)
    if text_column not in schema.names:
        raise ValueError(f"{path}: no text column {text_column!r}; its columns: {schema.names}")
    return schema, batches


def _write_jsonl_rows(stream, batch, column: str, embeddings: np.ndarray) -> None:
    """One JSON object per row: the batch's columns, then ``column`` with the embedding (float32 values with 9
    significant digits, enough to read back the same float32, as ``fastbert encode`` writes them)."""
    name = json.dumps(column)
    for row, embedding in zip(batch.to_pylist(), embeddings):
        values = ",".join(f"{x:.9g}" for x in embedding.tolist())
        stream.write(f"{json.dumps(row, ensure_ascii=False, default=str)[:-1]}, {name}: [{values}]}}\n")


def embed_shard(embedder: Embedder, source: str, destination: str, *, output_format: str | None = None,
                rows_per_call: int = 4096) -> int:
    """Embeds one input shard into ``destination`` (written atomically) -> the number of rows.

    The output holds the input's columns and rows, in the input's order, plus ``embedder.embedding_column``
    (Parquet: ``fixed_size_list<float32>[D]``; JSON lines: a list of numbers). ``rows_per_call``: rows read and
    handed to ``embedder.embed`` at a time (memory stays bounded by it for Parquet inputs).
    """
    import pyarrow as pa

    from .sentence.textfiles import atomic_file

    fmt = output_format or FORMATS[os.path.splitext(source)[1]]
    schema, batches = _read_batches(source, embedder.text_column, rows_per_call)
    if embedder.embedding_column in schema.names:
        raise ValueError(f"{source}: already has a column {embedder.embedding_column!r}")
    dim = embedder.embed([]).shape[1]
    field = pa.field(embedder.embedding_column, pa.list_(pa.float32(), dim))
    os.makedirs(os.path.dirname(os.path.abspath(destination)), exist_ok=True)
    rows = 0
    with atomic_file(destination, "wb" if fmt == "parquet" else "w") as f, \
            _parquet_writer(f, schema.append(field), fmt) as writer:
        for batch in batches:
            texts = _check_texts(batch.column(embedder.text_column).to_pylist(), embedder.text_column, rows,
                                 f"{source}: ")
            try:
                embeddings = embedder.embed(texts)  # [rows, D]
            except (ValueError, TypeError) as e:  # positions in its message count from the start of this batch
                kind = ValueError if isinstance(e, ValueError) else TypeError
                raise kind(f"{source}: in rows {rows} to {rows + len(texts) - 1}: {e}") from e
            if writer is not None:
                column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1)), dim)
                writer.write_batch(batch.append_column(field, column))
            else:
                _write_jsonl_rows(f, batch, embedder.embedding_column, embeddings)
            rows += batch.num_rows
    return rows


@contextlib.contextmanager
def _parquet_writer(stream, schema, fmt: str):
    """For Parquet output a ``pq.ParquetWriter`` on ``stream`` (else None), closed on leaving the block, before the
    ``atomic_file`` around it closes the file: after the last batch it writes the footer; after an error it is
    closed all the same, and the error goes on. (A writer left open would try to finish its file when garbage
    collected, after the file is gone, and print "Exception ignored ... write to closed file" with a traceback.)"""
    import pyarrow.parquet as pq

    if fmt != "parquet":
        yield None
        return
    writer = pq.ParquetWriter(stream, schema)
    try:
        yield writer
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        raise
    writer.close()


class ShardEmbedder:
    """Embeds whole shards with :func:`embed_shard` through one ``embedder_class(**embedder_kwargs)``: the actor
    class of :func:`embed_files` (:meth:`embed`, one shard per call), and a Ray Data callable class over a dataset
    of shards (columns ``input``, ``output``; adds ``rows`` and ``error``). A shard with bad data (``ValueError``,
    ``TypeError``, ``OSError``: a missing column, a null text, an unreadable file) is reported, not written, and
    does not stop the others; any other exception ends the run."""

    def __init__(self, embedder_class: type = Embedder, embedder_kwargs: dict | None = None, *,
                 output_format: str | None = None, rows_per_call: int = 4096):
        self.embedder = embedder_class(**(embedder_kwargs or {}))
        self.output_format = output_format
        self.rows_per_call = rows_per_call

    def embed(self, source: str, destination: str) -> tuple[int, str]:
        """One shard -> (rows written, ``""``), or (0, the error naming ``source``) if it has bad data."""
        try:
            return embed_shard(self.embedder, source, destination, output_format=self.output_format,
                               rows_per_call=self.rows_per_call), ""
        except (ValueError, TypeError, OSError) as e:
            return 0, str(e) if source in str(e) else f"{source}: {e}"

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [self.embed(str(src), str(dst)) for src, dst in zip(batch["input"], batch["output"])]
        return {"input": batch["input"], "output": batch["output"],
                "rows": np.asarray([rows for rows, _ in done], dtype=np.int64),
                "error": np.asarray([error for _, error in done], dtype=object)}


@dataclass
class EmbedFilesResult:
    """What :func:`embed_files` did: output shards written now (with their row counts), skipped as already done,
    and failed (input shard -> error)."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class ShardsFailed(ValueError):
    """Some input shards had bad data; ``.result`` tells what was written, skipped and failed. The other shards
    are complete: fix the failed ones and run again to finish."""

    def __init__(self, result: EmbedFilesResult):
        error = next(iter(result.failed.values()))
        super().__init__(f"{len(result.failed)} input shard(s) failed, e.g. {error}; the other shards are written, "
                         "fix these and run again to finish")
        self.result = result


def _remove_temp_files(destinations) -> None:
    """Removes what writers of these output shards left half written (``atomic_file``'s ``.NAME.*.part``)."""
    for destination in destinations:
        directory, name = os.path.split(destination)
        for path in glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*.part")):
            os.remove(path)


@contextlib.contextmanager
def connected(address: str | None = None, *, verbose: bool = False):
    """Connected to Ray for the block, as ``fastbert encode --ray`` is: ``ray.init(address)`` (None: the running
    cluster, else a new local one) unless this process is connected already, and ``ray.shutdown()`` at the end if
    it was not, so that Ray's goodbyes come before the caller's last word.

    Ray's own INFO logs on this process ("Started a local Ray instance", "Connecting to existing Ray cluster")
    are shown only when ``verbose``; its warnings and errors always, and whatever the actors print."""
    if ray.is_initialized():
        yield
        return
    ray.init(address=address, logging_level=logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def embed_files(input: str | os.PathLike | Sequence[str | os.PathLike], output_dir: str | os.PathLike, *,
                path: str | None = None, text_column: str = "text", embedding_column: str = "embedding",
                output_format: str | None = None, concurrency: int | None = None, num_gpus: float | None = None,
                num_cpus: float = 1, device: str | None = None, dtype: str | None = None, batch_size: int = 32,
                rows_per_call: int = 4096, embedder_class: type = Embedder, encoder_kwargs: dict | None = None,
                progress: bool | Callable[[str], None] = False, **encode_kwargs) -> EmbedFilesResult:
    """Embeds every input shard (see :func:`input_files`) into one output shard under ``output_dir``, on the Ray
    cluster this process is connected to (``ray.init`` first; a local one is started otherwise).

    ``num_gpus`` per actor (default: 1 when the cluster has GPUs, else 0); ``concurrency`` actors (default: as
    many as the cluster's GPUs / CPUs allow with ``num_gpus`` / ``num_cpus`` each, at most one per shard) each
    load the model once and take shards one at a time. Shards whose output exists are skipped. An actor whose
    process dies is restarted from its constructor's arguments and redoes its shard (without limit, as Ray Data
    does for its actor pools, so a shard that kills its process every time keeps being retried).
    ``embedder_class`` (an :class:`Embedder` subclass) and the remaining arguments configure what each actor
    builds. ``progress``: True for a bar of shards and rows on stderr, a callable (e.g. ``print``) to be handed a
    short line now and then (every :data:`PROGRESS_EVERY_S` seconds at most), False for nothing.
    Raises ``ValueError`` / ``OSError`` for bad arguments and inputs, before any work where it can tell (Parquet
    schemas); :class:`ShardsFailed` (a ``ValueError``) at the end when shards had bad data (null texts, JSON that
    does not parse): the good shards are written, so a run after fixing them only does the failed ones.
    """
    import pyarrow.parquet as pq

    from . import default_model_path
    from .sentence import read_folder

    if output_format not in (None, *EXTENSIONS):
        raise ValueError(f"output_format must be one of {sorted(EXTENSIONS)}, not {output_format!r}")
    output_dir = os.path.abspath(os.fspath(output_dir))
    root, files = input_files(input)
    files = [f for f in files if os.path.commonpath([f, output_dir]) != output_dir]  # never our own outputs
    if not files:
        raise ValueError(f"the output directory {output_dir!r} holds every input file; choose another one")
    targets = {f: output_path(f, root, output_dir, output_format) for f in files}
    if len(set(targets.values())) < len(targets):
        raise ValueError("two input shards map to the same output shard (e.g. a.json and a.jsonl); "
                         "rename one or give output_format")
    for f in files:
        if f.endswith(".parquet"):
            names = pq.read_schema(f).names
            if text_column not in names:
                raise ValueError(f"{f}: no text column {text_column!r}; its columns: {names}")
    read_folder(path or default_model_path())  # a missing or unusable model folder fails here, not in each actor
    result = EmbedFilesResult(skipped=[dst for dst in targets.values() if os.path.exists(dst)])
    todo = [(src, dst) for src, dst in targets.items() if not os.path.exists(dst)]
    os.makedirs(output_dir, exist_ok=True)
    _remove_temp_files(targets.values())  # left by a run that crashed
    if not todo:
        return result

    if not ray.is_initialized():
        ray.init()
    num_gpus, concurrency = _pool_size(num_gpus, num_cpus, concurrency, len(todo))
    embedder_kwargs = dict(path=path, text_column=text_column, embedding_column=embedding_column, device=device,
                           dtype=dtype, batch_size=batch_size, encoder_kwargs=encoder_kwargs, **encode_kwargs)
    actors = _start_actors(concurrency, num_cpus, num_gpus, embedder_class, embedder_kwargs,
                           output_format=output_format, rows_per_call=rows_per_call)
    done = {}
    try:
        with _Progress(progress, len(todo)) as shown:
            for src, rows, error in _embed_on(actors, todo):
                done[src] = rows, error
                shown.update(rows)
    finally:
        for actor in actors:
            ray.kill(actor)
        _remove_temp_files(targets.values())  # left by actors that died mid-shard, or were stopped by an error
    for src, dst in todo:  # in input order
        rows, error = done[src]
        if error:
            result.failed[src] = error
        else:
            result.written[dst] = rows
    if result.failed:
        raise ShardsFailed(result)
    missing = [dst for _, dst in todo if not os.path.exists(dst)]
    if missing:
        raise RuntimeError(f"{len(missing)} output shards were not written, e.g. {missing[:3]}")
    return result


def _pool_size(num_gpus: float | None, num_cpus: float, concurrency: int | None, shards: int) -> tuple[float, int]:
    """(GPUs per actor, actors) for :func:`embed_files`' defaults, from the connected cluster's resources."""
    resources = ray.cluster_resources()
    if num_gpus is None:
        num_gpus = 1 if resources.get("GPU", 0) >= 1 else 0
    if concurrency is None:
        concurrency = int(resources.get("GPU", 0) // num_gpus) if num_gpus else int(resources.get("CPU", 1) // num_cpus)
    return num_gpus, max(1, min(concurrency, shards))


def _start_actors(count: int, num_cpus: float, num_gpus: float, *args, **kwargs) -> list:
    """``count`` :class:`ShardEmbedder` actors, each restarted without limit when its process dies (its shard is
    then redone: ``max_task_retries``).

    The constructor's arguments are a class (pickled by name when importable) and a few plain values, a few hundred
    bytes, which Ray sends inline with the actor's creation task (arguments under ``max_direct_call_object_size``,
    100 KiB by default); a restart runs the constructor again from that copy, so it never depends on an object in
    the object store that could go out of scope or be lost. Ray Data's actor pools pass their own arguments
    through the object store, and Ray 2.60 logs an error-level line for each such actor that may be restarted."""
    actor_class = ray.remote(ShardEmbedder).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=-1,
                                                    max_task_retries=-1)
    return [actor_class.remote(*args, **kwargs) for _ in range(count)]


def _embed_on(actors: list, todo: list[tuple[str, str]]):
    """Yields (input, rows, error) per shard as it finishes; each actor embeds one shard at a time and is handed
    the next as soon as it is done, so slow shards hold up no one else."""
    queue = todo[::-1]
    running = {}

    def hand_out(actor):
        if queue:
            src, dst = queue.pop()
            running[actor.embed.remote(src, dst)] = actor, src

    for actor in actors:
        hand_out(actor)
    while running:
        [ref], _ = ray.wait(list(running), num_returns=1)
        actor, src = running.pop(ref)
        rows, error = ray.get(ref)
        hand_out(actor)
        yield src, rows, error


PROGRESS_EVERY_S = 30.0  # at most one progress line this often (a line-oriented log: 120 lines in an hour)


class _Progress:
    """Shards and rows done so far: a tqdm bar on stderr (``progress=True``), a short line handed to ``progress``
    (a callable) at most every :data:`PROGRESS_EVERY_S` seconds, or nothing (``progress=False``)."""

    def __init__(self, progress: bool | Callable[[str], None], shards: int):
        from tqdm import tqdm

        self.report = progress if callable(progress) else None
        self.bar = tqdm(total=shards, unit="shard", desc="embedding", file=sys.stderr, disable=progress is not True)
        self.shards, self.done, self.rows = shards, 0, 0
        self.start = self.last = time.monotonic()

    def update(self, rows: int) -> None:
        self.done, self.rows = self.done + 1, self.rows + rows
        self.bar.set_postfix(rows=self.rows, refresh=False)
        self.bar.update(1)
        now = time.monotonic()
        if self.report is not None and now - self.last >= PROGRESS_EVERY_S and self.done < self.shards:
            self.last = now
            self.report(f"embedded {self.done} of {self.shards} shards ({self.rows} rows) in {now - self.start:.0f} s")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
