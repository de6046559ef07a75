"""Throughput of each way to spread encoding over a machine's cores, side by side on the same texts.

    python -m benchmarks.parallel_encode [--texts 1000] [--rounds 2] [--workers 2] [--model PATH]

Modes (``W`` = ``--workers``, default: the CPU cores this process may use):

* ``single-Wthreads`` -- one process, ``torch.set_num_threads(W)`` (the baseline);
* ``single-1thread``  -- one process, one thread;
* ``pool-Wx1``        -- :class:`fastbert.embeddings.pool.EncodePool` with W CPU workers of one thread each;
* ``pool-1xW``        -- the pool with one worker of W threads (what the pool's plumbing costs);
* ``ray-embedder-Wx1`` -- Ray Data ``map_batches(fastbert.ray.Embedder)``, W actors of one CPU, local cluster,
  ``--ray-batch-size`` rows per Ray batch;
* ``ray-files-Wx1``   -- :func:`fastbert.ray.embed_files` over ``--shards`` Parquet shards, W actors of one CPU.

Texts: prose paragraphs from ``benchmarks/corpus.py``'s files, in order (real lengths). Every round runs every mode
once, in turn, so background load hits them alike; texts/s and the ratio to the baseline are medians over rounds.
The machine is shared and noisy: trust the ratios more than absolute numbers. Start-up is timed apart: the pool's
start (workers import torch and load the model), and for Ray the cost of an execution on 2 texts (actors start and
load the model in every execution), which ``steady texts/s`` subtracts. Every mode's embeddings are checked against
single-process encode (max |difference|). Writes ``parallel_encode.json`` and ``parallel_encode.md`` to
``benchmarks/results/cpu/``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import corpus
from .encoder import RESULTS, environment
from .report import table


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``), all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Modes:
    """Each mode: ``run(texts) -> (seconds of the timed part, embeddings, start-up seconds or None, CPU seconds
    of the timed part or None)``."""

    def __init__(self, model: str, workers: int, batch_size: int, ray_batch_size: int, shards: int, tmp: Path):
        self.model, self.workers, self.batch_size, self.tmp = model, workers, batch_size, tmp
        self.ray_batch_size, self.shards = ray_batch_size, shards
        self._single = None

    def single(self, threads: int):
        import torch

        from fastbert.embeddings.sentence_encoder import load_encoder

        def run(texts):
            if self._single is None:
                self._single = load_encoder(self.model, "cpu", "float32")
                self._single.encode(texts[:8])  # first-call costs out of the timing
            torch.set_num_threads(threads)
            if hasattr(self._single, "tokenizer"):
                self._single.tokenizer.num_threads = threads
            cpu = time.process_time()
            seconds, out = _timed(lambda: self._single.encode(texts, batch_size=self.batch_size))
            return seconds, out, None, time.process_time() - cpu
        return run

    def pool(self, processes: int, threads: int):
        from fastbert.embeddings.pool import EncodePool

        def run(texts):
            start, pool = _timed(lambda: EncodePool(processes, self.model, threads_per_worker=threads))
            with pool:
                pool.encode(texts[:2 * processes])  # every worker's first-call costs out of the timing
                pids = [os.getpid()] + [worker.process.pid for worker in pool._workers]
                cpu = sum(map(_cpu_seconds, pids))
                seconds, out = _timed(lambda: pool.encode(texts, batch_size=self.batch_size))
                cpu = sum(map(_cpu_seconds, pids)) - cpu
            return seconds, out, start, cpu
        return run

    def _ray_embedder(self, texts):
        import ray.data

        from fastbert.ray import Embedder

        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)],
                                 override_num_blocks=max(1, -(-len(texts) // self.ray_batch_size)))
        rows = ds.map_batches(Embedder, fn_constructor_kwargs={"path": self.model, "batch_size": self.batch_size},
                              compute=ray.data.ActorPoolStrategy(size=self.workers), num_cpus=1,
                              batch_size=self.ray_batch_size).take_all()
        out = np.empty((len(texts), len(rows[0]["embedding"])), dtype=np.float32)
        for row in rows:
            out[row["id"]] = row["embedding"]
        return out

    def _ray_files(self, texts):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from fastbert.ray import embed_files

        src, dst = self.tmp / "in", self.tmp / "out"
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
        src.mkdir(parents=True)
        bounds = np.linspace(0, len(texts), min(self.shards, len(texts)) + 1).astype(int)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            pq.write_table(pa.table({"id": np.arange(a, b), "text": texts[a:b]}), src / f"part-{k:03d}.parquet")
        embed_files(src, dst, path=self.model, concurrency=self.workers, num_cpus=1, batch_size=self.batch_size)
        table = pa.concat_tables(pq.read_table(p) for p in sorted(dst.glob("*.parquet")))
        return np.array(table["embedding"].to_pylist(), dtype=np.float32)[np.argsort(table["id"].to_numpy())]

    def ray(self, which: str):
        fn = self._ray_embedder if which == "embedder" else self._ray_files

        def run(texts):
            overhead, _ = _timed(lambda: fn(texts[:2]))
            seconds, out = _timed(lambda: fn(texts))
            return seconds, out, overhead, None
        return run


def measure(texts: Sequence[str], model: str, workers: int, rounds: int, batch_size: int, ray_batch_size: int,
            shards: int, modes: Sequence[str] | None) -> dict:
    import ray

    with tempfile.TemporaryDirectory() as tmp:
        m = Modes(model, workers, batch_size, ray_batch_size, shards, Path(tmp))
        all_modes = {
            f"single-{workers}threads": (1, workers, m.single(workers)),
            "single-1thread": (1, 1, m.single(1)),
            f"pool-{workers}x1": (workers, 1, m.pool(workers, 1)),
            f"pool-1x{workers}": (1, workers, m.pool(1, workers)),
            f"ray-embedder-{workers}x1": (workers, 1, m.ray("embedder")),
            f"ray-files-{workers}x1": (workers, 1, m.ray("files")),
        }
        chosen = {k: v for k, v in all_modes.items() if modes is None or any(k.startswith(x) for x in modes)}
        baseline = f"single-{workers}threads"
        chosen = {baseline: all_modes[baseline], **chosen}
        if any(name.startswith("ray") for name in chosen):
            import ray.data

            ray_start, _ = _timed(lambda: ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                                                   logging_level="ERROR"))
            ray.data.DataContext.get_current().enable_progress_bars = False
        else:
            ray_start = None
        reference = None
        seconds: dict[str, list[float]] = {name: [] for name in chosen}
        startup: dict[str, list[float]] = {name: [] for name in chosen}
        cpu: dict[str, list[float]] = {name: [] for name in chosen}
        error: dict[str, float] = {name: 0.0 for name in chosen}
        for r in range(rounds):
            for name, (_, _, run) in chosen.items():
                t, out, start, cpu_s = run(list(texts))
                if reference is None:
                    reference = out
                seconds[name].append(t)
                if start is not None:
                    startup[name].append(start)
                if cpu_s is not None:
                    cpu[name].append(cpu_s)
                error[name] = max(error[name], float(np.abs(out - reference).max()))
                print(f"round {r + 1}/{rounds} {name}: {t:.2f} s ({len(texts) / t:.1f} texts/s)", file=sys.stderr)
        if ray_start is not None:
            ray.shutdown()
    rows = []
    for name, (processes, threads, _) in chosen.items():
        ratios = [b / t for b, t in zip(seconds[baseline], seconds[name])]
        row = {
            "mode": name, "processes": processes, "threads_each": threads,
            "texts_per_s": round(len(texts) / statistics.median(seconds[name]), 2),
            "vs_baseline": round(statistics.median(ratios), 3),
            "seconds": [round(s, 3) for s in seconds[name]],
            "startup_s": round(statistics.median(startup[name]), 2) if startup[name] else None,
            "cpu_s": round(statistics.median(cpu[name]), 2) if cpu[name] else None,
            "max_abs_diff": error[name],
        }
        if name.startswith("ray"):  # the per-execution cost, timed on 2 texts, taken off where it is not noise
            steady = statistics.median(t - o for t, o in zip(seconds[name], startup[name]))
            if steady > 0.2 * statistics.median(seconds[name]):
                row["steady_texts_per_s"] = round(len(texts) / steady, 2)
        rows.append(row)
    return {"rows": rows, "ray_init_s": None if ray_start is None else round(ray_start, 2)}


def markdown(results: dict) -> str:
    env = results["environment"]
    s = results["settings"]
    out = [f"# Parallel encode throughput — CPU: {env['cpu']}", "",
           f"`python -m benchmarks.parallel_encode --texts {s['texts']} --rounds {s['rounds']} --workers "
           f"{s['workers']} --ray-batch-size {s['ray_batch_size']} --shards {s['shards']}`; model {s['model_name']}, "
           f"fp32, batch size {s['batch_size']}; {s['texts']} corpus paragraphs (mean {s['mean_tokens']} tokens); "
           f"{env['date']}, commit `{env['git_commit']}`.", "",
           "> Shared, noisy machine: texts/s are medians over rounds (every mode once per round); `× baseline` is the "
           "median of per-round ratios to one process with as many threads. Ray rows include starting the actors "
           "and loading the model in each execution; `steady` takes off that cost (timed on 2 texts). Each worker "
           "sorts by length only what it is given: the pool a chunk of the globally sorted texts, the Ray embedder "
           "one Ray batch, the file pipeline one shard; less sorting means more padding. `CPU s`: CPU time all "
           "processes of the mode spent on the timed part (median; not measured for Ray's actors): what the same "
           "texts cost in cores, whatever else runs on the machine.", "",
           table(["mode", "processes × threads", "texts/s", "× baseline", "CPU s", "steady texts/s", "start-up s",
                  "max |Δ| vs single"],
                 [[r["mode"], f"{r['processes']} × {r['threads_each']}", str(r["texts_per_s"]), str(r["vs_baseline"]),
                   "–" if r.get("cpu_s") is None else str(r["cpu_s"]), str(r.get("steady_texts_per_s", "–")),
                   "–" if r["startup_s"] is None else str(r["startup_s"]), f"{r['max_abs_diff']:.1e}"]
                  for r in results["rows"]]), ""]
    load = results.get("load_average_1min")
    if load:
        out += [f"Machine load (1-minute load average, {load['cores']} cores) before / after: {load['before']} / "
                f"{load['after']}.", ""]
    if results.get("ray_init_s") is not None:
        out += [f"`ray.init` of the local cluster: {results['ray_init_s']} s (once).", ""]
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parallel_encode", description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    parser.add_argument("--ray-batch-size", type=int, default=256,
                        help="rows per Ray Data batch (the Embedder sorts by length within one)")
    parser.add_argument("--shards", type=int, default=4, help="Parquet shards for ray-files")
    parser.add_argument("--model", help="model folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--modes", nargs="*", help="mode name prefixes (default: all), e.g. single pool")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    import fastbert
    from fastbert.embeddings.pool import load_tokenizer, token_lengths

    args = build_parser().parse_args(argv)
    model = args.model or fastbert.default_model_path()
    texts = corpus.first_paragraphs(args.texts)
    load_before = os.getloadavg()[0]
    results = measure(texts, model, args.workers, args.rounds, args.batch_size, args.ray_batch_size, args.shards,
                      args.modes)
    results["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                                    "cores": len(os.sched_getaffinity(0))}
    results["environment"] = environment(torch.device("cpu"))
    results["settings"] = {
        "texts": len(texts), "rounds": args.rounds, "workers": args.workers, "batch_size": args.batch_size,
        "ray_batch_size": args.ray_batch_size, "shards": args.shards,
        "model_name": "all-MiniLM-L6-v2" if args.model is None else os.path.basename(os.path.normpath(model)),
        "mean_tokens": round(float(token_lengths(load_tokenizer(model), texts).mean()), 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel_encode.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "parallel_encode.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
