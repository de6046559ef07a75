"""The GPU check's sentence stage: ``fastbert.SentenceEncoder.encode`` against ``SentenceTransformer.encode``.

The model folder is synthetic, since the GPU image has no bundled all-MiniLM-L6-v2: a random-weight
``transformers.BertModel`` of all-MiniLM-L6-v2's shape (384 hidden, 6 layers, 12 heads, 1536 FFN; the dry run:
32, 2, 2, 128), the ``corpus`` stage's offline WordPiece vocabulary, and the sentence-transformers files in the
layout of the real all-MiniLM-L6-v2 folder (``modules.json`` with Transformer, mean Pooling and Normalize;
``sentence_bert_config.json`` with ``max_seq_length`` 256, the dry run 64).

Texts: the first 4096 prose paragraphs of the corpus (dry run: 48), in corpus order, truncated at
``max_seq_length`` by both sides. Rows, in order: sentence-transformers float32 (the reference), float16,
fastbert float16, sentence-transformers bfloat16, fastbert bfloat16. sentence-transformers runs ``encode`` at its
default batch of 32 (a float16/bfloat16 copy made with ``.to(dtype)``); fastbert at ``fastbert encode``'s
default of 64 (:mod:`benchmarks.cpu_encode`'s convention). Each row: load, one warm-up ``encode`` of the first
256 texts (dry run: 8), then 3 timed ``encode`` calls of all texts (dry run: 1), the median kept: texts/s and
tokens/s (token counts from the offline tokenizer, ``[CLS]``/``[SEP]`` included, after truncation), peak CUDA
memory over the timed calls, min cosine and max abs difference from sentence-transformers float32, and the
correctness verdict of :func:`benchmarks.encoder.check_output` against sentence-transformers' own error in the
row's dtype.
"""
from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Settings:
    texts: int
    shape: dict
    max_seq_length: int
    warmup_texts: int
    repeats: int


GPU = Settings(texts=4096, shape=dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                      intermediate_size=1536), max_seq_length=256, warmup_texts=256, repeats=3)
DRY = Settings(texts=48, shape=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=128), max_seq_length=64, warmup_texts=8, repeats=1)
ROWS = (("sentence-transformers", "fp32"), ("sentence-transformers", "fp16"), ("fastbert", "fp16"),
        ("sentence-transformers", "bf16"), ("fastbert", "bf16"))
TORCH_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def plan() -> list[tuple[str, str, str, str, str]]:
    """Row keys in the grid's shape ``(model, dtype, mix, impl, layout)``."""
    return [("synthetic-minilm", dtype, "paragraphs", impl, "texts") for impl, dtype in ROWS]


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def synthetic_folder(folder: Path, tokenizer_dir: Path, settings: Settings, seed: int) -> Path:
    """A sentence-transformers folder: random BERT of ``settings.shape``, the tokenizer files of
    ``tokenizer_dir``, mean pooling and normalisation, ``max_seq_length`` from ``settings``."""
    from .encoder import random_bert

    random_bert(settings.shape, seed).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, folder / name)
    types = ("Transformer", "Pooling", "Normalize")
    paths = ("", "1_Pooling", "2_Normalize")
    _write_json(folder / "modules.json", [{"idx": i, "name": str(i), "path": p,
                                           "type": f"sentence_transformers.models.{t}"}
                                          for i, (t, p) in enumerate(zip(types, paths))])
    _write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": settings.shape["hidden_size"],
                                                       "pooling_mode_mean_tokens": True})
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": settings.max_seq_length,
                                                       "do_lower_case": False})
    return folder


def load(impl: str, dtype: str, folder: Path, device: str, backend: str):
    """``texts -> float32 [N, D]`` numpy embeddings of one row's implementation."""
    import torch

    from .cpu_encode import FASTBERT_BATCH, ST_BATCH

    if impl == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device=device)
        model.to(getattr(torch, TORCH_NAMES[dtype]))
        return lambda texts: model.encode(texts, batch_size=ST_BATCH, show_progress_bar=False)
    import fastbert

    encoder = fastbert.SentenceEncoder(str(folder), device=device, dtype=TORCH_NAMES[dtype], backend=backend)
    return lambda texts: encoder.encode(texts, batch_size=FASTBERT_BATCH)


def timed(encode, texts: list[str], settings: Settings, device: str) -> tuple[np.ndarray, dict]:
    """Warm up, then the median of ``settings.repeats`` timed encodes; peak CUDA memory over them."""
    import torch

    encode(texts[: settings.warmup_texts])
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(settings.repeats):
        t0 = time.perf_counter()
        out = np.asarray(encode(texts), dtype=np.float32)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    peak = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    return out, {"seconds": statistics.median(seconds), "peak_mem_mib": peak}


def compare(out: np.ndarray, ref: np.ndarray, ref_err: float | None) -> dict:
    """Fidelity to sentence-transformers float32: min cosine, max abs difference and the verdict."""
    import torch

    from .cpu_encode import cosines
    from .encoder import check_output

    err = float(np.abs(out - ref).max()) if np.isfinite(out).all() else float("inf")
    row = {"min_cosine": float(cosines(out, ref).min())}
    if ref_err is None:
        return {**row, "max_abs_err": err, "correct": None, "reason": "no sentence-transformers row in this dtype"}
    ref_t = torch.from_numpy(ref)
    return {**row, **check_output(err, ref_err, ref_t, torch.ones(ref_t.shape[0], dtype=torch.bool))}


def stage_sentence(ctx) -> None:
    """Every row of :func:`plan` within ``ctx.deadline`` (the plan recorded first), each recorded as it ends."""
    keys = plan()
    ctx.record({"plan": keys})
    from .encoder import TOLERANCE_K
    from .gpu_check_stages import free_memory, load_corpus, row_id

    import torch

    torch.set_float32_matmul_precision("highest")  # the float32 reference in true fp32 (no TF32)
    settings = DRY if ctx.dry_run else GPU
    ctx.record({"settings": {**settings.__dict__, "device": ctx.device, "backend": ctx.backend,
                             "tolerance_k": TOLERANCE_K}})
    corpus = load_corpus(ctx.work)
    texts = corpus["paragraphs"][: settings.texts]
    counts = [n for c in corpus["counts"] for n in c][: len(texts)]
    tokens = int(sum(min(n + 2, settings.max_seq_length) for n in counts))
    folder = synthetic_folder(ctx.work / "sentence-model", ctx.work / "tokenizer", settings, ctx.seed)
    done: dict[tuple[str, str], dict] = {}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    last = 0.0
    for key in keys:
        base = {**row_id(key), "texts": len(texts), "tokens": tokens}
        if not ctx.deadline.allows(last):
            ctx.record({**base, "status": "skipped", "reason": f"over budget: {ctx.deadline.left():.1f} s left"})
            continue
        t0 = time.monotonic()
        row = _run_row(key, folder, texts, settings, ctx, outputs, done)
        free_memory(ctx.device)  # the row's model, so the next row's peak memory is its own
        last = time.monotonic() - t0
        if row["status"] == "ok":
            row["tokens_per_s"] = tokens / row["seconds"]
        done[(key[3], key[1])] = row
        ctx.record({**base, **row, "row_s": round(last, 2)})


def _run_row(key, folder: Path, texts, settings: Settings, ctx, outputs: dict, done: dict) -> dict:
    impl, dtype = key[3], key[1]
    try:
        t0 = time.perf_counter()
        encode = load(impl, dtype, folder, ctx.device, ctx.backend)
        load_s = time.perf_counter() - t0
        out, m = timed(encode, texts, settings, ctx.device)
    except Exception as e:  # a broken implementation is a row, not the end of the stage
        return {"status": "error", "error": f"{type(e).__name__}: {e}"[:500], "correct": None}
    outputs[(impl, dtype)] = out
    row = {"status": "ok", "load_s": round(load_s, 2), **m, "texts_per_s": len(texts) / m["seconds"]}
    ref = outputs.get(("sentence-transformers", "fp32"))
    if ref is not None:
        same = outputs.get(("sentence-transformers", dtype))
        ref_err = None if same is None else float(np.abs(same - ref).max())
        row.update(compare(out, ref, ref_err))
    else:
        row.update(correct=None, reason="no sentence-transformers float32 reference")
    st_same = done.get(("sentence-transformers", dtype))
    if impl == "fastbert" and st_same and st_same.get("status") == "ok":
        row["speedup_vs_st_same_dtype"] = st_same["seconds"] / m["seconds"]
    return row
