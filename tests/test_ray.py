"""Ray Data integration (fastbert.ray) on a local 2-CPU cluster: embeddings equal single-process encode, every row
exactly once, resumable shard output, killed actors restarted and their shards finished, and what `fastbert encode
--ray` prints (one line for bad data, no traceback, no error-level line from Ray).

Ray is part of the dev extra: without it these tests fail at import (on purpose, never a silent skip)."""
import gc
import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import ray.cloudpickle
import ray.data
from sentence_model import random_texts, save_tiny_sentence_model

import fastbert.embeddings.ray
from fastbert.cli import main
from fastbert.embeddings.sentence_encoder import load_encoder
from fastbert.ray import Embedder, ShardsFailed, embed_files, embed_shard, input_files

FP32_BOUND = 1e-6  # max |difference| to single-process fp32 encode
CLI_TIMEOUT_S = 300  # a hang guard for one `fastbert encode --ray` in a subprocess (a run took 7-14 s here)
# An error-level line from Ray: its C++ log ("[2026-01-01 00:00:00,000 E 123 123] file.cc:1: ...") or its Python log
# ("2026-01-01 00:00:00,000\tERROR file.py:1 -- ..."), alone or behind a "(worker pid=...)" prefix.
RAY_ERROR_LINE = re.compile(r"\[[\d-]+ [\d:,.]+ [EF] \d+ \d+\]|\t(ERROR|CRITICAL) \S+:\d+ -- ")


class DyingEmbedder(Embedder):
    """An Embedder whose process exits abruptly (no clean-up, like a crash or an OOM kill) on its ``die_on``-th
    ``embed`` call with texts, once per cluster: the first actor to get there creates ``marker`` and dies.
    ``starts``: a file to which each construction appends a line "ACTOR_ID RECONSTRUCTED" (a restart: True)."""

    def __init__(self, *args, marker: str, die_on: int = 2, starts: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker, self.die_on, self.calls = marker, die_on, 0
        if starts is not None:
            context = ray.get_runtime_context()
            with open(starts, "a") as f:
                f.write(f"{context.get_actor_id()} {context.was_current_actor_reconstructed}\n")

    def embed(self, texts):
        self.calls += bool(len(texts))
        if texts and self.calls == self.die_on:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().embed(texts)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors need DyingEmbedder, not this file
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_sentence_model(tmp_path_factory.mktemp("tiny-st"), seed=int.from_bytes(os.urandom(4), "little"))


@pytest.fixture(scope="module")
def single(tiny_model):
    return load_encoder(tiny_model, "cpu", "float32")


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read(path) -> pa.Table:
    if path.endswith(".parquet"):
        return pq.read_table(path)
    with open(path, encoding="utf-8") as f:
        return pa.Table.from_pylist([json.loads(line) for line in f])


def _embeddings(table: pa.Table) -> np.ndarray:
    return np.array(table["embedding"].to_pylist(), dtype=np.float32).reshape(table.num_rows, -1)


def test_embedder_in_map_batches_with_a_killed_actor(cluster, tiny_model, single, seed, tmp_path):
    rng = np.random.default_rng(seed)
    texts = random_texts(rng, 129)
    weights = rng.random(len(texts))
    ds = ray.data.from_items([{"id": i, "text": t, "weight": w} for i, (t, w) in enumerate(zip(texts, weights))],
                             override_num_blocks=8)
    marker = str(tmp_path / "died")
    rows = ds.map_batches(DyingEmbedder, fn_constructor_kwargs={"path": tiny_model, "marker": marker, "batch_size": 5},
                          compute=ray.data.ActorPoolStrategy(size=2), batch_size=16).take_all()
    assert os.path.exists(marker), "no actor died: the retry was not exercised"
    ids = [row["id"] for row in rows]
    assert sorted(ids) == list(range(len(texts))), "every row exactly once"
    for row in rows:
        assert row["text"] == texts[row["id"]] and row["weight"] == weights[row["id"]]
    got = np.stack([row["embedding"] for row in rows])
    assert got.dtype == np.float32
    assert np.abs(got - single.encode(texts)[ids]).max() <= FP32_BOUND


def test_embed_files_resumes_retries_and_keeps_shards(cluster, tiny_model, single, seed, tmp_path):
    """One run over Parquet and JSON lines shards (nested, empty, one-row, one with bad data), resuming a run that
    crashed (one shard finished, one half-written temporary file), during which an actor dies mid-shard.

    Output shards keep the input's relative paths, columns and row order, plus the embedding column; the finished
    shard is not redone; the bad shard is reported at the end without stopping the others; a rerun skips all."""
    rng = np.random.default_rng(seed)
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    shards = {"a.parquet": 7, "sub/b.jsonl": 129, "c.parquet": 1, "d.parquet": 0, "e.parquet": 60, "f.parquet": 60}
    texts = {}
    for name, n in shards.items():
        texts[name] = random_texts(rng, n)
        rows = [{"id": i, "text": t, "score": float(s)} for i, (t, s) in enumerate(zip(texts[name], rng.random(n)))]
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
                [("id", pa.int64()), ("text", pa.string()), ("score", pa.float64())])), src / name)
        else:
            _write_jsonl(src / name, rows)
    (src / "_SUCCESS").write_text("")  # not a shard
    _write_jsonl(src / "bad.jsonl", [{"id": 0, "text": "fine"}] * 3 + [{"id": 3, "text": None}])
    # An earlier run finished e.parquet and crashed while writing f.parquet.
    embed_shard(Embedder(tiny_model), str(src / "e.parquet"), str(dst / "e.parquet"))
    finished = os.stat(dst / "e.parquet")
    (dst / ".f.parquet.x1y2z3.part").write_bytes(b"half a parquet file")  # as atomic_file names it

    marker = str(tmp_path / "died")
    with pytest.raises(ShardsFailed, match=r"bad.jsonl: column 'text' must hold strings; row 3 is None") as failure:
        embed_files(str(src), str(dst), path=tiny_model, concurrency=2, rows_per_call=20, batch_size=8,
                    embedder_class=DyingEmbedder, marker=marker, die_on=3)
    assert os.path.exists(marker), "no actor died mid-shard: the retry was not exercised"
    result = failure.value.result
    assert list(result.failed) == [str(src / "bad.jsonl")] and not (dst / "bad.jsonl").exists()
    assert result.skipped == [str(dst / "e.parquet")]
    again = os.stat(dst / "e.parquet")
    assert (again.st_ino, again.st_mtime_ns) == (finished.st_ino, finished.st_mtime_ns), "a finished shard was redone"
    assert result.written == {str(dst / name): n for name, n in shards.items() if name != "e.parquet"}
    assert not list(dst.rglob("*.part"))
    for name, n in shards.items():
        table = _read(str(dst / name))
        assert table.column_names == ["id", "text", "score", "embedding"]
        assert table["id"].to_pylist() == list(range(n)), "the input's rows, once each, in the input's order"
        assert table["text"].to_pylist() == texts[name]
        if name.endswith(".parquet"):
            assert table.schema.field("embedding").type == pa.list_(pa.float32(), single.get_sentence_embedding_dimension())
        if n:
            assert np.abs(_embeddings(table) - single.encode(texts[name])).max() <= FP32_BOUND

    (src / "bad.jsonl").unlink()
    rerun = embed_files(src, dst, path=tiny_model)
    assert rerun.written == {} and len(rerun.skipped) == len(shards)


def test_a_restarted_actor_finishes_the_shard_it_died_in(cluster, tiny_model, single, seed, tmp_path, monkeypatch):
    """One actor, killed mid-shard (its first batch already in the temporary file): Ray restarts that same actor from
    its constructor's arguments and the restarted actor finishes the shard, then the others. Progress lines come
    as shards finish (every one here, with the interval at 0)."""
    rng = np.random.default_rng(seed)
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    texts = {name: random_texts(rng, n) for name, n in (("a.parquet", 5), ("b.jsonl", 4), ("c.parquet", 3))}
    for name, shard_texts in texts.items():
        if name.endswith(".parquet"):
            pq.write_table(pa.table({"text": shard_texts}), src / name)
        else:
            _write_jsonl(src / name, [{"text": t} for t in shard_texts])
    marker, starts, lines = str(tmp_path / "died"), tmp_path / "starts", []
    monkeypatch.setattr(fastbert.embeddings.ray, "PROGRESS_EVERY_S", 0)
    result = embed_files(src, dst, path=tiny_model, concurrency=1, rows_per_call=2, embedder_class=DyingEmbedder,
                         marker=marker, die_on=2, starts=str(starts), progress=lines.append)
    assert os.path.exists(marker), "no actor died: the restart was not exercised"
    (actor, first), (again, restarted) = [line.split() for line in starts.read_text().splitlines()]
    assert (actor, first, restarted) == (again, "False", "True"), "one actor, started once and restarted once"
    assert result.written == {str(dst / name): len(t) for name, t in texts.items()}
    for name, shard_texts in texts.items():
        table = _read(str(dst / name))
        assert table["text"].to_pylist() == shard_texts
        assert np.abs(_embeddings(table) - single.encode(shard_texts)).max() <= FP32_BOUND
    assert not list(dst.rglob("*.part"))
    assert [re.sub(r"in \d+ s$", "in N s", line) for line in lines] == [
        "embedded 1 of 3 shards (5 rows) in N s", "embedded 2 of 3 shards (9 rows) in N s"]


def _run_cli_on_ray(*args) -> subprocess.CompletedProcess:
    """`fastbert encode --ray ARGS` in a subprocess that starts its own local Ray, as a user's would."""
    return subprocess.run([sys.executable, "-m", "fastbert", "encode", "--ray", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)


def test_cli_ray_stderr(tiny_model, tmp_path):
    """A run with a bad shard prints one line naming the file and the row, last, and no traceback (none from the
    actor either); a normal run prints no error-level line (none of Ray's either) and none of Ray's INFO logs."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    pq.write_table(pa.table({"text": ["a good text", "another"]}), src / "good.parquet")
    pq.write_table(pa.table({"text": ["fine", None, "fine"]}), src / "bad.parquet")
    args = ["--input", str(src), "--output", str(dst), "--model", tiny_model, "--workers", "1"]
    failing = _run_cli_on_ray(*args)
    assert failing.returncode == 1, failing.stderr
    assert "Traceback" not in failing.stderr and not RAY_ERROR_LINE.search(failing.stderr), failing.stderr
    assert re.fullmatch(r"fastbert encode: error: 1 input shard\(s\) failed, e\.g\. \S+/bad\.parquet: column 'text' "
                        r"must hold strings; row 1 is None; .*", failing.stderr.splitlines()[-1]), failing.stderr
    assert sorted(p.name for p in dst.iterdir()) == ["good.parquet"]

    pq.write_table(pa.table({"text": ["fine", "mended", "fine"]}), src / "bad.parquet")
    normal = _run_cli_on_ray(*args)
    assert normal.returncode == 0, normal.stderr
    assert not RAY_ERROR_LINE.search(normal.stderr) and "Traceback" not in normal.stderr, normal.stderr
    assert not re.search(r"\tINFO \S+:\d+ -- ", normal.stderr), normal.stderr
    last = normal.stderr.splitlines()[-1]
    assert last == f"fastbert encode: wrote 1 output files (3 rows) to {dst}; 1 were already done", normal.stderr
    assert _read(str(dst / "bad.parquet"))["text"].to_pylist() == ["fine", "mended", "fine"]


def test_bad_inputs_fail_before_any_work(tiny_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    with pytest.raises(OSError, match="no input files"):
        embed_files(src, tmp_path / "out", path=tiny_model)
    pq.write_table(pa.table({"body": ["x"]}), src / "a.parquet")
    with pytest.raises(ValueError, match="no text column 'text'.*body"):
        embed_files(src, tmp_path / "out", path=tiny_model)
    with pytest.raises(ValueError, match="output directory"):
        embed_files(src, src, path=tiny_model, text_column="body")
    _write_jsonl(src / "a.jsonl", [{"body": "y"}])
    with pytest.raises(ValueError, match="same output shard"):
        embed_files(src, tmp_path / "out", path=tiny_model, text_column="body", output_format="jsonl")
    with pytest.raises(ValueError, match="output_format"):
        embed_files(src, tmp_path / "out", output_format="csv")
    assert not (tmp_path / "out").exists()


def test_embedder_rejects_bad_batches(tiny_model):
    embedder = Embedder(tiny_model)
    with pytest.raises(ValueError, match="no text column 'text'"):
        embedder({"body": np.array(["a"], dtype=object)})
    with pytest.raises(ValueError, match="row 1 is None"):
        embedder({"text": np.array(["a", None], dtype=object)})
    with pytest.raises(ValueError, match="already has a column 'embedding'"):
        embedder({"text": np.array(["a"], dtype=object), "embedding": np.zeros(1)})
    with pytest.raises(TypeError, match="numpy batches"):
        embedder([("a",)])


def test_embed_shard_null_text_is_an_error_and_leaves_nothing(tiny_model, tmp_path):
    """The first batch is already in the temporary file when the second one fails: it is removed."""
    _write_jsonl(tmp_path / "a.jsonl", [{"text": "fine"}, {"text": None}])
    with pytest.raises(ValueError, match=r"a.jsonl: column .text. must hold strings; row 1 is None"):
        embed_shard(Embedder(tiny_model), str(tmp_path / "a.jsonl"), str(tmp_path / "out" / "a.jsonl"),
                    rows_per_call=1)
    assert (tmp_path / "out").is_dir() and not list((tmp_path / "out").iterdir())


def test_embed_shard_closes_its_parquet_writer_on_a_bad_batch(tiny_model, tmp_path, monkeypatch):
    """A Parquet shard failing after its first batch: the writer is closed before its temporary file goes, so
    nothing is left for the garbage collector to report ("Exception ignored ... write to closed file")."""
    pq.write_table(pa.table({"text": ["fine", "also fine", None]}), tmp_path / "a.parquet")
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(ValueError, match=r"a.parquet: column .text. must hold strings; row 2 is None"):
        embed_shard(Embedder(tiny_model), str(tmp_path / "a.parquet"), str(tmp_path / "out" / "a.parquet"),
                    rows_per_call=2)
    gc.collect()
    assert [str(u.exc_value) for u in unraisable] == []
    assert not list((tmp_path / "out").iterdir())


class _RejectsSecondBatch(Embedder):
    def embed(self, texts):
        self.calls = getattr(self, "calls", 0) + bool(len(texts))
        if texts and self.calls == 2:
            raise ValueError("texts[1] is too long")
        return super().embed(texts)


def test_embed_shard_errors_name_the_rows(tiny_model, tmp_path):
    """An embedder's error counts positions within its batch: the shard and the batch's rows are added."""
    _write_jsonl(tmp_path / "a.jsonl", [{"text": f"text {i}"} for i in range(5)])
    with pytest.raises(ValueError, match=r"a.jsonl: in rows 2 to 3: texts\[1\] is too long"):
        embed_shard(_RejectsSecondBatch(tiny_model), str(tmp_path / "a.jsonl"), str(tmp_path / "a-out.jsonl"),
                    rows_per_call=2)
    assert not list(tmp_path.glob("*a-out*"))
    with pytest.raises(ValueError, match="drop convert_to_tensor"):
        Embedder(tiny_model, convert_to_tensor=True)


def test_input_files_glob_and_list(tmp_path):
    for name in ("x/a.parquet", "x/b.jsonl", "y/c.parquet", "x/.hidden.parquet", "x/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    root, files = input_files(str(tmp_path / "*" / "*.parquet"))
    assert root == str(tmp_path) and files == [str(tmp_path / "x/a.parquet"), str(tmp_path / "y/c.parquet")]
    root, files = input_files(tmp_path)
    assert files == [str(tmp_path / n) for n in ("x/a.parquet", "x/b.jsonl", "y/c.parquet")]
    root, files = input_files([str(tmp_path / "x/b.jsonl"), str(tmp_path / "x/a.parquet")])
    assert root == str(tmp_path / "x") and files == [str(tmp_path / "x/a.parquet"), str(tmp_path / "x/b.jsonl")]
    with pytest.raises(ValueError, match="neither Parquet nor JSON lines"):
        input_files([str(tmp_path / "x/notes.txt")])


def test_cli_ray(cluster, tiny_model, single, seed, tmp_path, capsys):
    """`fastbert encode --ray` on the running cluster: a folder of JSON lines in, one output file per input out."""
    texts = random_texts(np.random.default_rng(seed), 33)
    (tmp_path / "in").mkdir()
    _write_jsonl(tmp_path / "in" / "part-0.jsonl", [{"n": i, "body": t} for i, t in enumerate(texts)])
    argv = ["encode", "--ray", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--model", tiny_model, "--text-column", "body", "--workers", "1"]
    assert main(argv) == 0
    assert "wrote 1 output files (33 rows)" in capsys.readouterr().err
    table = _read(str(tmp_path / "out" / "part-0.jsonl"))
    assert table["n"].to_pylist() == list(range(33)) and table["body"].to_pylist() == texts
    assert np.abs(_embeddings(table) - single.encode(texts)).max() <= FP32_BOUND
    assert main(argv) == 0  # a rerun finds everything done
    assert "wrote 0 output files (0 rows) to" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["a text", "--ray"], "--ray reads files"),
    (["--ray", "--input", "x"], "--ray reads files"),
    (["--ray", "--input", "x", "-o", "y", "--devices", "2"], "--devices is for one machine"),
    (["a text", "--verbose"], "--verbose go with --ray"),
])
def test_cli_ray_usage_errors(argv, message, capsys):
    assert main(["encode", *argv]) == 2
    assert message in capsys.readouterr().err
