"""CPU float32 XLNet-base (random weights): fastbert against transformers (eager: XLNet's only attention).

    python -m benchmarks.cpu_xlnet                          # batch 16 of real lengths (max 512), 3 rounds, 1 thread
    python -m benchmarks.cpu_xlnet --batch 32 --max-length 256 --rounds 5 --threads 2

The model is xlnet-base-cased's shape (d_model 768, 12 layers, 12 heads, FFN 3072, vocabulary 32000, gelu, no
clamp, ``use_mems_eval`` on as released: both rows return the new memories).
The batch: ``--batch`` passage lengths drawn from the bundled corpus (:func:`benchmarks.corpus.sample_lengths`),
left-padded random ids (XLNet's tokenizer pads on the left) with a pair's segment ids (0, 1, and 2 on the last
token). Each row runs once as warm-up (its output gives the max error against transformers eager
on real positions), then the rows take turns for ``--rounds`` rounds; reported is each row's median wall time and
its ratio to transformers eager. The load average is recorded before and after, since other processes' load moves
the numbers. Results: ``benchmarks/results/cpu/cpu_xlnet.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "cpu"
XLNET_BASE = dict(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072, ff_activation="gelu",
                  dropout=0.0)


def build_rows(seed: int) -> dict:
    """row name -> callable (ids, mask) -> last_hidden_state."""
    import torch
    import transformers

    import fastbert

    torch.manual_seed(seed)
    base = transformers.XLNetModel(transformers.XLNetConfig(**XLNET_BASE)).eval()
    # transformers' XLNet has one attention (its own einsum/softmax code), so there is no hf-sdpa row to time
    rows = {"hf-eager": base, "fastbert": fastbert.optimize(copy.deepcopy(base), backend="torch")}
    return {name: (lambda m: lambda ids, mask, types: m(input_ids=ids, attention_mask=mask,
                                                        token_type_ids=types).last_hidden_state)(model)
            for name, model in rows.items()}


def run(args) -> dict:
    import torch

    from benchmarks.corpus import sample_lengths

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    lengths = sample_lengths(args.max_length, args.batch, rng)
    seqlen = int(lengths.max())
    ids = torch.from_numpy(rng.integers(10, 32000, size=(args.batch, seqlen)))
    mask = torch.from_numpy((np.arange(seqlen)[None, ::-1] < lengths[:, None]).astype(np.int64))  # left padding
    ids[mask == 0] = 5
    second = torch.from_numpy(np.arange(seqlen)[None, :] >= seqlen - lengths[:, None] // 3)  # a pair: last third
    types = second.long()
    types[:, -1] = 2
    rows = build_rows(args.seed)
    load_before = os.getloadavg()
    results, reference = {}, None
    with torch.inference_mode():
        for name, fn in rows.items():
            start = time.perf_counter()
            out = fn(ids, mask, types)
            results[name] = {"warmup_s": round(time.perf_counter() - start, 3), "walls": []}
            if reference is None:
                reference = out  # hf-eager, the first row
            real = mask.bool()
            results[name]["max_abs_err"] = float((out - reference).abs()[real].max())
            results[name]["bound"] = 2e-5 * max(1.0, float(reference.abs()[real].max()))
        for _ in range(args.rounds):
            for name, fn in rows.items():
                start = time.perf_counter()
                fn(ids, mask, types)
                results[name]["walls"].append(time.perf_counter() - start)
    eager = statistics.median(results["hf-eager"]["walls"])
    for r in results.values():
        r["median_s"] = round(statistics.median(r["walls"]), 3)
        r["speedup_vs_hf_eager"] = round(eager / r["median_s"], 2)
        r["walls"] = [round(w, 3) for w in r["walls"]]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": "XLNet-base shape, random weights, float32", "threads": args.threads,
        "batch": args.batch, "max_length": args.max_length, "lengths": [int(n) for n in lengths],
        "tokens": int(lengths.sum()), "padded_tokens": int(args.batch * seqlen), "rounds": args.rounds,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": _cpu(), "torch": torch.__version__, "rows": results,
    }


def _cpu() -> str:
    from fastbert.encoder.backends.cpu_features import cpu_model

    return cpu_model()


def table(result: dict) -> str:
    lines = [f"XLNet-base shape, fp32, {result['threads']} thread(s), batch {result['batch']} of real lengths, "
             f"left padded "
             f"(max {result['max_length']}, {result['tokens']} real / {result['padded_tokens']} padded tokens); "
             f"{result['cpu']}; load average {result['load_average_before']} -> {result['load_average_after']}",
             "", "| row | median s | vs hf-eager | max abs err vs hf-eager (bound) |", "| --- | --- | --- | --- |"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {r['median_s']} | {r['speedup_vs_hf_eager']}x | {r['max_abs_err']:.2e} "
                     f"({r['bound']:.1e}) |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_xlnet.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "cpu_xlnet.md").write_text(table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
