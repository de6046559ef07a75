"""Fine-tuning step time on CPU: fastbert.optimize(model) against transformers (sdpa and eager), measured.

    python -m benchmarks.train [--models minilm bert-base] [--dtypes fp32 bf16] [--batch 32] [--max-length 128]
                               [--steps 5] [--threads 2]

One step is what a training loop does per batch: forward of ``BertForSequenceClassification`` in train mode (the
config's dropout, 0.1), loss, backward, ``AdamW.step()``, ``zero_grad``. Batches are real text: prose paragraphs
of the project's corpus (:mod:`benchmarks.corpus`: the bundled model card and the installed packages' READMEs),
shuffled with a fixed seed, 32 to a batch, tokenized by the all-MiniLM-L6-v2 tokenizer with dynamic padding to the
batch's longest (truncated at ``--max-length``), random binary labels: a mixed-length batch as a ``Trainer`` with
``DataCollatorWithPadding`` builds it. Every implementation sees the same batches from the same weights.

Models: ``minilm`` (the bundled all-MiniLM-L6-v2 checkpoint: 6 layers, hidden 384) and ``bert-base`` (random
weights of BERT-base's shape: 12 layers, hidden 768). ``fp32``: float32 throughout; ``bf16``:
``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss with float32 master weights.

Each (model, dtype, implementation) runs in its own process, so its peak resident memory (``ru_maxrss``) is its own;
``rss_peak_mb`` minus ``rss_loaded_mb`` (after loading and one warm-up step) is what the measured steps added.
Step time: the median of ``--steps`` steps after one warm-up step; tokens/s counts real (unpadded) tokens. The
machine's load average before and after is recorded: on a shared machine the ratios are the figure to read.
Also measured: the Q/K/V ``torch.cat`` fastbert does per forward (forward and backward of the cat alone), against
sharing one fused storage, which would make it free.

Writes ``train.json`` and ``train.md`` (``train_<tag>.*`` with ``--tag``) to ``benchmarks/results/train/``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train"
IMPLEMENTATIONS = ("fastbert", "hf-sdpa", "hf-eager")
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def batches(count: int, batch: int, max_length: int, seed: int = 0) -> list[dict]:
    """``count`` tokenized batches of real paragraphs (see the module docstring)."""
    import numpy as np
    import torch
    from transformers import BertTokenizerFast

    import fastbert

    from .corpus import first_paragraphs

    texts = first_paragraphs(count * batch * 4)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[:count * batch]
    tokenizer = BertTokenizerFast.from_pretrained(fastbert.default_model_path())
    out = []
    for i in range(count):
        chunk = [texts[j] for j in order[i * batch:(i + 1) * batch]]
        enc = dict(tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
        enc["labels"] = torch.from_numpy(rng.integers(0, 2, size=batch))
        out.append(enc)
    return out


def build_model(name: str, implementation: str):
    import torch
    import transformers

    import fastbert

    attn = "eager" if implementation == "hf-eager" else "sdpa"
    if name == "minilm":
        model = transformers.BertForSequenceClassification.from_pretrained(
            fastbert.default_model_path(), num_labels=2, attn_implementation=attn)
    else:
        torch.manual_seed(0)
        config = transformers.BertConfig(**BERT_BASE, num_labels=2)
        model = transformers.BertForSequenceClassification(config)
        model.set_attn_implementation(attn)
    if implementation == "fastbert":
        fastbert.optimize(model)
    return model.train()


def qkv_cat_ms(model, repeats: int = 20) -> float:
    """Forward + backward of the per-forward Q/K/V ``torch.cat`` of every layer, alone (ms)."""
    import torch

    layers = model.bert.encoder.layer
    params = [(a.query, a.key, a.value) for a in (layer.attention.self for layer in layers)]

    def once():
        fused = [(torch.cat([q.weight, k.weight, v.weight]), torch.cat([q.bias, k.bias, v.bias])) for q, k, v in params]
        torch.autograd.backward([t for pair in fused for t in pair], [torch.ones_like(t) for pair in fused for t in pair])

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    model.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / repeats * 1e3


def worker(spec: dict) -> dict:
    """One (model, dtype, implementation): step times, tokens, memory. Runs in its own process."""
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    data = batches(spec["steps"] + 1, spec["batch"], spec["max_length"])
    model = build_model(spec["model"], spec["implementation"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if spec["dtype"] == "bf16"
                else torch.autocast("cpu", enabled=False))
    times, losses = [], []
    rss_loaded = None
    for i, batch in enumerate(data):
        start = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        losses.append(loss.item())
        if i == 0:
            rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        else:
            times.append(elapsed)
    real = [int(b["attention_mask"].sum()) for b in data[1:]]
    slots = [b["attention_mask"].numel() for b in data[1:]]
    step = statistics.median(times)
    out = dict(spec, step_ms=round(step * 1e3, 1), step_ms_all=[round(t * 1e3, 1) for t in times],
               tokens_per_s=round(statistics.mean(real) / step, 1), real_tokens_mean=statistics.mean(real),
               padded_slots_mean=statistics.mean(slots), losses=[round(v, 5) for v in losses],
               rss_loaded_mb=round(rss_loaded, 1),
               rss_peak_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
    if spec["implementation"] == "fastbert":
        out["qkv_cat_ms"] = round(qkv_cat_ms(model), 2)
    return out


def environment(threads: int) -> dict:
    import datetime
    import platform

    import torch
    import transformers

    import fastbert

    from fastbert.encoder.backends.cpu_features import cpu_model

    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "fastbert": fastbert.__version__,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_before": os.getloadavg(),
    }


def table(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Fine-tuning step on CPU: fastbert.optimize vs transformers",
        "",
        f"{env['cpu']}, {env['threads']} thread(s) of {env['cores']} cores; torch {env['torch']}, transformers "
        f"{env['transformers']}, fastbert {env['fastbert']} ({env['git_commit']}); {env['date']}. Load average "
        f"before {tuple(round(x, 2) for x in env['load_average_before'])}, after "
        f"{tuple(round(x, 2) for x in env['load_average_after'])} (a shared machine: read the ratios).",
        "",
        f"BertForSequenceClassification, train mode (dropout 0.1), batch {results['args']['batch']} of real "
        f"paragraphs padded to the batch's longest (max {results['args']['max_length']}), forward + loss + backward "
        f"+ AdamW step; median of {results['args']['steps']} steps after a warm-up.",
        "",
        "| model | dtype | implementation | step ms | real tokens/s | vs hf-sdpa | peak RSS MB | RSS added by steps MB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results["runs"]:
        base = next(x for x in results["runs"] if x["model"] == r["model"] and x["dtype"] == r["dtype"]
                    and x["implementation"] == "hf-sdpa")
        lines.append(f"| {r['model']} | {r['dtype']} | {r['implementation']} | {r['step_ms']:.0f} | "
                     f"{r['tokens_per_s']:.0f} | {base['step_ms'] / r['step_ms']:.2f}x | {r['rss_peak_mb']:.0f} | "
                     f"{r['rss_peak_mb'] - r['rss_loaded_mb']:.0f} |")
    lines += ["", "Real tokens per batch (mean): " + ", ".join(
        f"{r['model']}: {r['real_tokens_mean']:.0f} of {r['padded_slots_mean']:.0f} slots"
        for r in results["runs"] if r["implementation"] == "hf-sdpa" and r["dtype"] == results["runs"][0]["dtype"])]
    cats = [f"{r['model']} {r['dtype']}: {r['qkv_cat_ms']} ms of a {r['step_ms']:.0f} ms step" for r in results["runs"]
            if "qkv_cat_ms" in r]
    lines += ["", "Q/K/V `torch.cat` per forward (forward + backward of the cat alone; sharing one fused storage "
              "would save at most this): " + "; ".join(cats) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-base"], choices=["minilm", "bert-base"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--implementations", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="written as train_<tag>.json / .md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    stem = f"train_{args.tag}" if args.tag else "train"
    results = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
               "environment": environment(args.threads), "runs": []}
    results["args"]["out"] = str(args.out)
    for model in args.models:
        for dtype in args.dtypes:
            for implementation in args.implementations:
                spec = dict(model=model, dtype=dtype, implementation=implementation, batch=args.batch,
                            max_length=args.max_length, steps=args.steps, threads=args.threads)
                proc = subprocess.run([sys.executable, "-m", "benchmarks.train", "--worker", json.dumps(spec)],
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.stderr.write(proc.stderr)
                    raise SystemExit(f"worker failed: {spec}")
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"{model} {dtype} {implementation}: {run['step_ms']:.0f} ms/step, "
                      f"{run['tokens_per_s']:.0f} tokens/s, peak RSS {run['rss_peak_mb']:.0f} MB", flush=True)
                results["runs"].append(run)
    results["environment"]["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
