"""The shared harness of the per-family CPU benchmarks (:mod:`benchmarks.cpu_deberta`, :mod:`benchmarks.cpu_xlnet`):
random-weight transformers model vs the same model after ``fastbert.optimize``, float32, one batch of real lengths.

Each row runs once as warm-up (its output gives the max error against the first row, transformers eager, on real
positions), then the rows take turns for ``--rounds`` rounds; reported is each row's median wall time and its ratio
to transformers eager, with the load average before and after (other processes' load moves the numbers).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

RESULTS = Path(__file__).resolve().parent / "results" / "cpu"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    return p


def time_rows(rows: dict[str, Callable], inputs: tuple, real, rounds: int) -> dict:
    """``rows``: name -> callable(*inputs) -> output ``[B, S, H]``, the first the reference; ``real``: ``[B, S]``
    bool, the positions compared. Warm-up (max error, the 2e-5 x max(1, |ref|) bound), then ``rounds`` turns."""
    import torch

    results, reference = {}, None
    with torch.inference_mode():
        for name, fn in rows.items():
            start = time.perf_counter()
            out = fn(*inputs)
            results[name] = {"warmup_s": round(time.perf_counter() - start, 3), "walls": []}
            if reference is None:
                reference = out
            results[name]["max_abs_err"] = float((out - reference).abs()[real].max())
            results[name]["bound"] = 2e-5 * max(1.0, float(reference.abs()[real].max()))
        for _ in range(rounds):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn(*inputs)
                results[name]["walls"].append(time.perf_counter() - start)
    first = statistics.median(next(iter(results.values()))["walls"])
    for r in results.values():
        r["median_s"] = round(statistics.median(r["walls"]), 3)
        r["speedup_vs_hf_eager"] = round(first / r["median_s"], 2)
        r["walls"] = [round(w, 3) for w in r["walls"]]
    return results


def result(args, model: str, lengths, seqlen: int, load_before, rows: dict) -> dict:
    import torch

    from fastbert.encoder.backends.cpu_features import cpu_model

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": model, "threads": args.threads,
        "batch": args.batch, "max_length": args.max_length, "lengths": [int(n) for n in lengths],
        "tokens": int(lengths.sum()), "padded_tokens": int(args.batch * seqlen), "rounds": args.rounds,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu_model(), "torch": torch.__version__, "rows": rows,
    }


def table(result: dict, title: str) -> str:
    """``title``: what leads the first line (model shape and padding)."""
    lines = [f"{title}, fp32, {result['threads']} thread(s), batch {result['batch']} of real lengths "
             f"(max {result['max_length']}, {result['tokens']} real / {result['padded_tokens']} padded tokens); "
             f"{result['cpu']}; load average {result['load_average_before']} -> {result['load_average_after']}",
             "", "| row | median s | vs hf-eager | max abs err vs hf-eager (bound) |", "| --- | --- | --- | --- |"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['median_s']} | {r['speedup_vs_hf_eager']}x | {r['max_abs_err']:.2e} "
                     f"({r['bound']:.1e}) |")
    return "\n".join(lines) + "\n"


def write(out: Path, stem: str, result: dict, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(table(result, title))
    print(table(result, title))


def main_for(run: Callable, stem: str, title: str, description: str, argv: Sequence[str] | None) -> int:
    args = parser(description).parse_args(argv)
    write(args.out, stem, run(args), title)
    return 0
