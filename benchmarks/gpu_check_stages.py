"""The GPU check's stages that run in a child process: ``python -m benchmarks.gpu_check --run-stage NAME``.

Each stage appends JSON lines to ``WORK/<stage>.jsonl`` as it goes (one record per result row, flushed), so the
parent still has every finished row when it kills the child at the stage's budget. ``--deadline`` is that budget's
end (wall clock, seconds since the epoch): a stage with rows does not start one predicted to end after it.

* ``env``    -- :func:`benchmarks.encoder.environment` (device, driver, versions, git commit) plus
  sentence-transformers' and tokenizers' versions and whether ``fastbert.BertTokenizer`` (the C++ extension)
  imports.
* ``corpus`` -- the prose paragraphs of :mod:`benchmarks.corpus` (package READMEs already on the machine; the
  bundled model card where installed), a WordPiece vocabulary trained on them offline (``tokenizers``,
  lower-cased, BERT's special tokens, at most 30522 entries) saved as ``WORK/tokenizer/`` (``vocab.txt``,
  ``tokenizer.json``, ``tokenizer_config.json``), and every paragraph's token count with it, in
  ``WORK/corpus.json``. The grid draws its length mixes from these counts, the sentence stage its texts and
  its model folder's tokenizer.
* ``grid`` and ``sentence`` live in :mod:`benchmarks.gpu_check_grid` and :mod:`benchmarks.gpu_check_sentence`.
"""
from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPUS_CHARS = {False: 1_500_000, True: 300_000}  # characters of prose read: GPU run, dry run
VOCAB_SIZE = {False: 30522, True: 4000}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0-4
ROW_FIELDS = ("model", "dtype", "mix", "impl", "layout")  # a grid or sentence row's key, in this order


def row_id(key) -> dict:
    """A row key ``(model, dtype, mix, impl, layout)`` as the record's fields."""
    return dict(zip(ROW_FIELDS, key))


class Deadline:
    """The end of a stage's budget, and the rule for starting more work: only what is predicted to end in time."""

    def __init__(self, at: float):
        self.at = at  # seconds since the epoch

    def left(self) -> float:
        return self.at - time.time()

    def allows(self, estimate_s: float) -> bool:
        return estimate_s <= self.left()


class Recorder:
    """Appends one JSON object per line to ``path``, flushed after each, so a killed child loses no finished row."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    return str(o)


@dataclass
class Context:
    work: Path
    dry_run: bool
    seed: int
    deadline: Deadline
    record: Recorder

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def backend(self) -> str:
        """fastbert's backend, named rather than left to ``auto``: a GPU run must exercise the Triton kernels."""
        return "torch" if self.dry_run else "triton"


def free_memory(device: str) -> None:
    """Collect what the last row left (models hold reference cycles) and return cached CUDA memory."""
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------
# env
# ----------------------------------------------------------------------------------------------------------------

def stage_env(ctx: Context) -> None:
    import torch

    from .encoder import environment

    env = environment(torch.device(ctx.device))
    for dist in ("sentence-transformers", "tokenizers", "pybind11", "setuptools"):
        env[dist.replace("-", "_")] = _version(dist)
    env["fastbert_tokenizer"] = _tokenizer_import()
    env["fastbert_backend"] = ctx.backend
    env["dry_run"] = ctx.dry_run
    ctx.record(env)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tokenizer_import() -> str:
    """``"ok"`` when ``fastbert.BertTokenizer`` (the C++ extension) imports, else the error."""
    import fastbert

    try:
        fastbert.BertTokenizer  # noqa: B018 -- the import is the check
    except ImportError as e:
        return f"ImportError: {e}"
    return "ok"


# ----------------------------------------------------------------------------------------------------------------
# corpus
# ----------------------------------------------------------------------------------------------------------------

def read_paragraphs(max_chars: int) -> list[list[str]]:
    """Prose paragraphs per corpus file, files in corpus order until ``max_chars`` characters are read."""
    from . import corpus

    per_file, chars = [], 0
    for paras in corpus.file_paragraphs():
        if chars >= max_chars:
            break
        per_file.append(paras)
        chars += sum(len(p) for p in paras)
    if not per_file:
        raise RuntimeError("no prose on this machine for the corpus (no model card, no package METADATA)")
    return per_file


def train_vocab(paragraphs: list[str], vocab_size: int, folder: Path):
    """A lower-cased WordPiece tokenizer trained on ``paragraphs``, saved to ``folder`` as ``vocab.txt`` (what
    fastbert reads), ``tokenizer.json`` and ``tokenizer_config.json`` (what transformers reads); returned as a
    ``tokenizers.Tokenizer``."""
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(paragraphs, vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=list(SPECIAL_TOKENS))
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(folder))
    tokenizer.save(str(folder / "tokenizer.json"))
    names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512,
              **dict(zip(names, SPECIAL_TOKENS))}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return tokenizer


def stage_corpus(ctx: Context) -> None:
    per_file = read_paragraphs(CORPUS_CHARS[ctx.dry_run])
    flat = [p for paras in per_file for p in paras]
    tokenizer = train_vocab(flat, VOCAB_SIZE[ctx.dry_run], ctx.work / "tokenizer")
    counts = [len(e.ids) for e in tokenizer.encode_batch(flat, add_special_tokens=False)]
    per_file_counts, i = [], 0
    for paras in per_file:
        per_file_counts.append(counts[i:i + len(paras)])
        i += len(paras)
    (ctx.work / "corpus.json").write_text(json.dumps({"paragraphs": flat, "counts": per_file_counts}),
                                          encoding="utf-8")
    c = np.asarray(counts)
    ctx.record({
        "files": len(per_file), "characters": sum(len(p) for p in flat), "paragraphs": len(flat),
        "vocab_size": tokenizer.get_vocab_size(), "tokens_per_word": round(float(c.sum()) / _words(flat), 3),
        "paragraph_tokens": {q: int(np.percentile(c, int(q[1:]))) for q in ("p10", "p50", "p90", "p99")},
        "source": "benchmarks.corpus prose (package METADATA long descriptions, the bundled model card if any)",
    })


def _words(texts: list[str]) -> int:
    return max(1, sum(len(t.split()) for t in texts))


def load_corpus(work: Path) -> dict:
    """What the corpus stage left: ``paragraphs`` (all, in corpus order) and ``counts`` (per file, tokens per
    paragraph without ``[CLS]``/``[SEP]``)."""
    return json.loads((work / "corpus.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------

def child_main(args) -> int:
    """Run the stage ``args.run_stage`` in this process (the parent enforces its budget)."""
    if args.work is None or args.deadline is None:
        print("gpu_check: --run-stage needs --work and --deadline", file=sys.stderr)
        return 2
    ctx = Context(work=args.work, dry_run=args.dry_run, seed=args.seed, deadline=Deadline(args.deadline),
                  record=Recorder(args.work / f"{args.run_stage}.jsonl"))
    if args.run_stage == "env":
        stage_env(ctx)
    elif args.run_stage == "corpus":
        stage_corpus(ctx)
    elif args.run_stage == "grid":
        from .gpu_check_grid import stage_grid

        stage_grid(ctx)
    else:
        from .gpu_check_sentence import stage_sentence

        stage_sentence(ctx)
    return 0
