"""Tokenizer throughput: fastbert.BertTokenizer vs transformers' BertTokenizerFast and raw `tokenizers`.

    python -m benchmarks.bench_tokenizer            # writes benchmarks/results/cpu/tokenizer.{json,md}

Same texts and options for all (batches of 1,024, truncation to 128, padding, numpy output), English and
multilingual text, on one core (taskset -c 0, num_threads=1, RAYON_NUM_THREADS=1) and on all cores. Each
(tokenizer, language, cores) case runs in its own process so that its peak memory (max RSS) is its own.
Reports MB/s of UTF-8 input and tokens/s (non-padding tokens).

Fine-tuning paths (``TASK_PATHS``), on one core, each tokenizer in one process, the paths interleaved in every
repeat so that machine noise hits them alike: the extra outputs (offsets, special tokens mask, length), left
padding, the NER path (pre-tokenized words, then ``word_ids`` of every row, as the token-classification recipe)
and the QA path (question/context pairs cut into overflowing windows with stride, offsets, then ``sequence_ids``
of every window, as the question-answering recipe), each timed next to the plain call it extends. These are timed
in CPU time of the process (``time.process_time``; one core, one thread), which other processes competing for a
shared machine do not inflate the way they inflate wall time. Ratio = time of the path / time of its plain call on
the same texts (goal: at most 1.2).
"""
from __future__ import annotations

import argparse
import glob
import gettext
import json
import os
import platform
import resource
import subprocess
import sys
import time

BATCH = 1024
MAX_LENGTH = 128
TOKENIZERS = ("fastbert", "transformers", "tokenizers")
RESULTS = os.path.join(os.path.dirname(__file__), "results", "cpu")


def english_texts(n: int) -> list[str]:
    """Paragraphs of English prose: Markdown/reST docs and docstring-heavy Python from site-packages."""
    import numpy
    site = os.path.dirname(os.path.dirname(numpy.__file__))
    files = sorted(glob.glob(os.path.join(site, "**", "*.md"), recursive=True)) + sorted(
        glob.glob(os.path.join(site, "**", "*.rst"), recursive=True)) + sorted(
        glob.glob(os.path.join(site, "transformers", "models", "*", "modeling_*.py")))
    texts = []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for para in f.read().split("\n\n"):
                para = para.strip()
                if 40 <= len(para) <= 4000:
                    texts.append(para)
        if len(texts) >= n:
            break
    return (texts * (n // max(len(texts), 1) + 1))[:n]


def multilingual_texts(n: int) -> list[str]:
    """Translated messages of the gettext catalogs on this machine (dozens of languages and scripts), joined
    into paragraph-sized texts."""
    messages = []
    for mo in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo")):
        try:
            with open(mo, "rb") as f:
                messages += [v for v in gettext.GNUTranslations(f)._catalog.values() if isinstance(v, str)]
        except Exception:
            continue
    texts = [" ".join(messages[i:i + 8]) for i in range(0, len(messages), 8)]
    if not texts:
        raise RuntimeError("no .mo catalogs found for multilingual text")
    return (texts * (n // len(texts) + 1))[:n]


def run_case(name: str, lang: str, threads: int, n_batches: int, repeats: int) -> dict:
    """Runs in a worker process: times one tokenizer on one text set; returns the measurements."""
    import fastbert
    path = fastbert.default_model_path()
    texts = (english_texts if lang == "english" else multilingual_texts)(BATCH * n_batches)
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    if name == "fastbert":
        from fastbert.tokenizers import BertTokenizer
        tok = BertTokenizer.from_pretrained(path, num_threads=threads)

        def encode(batch):
            return tok(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")["attention_mask"]
    elif name == "transformers":
        import transformers
        tok = transformers.BertTokenizerFast.from_pretrained(path)

        def encode(batch):
            return tok(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")["attention_mask"]
    else:
        import numpy as np
        import tokenizers
        tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        tok.enable_truncation(MAX_LENGTH)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")

        def encode(batch):
            return np.array([e.attention_mask for e in tok.encode_batch(batch)], dtype=np.int64)
    encode(batches[0])  # warm-up
    best = float("inf")
    tokens = 0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens = 0
        for batch in batches:
            tokens += int(encode(batch).sum())
        best = min(best, time.perf_counter() - start)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokenizer": name, "lang": lang, "threads": threads, "seconds": best, "bytes": n_bytes, "texts": len(texts),
            "tokens": tokens, "mb_per_s": n_bytes / best / 1e6, "tokens_per_s": tokens / best, "max_rss_mb": rss_mb}


def _task_calls(tok, texts: list[str]) -> dict:
    """The fine-tuning paths and their plain baselines: name -> (baseline name or None, call). Each call returns
    the BatchEncoding it made."""
    words = [t.split() for t in texts]
    questions = [t[:60] for t in texts[1:] + texts[:1]]
    common = dict(truncation=True, max_length=MAX_LENGTH)

    def ner_words():
        return tok(words, is_split_into_words=True, **common)

    def ner_labels():  # the token-classification recipe's use of the tokenizer: word_ids of every row
        enc = ner_words()
        for i in range(len(words)):
            enc.word_ids(i)
        return enc

    def qa_windows():
        return tok(questions, texts, truncation="only_second", max_length=MAX_LENGTH, stride=32,
                   return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length",
                   return_tensors="np")

    def qa_features():  # the question-answering recipe's use of the tokenizer: sequence_ids of every window
        enc = qa_windows()
        for i in range(len(enc["input_ids"])):
            enc.sequence_ids(i)
        return enc

    return {
        "plain": (None, lambda: tok(texts, padding=True, return_tensors="np", **common)),
        "offsets + special mask + length": ("plain", lambda: tok(
            texts, padding=True, return_tensors="np", return_offsets_mapping=True, return_special_tokens_mask=True,
            return_length=True, **common)),
        "left padding": ("plain", lambda: tok(texts, padding=True, padding_side="left", return_tensors="np",
                                              **common)),
        "plain lists": (None, lambda: tok(texts, **common)),
        "NER: pre-tokenized words": ("plain lists", ner_words),
        "NER: words + word_ids of every row": ("plain lists", ner_labels),
        "QA pairs": (None, lambda: tok(questions, texts, truncation="only_second", max_length=MAX_LENGTH,
                                       padding="max_length", return_tensors="np")),
        "QA: windows (stride 32) + offsets": ("QA pairs", qa_windows),
        "QA: windows + sequence_ids of every window": ("QA pairs", qa_features),
    }


TASK_PATHS = ("plain", "offsets + special mask + length", "left padding", "plain lists", "NER: pre-tokenized words",
              "NER: words + word_ids of every row", "QA pairs", "QA: windows (stride 32) + offsets",
              "QA: windows + sequence_ids of every window")


def _output_tokens(enc) -> int:
    """Positions in the output rows (padding included)."""
    ids = enc["input_ids"]
    return int(ids.size) if hasattr(ids, "size") else sum(len(row) for row in ids)


def run_tasks(name: str, n_batches: int, repeats: int) -> list[dict]:
    """Runs in a worker process (one core): times every fine-tuning path of one tokenizer; returns the rows."""
    import fastbert
    path = fastbert.default_model_path()
    texts = english_texts(BATCH * n_batches)
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    if name == "fastbert":
        from fastbert.tokenizers import BertTokenizer
        tok = BertTokenizer.from_pretrained(path, num_threads=1)
    else:
        import transformers
        tok = transformers.BertTokenizerFast.from_pretrained(path)
    calls = [_task_calls(tok, batch) for batch in batches]
    outputs = dict.fromkeys(TASK_PATHS, 0)
    for per_batch in calls:  # warm-up (and UTF-8 caches of the str objects); output sizes
        for path_name, (_, call) in per_batch.items():
            outputs[path_name] += _output_tokens(call())
    best = dict.fromkeys(TASK_PATHS, float("inf"))
    for _ in range(repeats):
        for path_name in TASK_PATHS:
            start = time.process_time()
            for per_batch in calls:
                per_batch[path_name][1]()
            best[path_name] = min(best[path_name], time.process_time() - start)
    rows = []
    for path_name in TASK_PATHS:
        baseline = calls[0][path_name][0]
        ratio = best[path_name] / best[baseline] if baseline else 1.0
        per_token = ratio * outputs[baseline] / outputs[path_name] if baseline else 1.0
        rows.append({"tokenizer": name, "path": path_name, "baseline": baseline, "seconds": best[path_name],
                     "texts": len(texts), "output_tokens": outputs[path_name], "ratio": ratio,
                     "ratio_per_output_token": per_token})
    return rows


def render_tasks_markdown(rows: list[dict]) -> str:
    lines = ["## Fine-tuning paths (1 core)", "",
             f"Batches of {BATCH} English paragraphs, max_length {MAX_LENGTH}; QA: question = 60 characters of "
             "another paragraph, context = the paragraph, windows with stride 32. CPU time of the process, best "
             "of the repeats. Each path is timed next to the plain call it extends (same texts, same process, "
             "interleaved repeats); ratio = path time / plain time (goal <= 1.2); per output token = the ratio "
             "divided by how many more output positions (rows x length) the path makes. `fastbert vs "
             "transformers` = transformers' time / fastbert's time for the path.", "",
             "| path | extends | fastbert ms/batch | ratio | per output token | transformers ms/batch | ratio | "
             "fastbert vs transformers |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r["tokenizer"], r["path"]): r for r in rows}
    for path_name in TASK_PATHS:
        fb, hf = by.get(("fastbert", path_name)), by.get(("transformers", path_name))
        batches = fb["texts"] / BATCH
        cells = [path_name, fb["baseline"] or "-", f"{fb['seconds'] * 1e3 / batches:.1f}", f"{fb['ratio']:.2f}",
                 f"{fb['ratio_per_output_token']:.2f}"]
        if hf:
            cells += [f"{hf['seconds'] * 1e3 / batches:.1f}", f"{hf['ratio']:.2f}",
                      f"{hf['seconds'] / fb['seconds']:.1f}x"]
        else:
            cells += ["-", "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import numpy
    import tokenizers
    import transformers
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "numpy": numpy.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "platform": platform.platform()}


def render_markdown(info: dict, rows: list[dict]) -> str:
    lines = [f"# Tokenizer throughput (CPU)", "",
             f"{info['cpu']}, {info['cores']} cores; Python {info['python']}, transformers {info['transformers']}, "
             f"tokenizers {info['tokenizers']}, numpy {info['numpy']}.", "",
             f"Batches of {BATCH} texts, truncation to {MAX_LENGTH}, padding to the longest, numpy int64 output. "
             "Best of the repeats. `vs` = fastbert speed / other speed.", "",
             "| text | cores | tokenizer | MB/s | tokens/s | max RSS (MB) | fastbert vs it |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        fb = next(r for r in rows if r["tokenizer"] == "fastbert" and r["lang"] == row["lang"]
                  and r["threads"] == row["threads"])
        ratio = fb["mb_per_s"] / row["mb_per_s"]
        cores = "1" if row["threads"] == 1 else f"all ({row['threads']})"
        lines.append(f"| {row['lang']} | {cores} | {row['tokenizer']} | {row['mb_per_s']:.2f} | "
                     f"{row['tokens_per_s']:,.0f} | {row['max_rss_mb']:.0f} | "
                     f"{'-' if row['tokenizer'] == 'fastbert' else f'{ratio:.1f}x'} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8, help="batches of 1,024 texts per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("TOKENIZER", "LANG", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--tasks-worker", metavar="TOKENIZER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        name, lang, threads = args.worker[0], args.worker[1], int(args.worker[2])
        print(json.dumps(run_case(name, lang, threads, args.batches, args.repeats)))
        return
    if args.tasks_worker:
        print(json.dumps(run_tasks(args.tasks_worker, args.batches, args.repeats)))
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    one_core = ["taskset", "-c", str(min(os.sched_getaffinity(0)))]
    task_rows = []
    for name in ("fastbert", "transformers"):
        env = dict(os.environ, TOKENIZERS_PARALLELISM="true", RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
        cmd = [*one_core, sys.executable, "-m", "benchmarks.bench_tokenizer", "--batches", str(args.batches),
               "--repeats", str(max(args.repeats, 5)), "--tasks-worker", name]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=root)
        task_rows += json.loads(out.stdout.strip().splitlines()[-1])
    print(render_tasks_markdown(task_rows), flush=True)
    all_cores = len(os.sched_getaffinity(0))
    rows = []
    for threads in (1, all_cores):
        for lang in ("english", "multilingual"):
            for name in TOKENIZERS:
                env = dict(os.environ, TOKENIZERS_PARALLELISM="true")
                cmd = [sys.executable, "-m", "benchmarks.bench_tokenizer", "--batches", str(args.batches),
                       "--repeats", str(args.repeats), "--worker", name, lang, str(threads)]
                if threads == 1:
                    env.update(RAYON_NUM_THREADS="1", OMP_NUM_THREADS="1")
                    cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *cmd]
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True,
                                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{lang:12s} threads={threads} {name:12s} {row['mb_per_s']:8.2f} MB/s "
                      f"{row['tokens_per_s']:12,.0f} tokens/s  rss {row['max_rss_mb']:.0f} MB", flush=True)
    info = machine_info()
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "tokenizer.json"), "w") as f:
        json.dump({"machine": info, "batch": BATCH, "max_length": MAX_LENGTH, "results": rows, "tasks": task_rows},
                  f, indent=2)
    with open(os.path.join(RESULTS, "tokenizer.md"), "w") as f:
        f.write(render_markdown(info, rows) + "\n" + render_tasks_markdown(task_rows))
    print(render_markdown(info, rows))


if __name__ == "__main__":
    main()
