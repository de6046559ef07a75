"""Fine-tuning step time on CPU: fastbert.optimize(model) against transformers (sdpa and eager), measured.

    python -m benchmarks.train [--models minilm bert-base] [--dtypes fp32 bf16] [--batch 32] [--max-length 128]
                               [--steps 5] [--threads 2] [--head sequence-classification | masked-lm]

One step is what a training loop does per batch: forward of ``BertForSequenceClassification`` in train mode (the
config's dropout, 0.1), loss, backward, ``AdamW.step()``, ``zero_grad``. Batches are real text: prose paragraphs
of the project's corpus (:mod:`benchmarks.corpus`: the bundled model card and the installed packages' READMEs),
shuffled with a fixed seed, 32 to a batch, tokenized by the all-MiniLM-L6-v2 tokenizer with dynamic padding to the
batch's longest (truncated at ``--max-length``), random binary labels: a mixed-length batch as a ``Trainer`` with
``DataCollatorWithPadding`` builds it. Every implementation sees the same batches from the same weights.

Models: ``minilm`` (the bundled all-MiniLM-L6-v2 checkpoint: 6 layers, hidden 384) and ``bert-base`` (random
weights of BERT-base's shape: 12 layers, hidden 768). ``fp32``: float32 throughout; ``bf16``:
``torch.autocast("cpu", dtype=torch.bfloat16)`` around forward and loss with float32 master weights.

Step time: the median of ``--steps`` steps after one warm-up step, all implementations in one process from the same
weights, interleaved step by step, so that a shared machine's changing load falls on each alike; tokens/s counts
real (unpadded) tokens. Peak resident memory (``ru_maxrss``): each implementation alone in its own process (load,
a warm-up step, one more). The machine's load average before and after is recorded: on a shared machine the ratios
are the figure to read.
``--head masked-lm``: ``BertForMaskedLM`` instead (MiniLM's checkpoint holds no MLM head: the head's new weights are
drawn with a fixed seed and shared), 15% of the real tokens to predict, and one more implementation,
``fastbert-padded-head``: fastbert with the vocabulary projection on every padded position (as before per-token heads
ran on real tokens only), to measure what that skips.
Also measured: the Q/K/V ``torch.cat`` fastbert does per forward (forward and backward of the cat alone), against
sharing one fused storage, which would make it free.

GPU rows (``--device cuda``, for when a GPU is lent; not run yet): the same steps on CUDA tensors, each step timed
between ``torch.cuda.synchronize()`` calls, autocast on ``cuda``, peak memory from ``torch.cuda.max_memory_allocated``
instead of RSS. ``fastbert-triton`` is ``fastbert.optimize(model, backend="triton")``: the Triton forward and backward
kernels, dropout fused into them (Philox masks: the same distribution as the others' dropout, not the same masks).

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
IMPLEMENTATIONS = ("fastbert", "hf-sdpa", "hf-eager", "fastbert-padded-head", "fastbert-triton")
HEADS = {"sequence-classification": "BertForSequenceClassification", "masked-lm": "BertForMaskedLM"}
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


def batches(count: int, batch: int, max_length: int, seed: int = 0,
            head: str = "sequence-classification") -> list[dict]:
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
        if head == "masked-lm":  # 15% of the real tokens to predict, -100 elsewhere
            predict = torch.from_numpy(rng.random(enc["input_ids"].shape) < 0.15) & (enc["attention_mask"] == 1)
            enc["labels"] = torch.where(predict, enc["input_ids"], -100)
        else:
            enc["labels"] = torch.from_numpy(rng.integers(0, 2, size=batch))
        out.append(enc)
    return out


def build_model(name: str, implementation: str, head: str = "sequence-classification", device: str = "cpu",
                dropout: float | None = None):
    import torch
    import transformers

    import fastbert

    attn = "eager" if implementation == "hf-eager" else "sdpa"
    cls = getattr(transformers, HEADS[head])
    torch.manual_seed(0)
    rates = {} if dropout is None else dict(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    if name == "minilm":
        model = cls.from_pretrained(fastbert.default_model_path(), num_labels=2, attn_implementation=attn, **rates)
    else:
        config = transformers.BertConfig(**BERT_BASE, num_labels=2, **rates)
        model = cls(config)
        model.set_attn_implementation(attn)
    model.to(device)
    if implementation == "fastbert-triton":
        fastbert.optimize(model, backend="triton")  # the Triton backward kernels, dropout fused
    elif implementation.startswith("fastbert"):
        fastbert.optimize(model)
    if implementation == "fastbert-padded-head":
        from fastbert.encoder.swap import _unwrap_heads

        _unwrap_heads(model)
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


def _step(model, optimizer, batch, bf16: bool, device: str = "cpu") -> tuple[float, float]:
    """One training step; (seconds, loss). On CUDA the step is timed between synchronizations."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, loss.item()


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def timing(spec: dict) -> dict:
    """Step times of every implementation in one process, interleaved step by step (implementation order rotated
    each step), so that a shared machine's changing load falls on all of them alike."""
    import torch

    torch.set_num_threads(spec["threads"])
    head = spec.get("head", "sequence-classification")
    device = spec.get("device", "cpu")
    data = [_to(b, device) for b in batches(spec["steps"] + 1, spec["batch"], spec["max_length"], head=head)]
    models = {name: build_model(spec["model"], name, head, device, spec.get("dropout"))
              for name in spec["implementations"]}
    first = next(iter(models.values()))
    for model in models.values():  # the same initial weights (the random classifier head included)
        model.load_state_dict(first.state_dict())
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=2e-5) for name, m in models.items()}
    times = {name: [] for name in models}
    losses = {name: [] for name in models}
    names = list(models)
    for i, batch in enumerate(data):
        for name in names[i % len(names):] + names[:i % len(names)]:
            torch.manual_seed(i)
            elapsed, loss = _step(models[name], optimizers[name], batch, spec["dtype"] == "bf16", device)
            losses[name].append(round(loss, 5))
            if i:  # step 0 is the warm-up
                times[name].append(round(elapsed * 1e3, 1))
    real = [int(b["attention_mask"].sum()) for b in data[1:]]
    slots = [b["attention_mask"].numel() for b in data[1:]]
    out = []
    for name in names:
        step_ms = statistics.median(times[name])
        row = dict(model=spec["model"], dtype=spec["dtype"], implementation=name, step_ms=step_ms,
                   step_ms_all=times[name], tokens_per_s=round(statistics.mean(real) / step_ms * 1e3, 1),
                   real_tokens_mean=statistics.mean(real), padded_slots_mean=statistics.mean(slots),
                   real_fraction_per_step=[round(n / m, 3) for n, m in zip(real, slots)],
                   losses=losses[name])
        if name == "fastbert":
            row["qkv_cat_ms"] = round(qkv_cat_ms(models[name]), 2)
        out.append(row)
    return {"runs": out}


def memory(spec: dict) -> dict:
    """Peak resident memory of one implementation alone in this process: load, a warm-up step, one more step."""
    import torch

    torch.set_num_threads(spec["threads"])
    head = spec.get("head", "sequence-classification")
    device = spec.get("device", "cpu")
    data = [_to(b, device) for b in batches(2, spec["batch"], spec["max_length"], head=head)]
    model = build_model(spec["model"], spec["implementation"], head, device, spec.get("dropout"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    bf16 = spec["dtype"] == "bf16"
    _step(model, optimizer, data[0], bf16, device)
    if device.startswith("cuda"):  # the GPU's peak allocation of the second step, not the process's RSS
        torch.cuda.reset_peak_memory_stats()
        _step(model, optimizer, data[1], bf16, device)
        peak = torch.cuda.max_memory_allocated() / 2**20
        return {"rss_after_warmup_mb": None, "rss_peak_mb": round(peak, 1), "memory": "cuda max_memory_allocated"}
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _step(model, optimizer, data[1], bf16, device)
    return {"rss_after_warmup_mb": round(loaded, 1),
            "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _run_worker(kind: str, spec: dict) -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train", "--worker", json.dumps(dict(spec, kind=kind))],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{kind} worker failed: {spec}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
        "fastbert_file": fastbert.__file__,  # the checkout measured
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average_before": os.getloadavg(),
    }


def _dropout(results: dict) -> str:
    rate = results["args"].get("dropout")
    return "0.1, as configured" if rate is None else f"{rate:g} for every implementation"


def table(results: dict) -> str:
    env = results["environment"]
    lines = [
        f"# Fine-tuning step on {results['args'].get('device', 'cpu')}: fastbert.optimize vs transformers",
        "",
        f"{env['cpu']}, {env['threads']} thread(s) of {env['cores']} cores; torch {env['torch']}, transformers "
        f"{env['transformers']}, fastbert {env['fastbert']} ({env['git_commit']}); {env['date']}. Load average "
        f"before {tuple(round(x, 2) for x in env['load_average_before'])}, after "
        f"{tuple(round(x, 2) for x in env['load_average_after'])} (a shared machine: read the ratios).",
        "",
        f"{HEADS[results['args'].get('head', 'sequence-classification')]}, train mode (dropout {_dropout(results)}), "
        f"batch {results['args']['batch']} of real "
        f"paragraphs padded to the batch's longest (max {results['args']['max_length']}), forward + loss + backward "
        f"+ AdamW step; median of {results['args']['steps']} steps after a warm-up, the implementations interleaved "
        "step by step in one process (the same batch back to back, so each step's ratio is a paired comparison). "
        "Peak RSS: each implementation alone in its own process (load, two steps).",
        "",
        "| model | dtype | implementation | step ms (median) | steps ms | real tokens/s | vs hf-sdpa (medians) | "
        "vs hf-sdpa (median of per-step ratios) | peak RSS MB |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results["runs"]:
        base = next(x for x in results["runs"] if x["model"] == r["model"] and x["dtype"] == r["dtype"]
                    and x["implementation"] == "hf-sdpa")
        rss = f"{r['rss_peak_mb']:.0f}" if "rss_peak_mb" in r else "-"
        paired = statistics.median(b / t for b, t in zip(base["step_ms_all"], r["step_ms_all"]))
        lines.append(f"| {r['model']} | {r['dtype']} | {r['implementation']} | {r['step_ms']:.0f} | "
                     f"{', '.join(f'{t:.0f}' for t in r['step_ms_all'])} | {r['tokens_per_s']:.0f} | "
                     f"{base['step_ms'] / r['step_ms']:.2f}x | {paired:.2f}x | {rss} |")
    lines += ["", "Real tokens per batch (mean): " + ", ".join(
        f"{r['model']}: {r['real_tokens_mean']:.0f} of {r['padded_slots_mean']:.0f} slots"
        for r in results["runs"] if r["implementation"] == "hf-sdpa" and r["dtype"] == results["runs"][0]["dtype"])]
    fills = [f"{r['model']}: {', '.join(f'{f:.2f}' for f in r['real_fraction_per_step'])}" for r in results["runs"]
             if r["implementation"] == "hf-sdpa" and r["dtype"] == results["runs"][0]["dtype"]
             and "real_fraction_per_step" in r]
    if fills:
        lines += ["", "Real tokens / padded slots, per measured step (packing gains most where this is low): "
                  + "; ".join(fills)]
    cats = [f"{r['model']} {r['dtype']}: {r['qkv_cat_ms']} ms of a {r['step_ms']:.0f} ms step" for r in results["runs"]
            if "qkv_cat_ms" in r]
    lines += ["", "Q/K/V `torch.cat` per forward (forward + backward of the cat alone; sharing one fused storage "
              "would save at most this): " + "; ".join(cats) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "bert-base"], choices=["minilm", "bert-base"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--implementations", nargs="+", default=list(IMPLEMENTATIONS[:3]), choices=IMPLEMENTATIONS)
    parser.add_argument("--head", default="sequence-classification", choices=list(HEADS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-dtypes", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"],
                        help="measure peak RSS (a process per implementation) for these dtypes")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: GPU rows, see the module docstring")
    parser.add_argument("--dropout", type=float, help="set every implementation's dropout")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="written as train_<tag>.json / .md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps((timing if spec["kind"] == "timing" else memory)(spec)))
        return 0
    stem = f"train_{args.tag}" if args.tag else "train"
    results = {"args": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
               "environment": environment(args.threads), "runs": []}
    results["args"]["out"] = str(args.out)
    for model in args.models:
        for dtype in args.dtypes:
            spec = dict(model=model, dtype=dtype, implementations=args.implementations, batch=args.batch,
                        max_length=args.max_length, steps=args.steps, threads=args.threads, head=args.head,
                        device=args.device, dropout=args.dropout)
            runs = _run_worker("timing", spec)["runs"]
            for run in runs:
                if dtype in args.memory_dtypes:
                    run.update(_run_worker("memory", dict(spec, implementation=run["implementation"])))
                print(f"{model} {dtype} {run['implementation']}: {run['step_ms']:.0f} ms/step "
                      f"{run['step_ms_all']}, {run['tokens_per_s']:.0f} tokens/s, "
                      f"peak RSS {run.get('rss_peak_mb', '-')} MB", flush=True)
            results["runs"] += runs
    results["environment"]["load_average_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
