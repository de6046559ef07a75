"""Fine-tune all-MiniLM-L6-v2 on a small real task: held-out accuracy and step time of fastbert (fp32, bf16 autocast)
against transformers (fp32, bf16 autocast), measured.

    python -m benchmarks.finetune_task [--classes 4] [--per-class 80] [--test-fraction 0.25] [--epochs 4]
                                       [--batch 16] [--max-length 64] [--lr 1e-4] [--seeds 0] [--threads 1]

The task (real text, offline, labelled by where it comes from): which package's README a paragraph was taken from.
The paragraphs are the prose paragraphs :mod:`benchmarks.corpus` reads from the installed packages' long
descriptions (``*.dist-info/METADATA``; code, tables and directives dropped); the ``--classes`` packages with the
most paragraphs of at least 5 words are the classes (recorded in the JSON: another machine's packages may differ),
``--per-class`` paragraphs drawn from each with the seed, paragraphs that occur in more than one package dropped.
A stratified ``--test-fraction`` is held out; nothing about it is used in training.

Runs: ``hf-fp32`` and ``hf-bf16`` (transformers' ``BertForSequenceClassification``, SDPA attention), ``fastbert-fp32``
and ``fastbert-bf16`` (the same class after ``fastbert.optimize``); bf16 is ``torch.autocast("cpu",
dtype=torch.bfloat16)`` around forward and loss with float32 master weights (evaluation too). All four start from the
same weights (the checkpoint, one classifier head drawn with the seed and copied), see the same batches in the same
order (one permutation per epoch from the seed), and reseed torch before each step alike; the dropout masks still
differ between transformers and fastbert (fastbert draws them in its own order). AdamW, linear decay, no warm-up.
The runs are interleaved step by step (their order rotated each step) so that a shared machine's changing load falls
on each alike; the step time (forward, loss, backward, optimizer step) is the median over all steps but the first.

Writes ``finetune_task.json`` and ``finetune_task.md`` (``finetune_task_<tag>.*`` with ``--tag``) to
``benchmarks/results/train/``.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "train"
RUNS = ("hf-fp32", "hf-bf16", "fastbert-fp32", "fastbert-bf16")
MIN_WORDS = 5


def task(classes: int, per_class: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    """(texts, labels, class names): ``per_class`` paragraphs of each of the ``classes`` packages with the most
    paragraphs (see the module docstring), in a seeded order."""
    import numpy as np

    from .corpus import _body, corpus_files, paragraphs

    by_package: dict[str, list[str]] = {}
    for path in corpus_files():
        if os.path.basename(path) != "METADATA":
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            paras = [p for p in paragraphs(_body(path, f.read())) if len(p.split()) >= MIN_WORDS]
        name = os.path.basename(os.path.dirname(path)).split("-")[0]  # pydantic-2.14.4.dist-info -> pydantic
        by_package.setdefault(name, []).extend(paras)
    owners: dict[str, set[str]] = {}
    for name, paras in by_package.items():
        for p in paras:
            owners.setdefault(p, set()).add(name)
    unique = {name: sorted({p for p in paras if len(owners[p]) == 1}) for name, paras in by_package.items()}
    ranked = sorted(unique, key=lambda n: (-len(unique[n]), n))
    names = [n for n in ranked if len(unique[n]) >= per_class][:classes]
    if len(names) < classes:
        raise ValueError(f"only {len(names)} packages have {per_class} distinct paragraphs; lower --per-class")
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, name in enumerate(names):
        chosen = rng.choice(len(unique[name]), size=per_class, replace=False)
        texts += [unique[name][i] for i in chosen]
        labels += [label] * per_class
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order], names


def split(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified (train indices, test indices): ``test_fraction`` of each class held out."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    train, test = [], []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        held = max(1, round(len(members) * test_fraction))
        test += members[:held]
        train += members[held:]
    return sorted(train), sorted(test)


def batches(tokenizer, texts, labels, indices, batch: int, max_length: int) -> list[dict]:
    """Tokenized batches of ``indices`` in that order, padded to each batch's longest (``DataCollatorWithPadding``'s
    dynamic padding)."""
    import torch

    out = []
    for start in range(0, len(indices), batch):
        chunk = indices[start:start + batch]
        enc = dict(tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt"))
        enc["labels"] = torch.tensor([labels[i] for i in chunk])
        out.append(enc)
    return out


def build_models(num_labels: int, seed: int) -> dict:
    """The four runs' models, from the same weights."""
    import torch
    import transformers

    import fastbert

    torch.manual_seed(seed)
    first = transformers.BertForSequenceClassification.from_pretrained(fastbert.default_model_path(),
                                                                      num_labels=num_labels)
    models = {}
    for run in RUNS:
        model = copy.deepcopy(first)
        if run.startswith("fastbert"):
            fastbert.optimize(model)
        models[run] = model.train()
    return models


def evaluate(model, data: list[dict], bf16: bool) -> tuple[float, float]:
    """(accuracy, mean loss) in eval mode."""
    import torch

    model.eval()
    correct = total = 0
    loss_sum = 0.0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for b in data:
            out = model(**b)
            correct += int((out.logits.argmax(-1) == b["labels"]).sum())
            total += len(b["labels"])
            loss_sum += float(out.loss) * len(b["labels"])
    model.train()
    return correct / total, loss_sum / total


# One seed's experiment: the four runs trained in lockstep (interleaved step by step), evaluated after every epoch.
def run_seed(args, seed: int) -> dict:
    import numpy as np
    import torch
    from transformers import BertTokenizerFast

    import fastbert

    torch.set_num_threads(args.threads)
    texts, labels, names = task(args.classes, args.per_class, seed)
    train, test = split(labels, args.test_fraction, seed)
    tokenizer = BertTokenizerFast.from_pretrained(fastbert.default_model_path())
    rng = np.random.default_rng(seed + 2)
    epochs = [batches(tokenizer, texts, labels, [train[i] for i in rng.permutation(len(train))], args.batch,
                      args.max_length) for _ in range(args.epochs)]
    test_data = batches(tokenizer, texts, labels, test, 64, args.max_length)
    models = build_models(len(names), seed)
    total_steps = sum(len(e) for e in epochs)
    optimizers = {r: torch.optim.AdamW(m.parameters(), lr=args.lr) for r, m in models.items()}
    schedules = {r: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 - s / total_steps)
                 for r, o in optimizers.items()}
    times = {r: [] for r in RUNS}
    passes = {r: [] for r in RUNS}  # forward + loss + backward alone (the optimizer step is the same for all)
    history = {r: [] for r in RUNS}
    losses = {r: [] for r in RUNS}
    step = 0
    for epoch in epochs:
        for b in epoch:
            for run in RUNS[step % len(RUNS):] + RUNS[:step % len(RUNS)]:
                torch.manual_seed(seed * 100_000 + step)
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.endswith("bf16")):
                    loss = models[run](**b).loss
                loss.backward()
                backward_done = time.perf_counter()
                optimizers[run].step()
                schedules[run].step()
                optimizers[run].zero_grad(set_to_none=True)
                times[run].append(time.perf_counter() - start)
                passes[run].append(backward_done - start)
                losses[run].append(round(loss.item(), 4))
            step += 1
        for run in RUNS:
            accuracy, loss = evaluate(models[run], test_data, run.endswith("bf16"))
            history[run].append(dict(accuracy=round(accuracy, 4), loss=round(loss, 4)))
    real = [int(b["attention_mask"].sum()) for e in epochs for b in e]
    slots = [b["attention_mask"].numel() for e in epochs for b in e]
    runs = []
    for run in RUNS:
        step_ms = statistics.median(times[run][1:]) * 1e3
        passes_ms = statistics.median(passes[run][1:]) * 1e3
        runs.append(dict(run=run, seed=seed, accuracy=history[run][-1]["accuracy"], loss=history[run][-1]["loss"],
                         per_epoch=history[run], step_ms=round(step_ms, 1), forward_backward_ms=round(passes_ms, 1),
                         step_ms_all=[round(t * 1e3, 1) for t in times[run]], train_losses=losses[run]))
    return dict(seed=seed, classes=names, train_examples=len(train), test_examples=len(test), steps=total_steps,
                real_tokens_per_step=round(statistics.mean(real), 1), padded_slots_per_step=statistics.mean(slots),
                runs=runs)


def table(results: dict) -> str:
    env, a = results["environment"], results["args"]
    lines = [
        "# Fine-tuning all-MiniLM-L6-v2 on a small real task: fastbert vs transformers",
        "",
        f"{env['cpu']}, {a['threads']} thread(s) of {env['cores']} cores; torch {env['torch']}, transformers "
        f"{env['transformers']}, fastbert {env['fastbert']} ({env['git_commit']}); {env['date']}. Load average "
        f"before {tuple(round(x, 2) for x in env['load_average_before'])}, after "
        f"{tuple(round(x, 2) for x in env['load_average_after'])} (a shared machine: read the ratios).",
        "",
        f"Task: which package's README a paragraph comes from, {a['classes']} classes x {a['per_class']} paragraphs "
        f"({results['seeds'][0]['train_examples']} train / {results['seeds'][0]['test_examples']} held out, "
        f"stratified); classes: {', '.join(results['seeds'][0]['classes'])}. BertForSequenceClassification from the "
        f"checkpoint, dropout 0.1, batch {a['batch']}, max length {a['max_length']} (dynamic padding), AdamW lr "
        f"{a['lr']} linear decay, {a['epochs']} epochs ({results['seeds'][0]['steps']} steps); the four runs from the "
        "same weights on the same batches, interleaved step by step. Step = forward + loss + backward + AdamW; median "
        "of all steps but the first; forward + backward: the step without the optimizer's update, which costs all runs "
        "the same.",
        "",
        "| seed | run | held-out accuracy | held-out loss | accuracy per epoch | step ms (median) | "
        "speed vs hf-fp32 (medians) | median of per-step ratios vs hf-fp32 | forward + backward ms (median) | "
        "forward + backward vs hf-fp32 |",
        "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in results["seeds"]:
        base = next(r for r in s["runs"] if r["run"] == "hf-fp32")
        for r in s["runs"]:
            paired = statistics.median(b / t for b, t in zip(base["step_ms_all"][1:], r["step_ms_all"][1:]))
            per_epoch = ", ".join(f"{e['accuracy']:.3f}" for e in r["per_epoch"])
            lines.append(f"| {s['seed']} | {r['run']} | {r['accuracy']:.3f} | {r['loss']:.3f} | "
                         f"{per_epoch} | {r['step_ms']:.0f} | "
                         f"{base['step_ms'] / r['step_ms']:.2f}x | {paired:.2f}x | {r['forward_backward_ms']:.0f} | "
                         f"{base['forward_backward_ms'] / r['forward_backward_ms']:.2f}x |")
    s = results["seeds"][0]
    lines += ["", f"Real tokens per step (mean): {s['real_tokens_per_step']:.0f} of {s['padded_slots_per_step']:.0f} "
              "padded slots."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from .train import environment

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=80)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="written as finetune_task_<tag>.json / .md")
    args = parser.parse_args(argv)
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "environment": environment(args.threads), "seeds": []}
    for seed in args.seeds:
        outcome = run_seed(args, seed)
        results["seeds"].append(outcome)
        for r in outcome["runs"]:
            print(f"seed {seed} {r['run']}: accuracy {r['accuracy']:.3f} (per epoch "
                  f"{[e['accuracy'] for e in r['per_epoch']]}), loss {r['loss']:.3f}, {r['step_ms']:.0f} ms/step",
                  flush=True)
    results["environment"]["load_average_after"] = os.getloadavg()
    stem = f"finetune_task_{args.tag}" if args.tag else "finetune_task"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
