"""Real-text sequence lengths for the encoder benchmark's ``real`` length distribution.

Where the text comes from: prose already on the machine, read in a fixed order -- the bundled all-MiniLM-L6-v2
model card (``README.md``) and the long descriptions (``*.dist-info/METADATA`` bodies: package READMEs in Markdown
or reStructuredText) of the packages installed next to ``torch``. Nothing is downloaded. Different machines have
different packages installed, so the corpus (and the distribution) can differ a little; ``summary()`` records what
was used and the resulting length statistics, and the benchmark stores that in its JSON.

How passages are made: each file is split into paragraphs (blocks separated by blank lines; the lines of a block
are joined with spaces). Blocks that are not prose are dropped: fenced code, doctest and shell prompts, tables,
directives, and blocks where fewer than 60% of the non-space characters are letters. Paragraphs are then packed
greedily, in file order and never across files, into passages of at most ``max_length`` tokens (counting
``[CLS]``/``[SEP]``): a paragraph joins the current passage if it still fits, else it starts a new one; a paragraph
longer than ``max_length`` alone is truncated. That is what a document-chunking pipeline feeds an encoder at this
maximum length, and it gives realistic spread: near the maximum when paragraphs are short, shorter passages where a
long paragraph did not fit or a document ended.

Tokenizer: ``transformers.BertTokenizerFast`` of the bundled all-MiniLM-L6-v2 (uncased WordPiece, BERT's vocabulary).
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import re

import numpy as np

MAX_CHARS = 1_500_000  # enough text for thousands of passages; tokenizes in a few seconds
MIN_LETTER_FRACTION = 0.6
_NOT_PROSE = re.compile(r"^\s*(```|~~~|>>>|\$ |\.\. |\||\+[-=]|[-=]{3,}|#!|<)")


def corpus_files() -> list[str]:
    """The files read, in order: the model card first, then package METADATA files sorted by path."""
    import fastbert

    files = []
    try:
        readme = os.path.join(fastbert.default_model_path(), "README.md")
        if os.path.isfile(readme):
            files.append(readme)
    except OSError:
        pass
    # Every installed distribution on sys.path (a venv layered on another one included), each METADATA once.
    metadata = set()
    for dist in importlib.metadata.distributions():
        path = getattr(dist, "_path", None)  # the .dist-info folder of a normal install
        if path is not None and str(path).endswith(".dist-info") and os.path.isfile(os.path.join(path, "METADATA")):
            metadata.add(os.path.realpath(os.path.join(path, "METADATA")))
    return files + sorted(metadata)


def _body(path: str, text: str) -> str:
    """A METADATA file is e-mail style headers, a blank line, then the long description."""
    if os.path.basename(path) == "METADATA":
        _, _, text = text.partition("\n\n")
    return text


def _is_prose(block: str) -> bool:
    lines = block.splitlines()
    if any(_NOT_PROSE.match(line) for line in lines) or all(line.startswith(("    ", "\t")) for line in lines):
        return False
    chars = [c for c in block if not c.isspace()]
    if len(block.split()) < 3 or not chars:
        return False
    return sum(c.isalpha() for c in chars) / len(chars) >= MIN_LETTER_FRACTION


def paragraphs(text: str) -> list[str]:
    """Prose paragraphs of ``text``: blank-line separated blocks, lines joined with spaces, non-prose dropped.
    Text between code fences is dropped as a whole."""
    text = re.sub(r"```.*?```", "\n\n", text, flags=re.S)
    blocks = re.split(r"\n\s*\n", text)
    return [" ".join(b.split()) for b in blocks if _is_prose(b)]


def file_paragraphs():
    """Yield the prose paragraphs of each corpus file in turn (files without prose are skipped)."""
    for path in corpus_files():
        with open(path, encoding="utf-8", errors="replace") as f:
            paras = paragraphs(_body(path, f.read()))
        if paras:
            yield paras


def first_paragraphs(n: int) -> list[str]:
    """The first ``n`` prose paragraphs of the corpus (model card, then package READMEs)."""
    texts: list[str] = []
    for paras in file_paragraphs():
        texts += paras
        if len(texts) >= n:
            return texts[:n]
    raise ValueError(f"the corpus has only {len(texts)} paragraphs, fewer than {n}")


@functools.lru_cache(maxsize=None)
def _paragraph_token_counts(max_chars: int = MAX_CHARS) -> tuple[tuple[tuple[int, ...], ...], int, int]:
    """Per file, the token count (no special tokens) of each prose paragraph; plus files and characters read."""
    import fastbert
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(fastbert.default_model_path())
    per_file, n_files, n_chars = [], 0, 0
    for paras in file_paragraphs():
        if n_chars >= max_chars:
            break
        n_files += 1
        n_chars += sum(len(p) for p in paras)
        ids = tokenizer(paras, add_special_tokens=False, verbose=False)["input_ids"]
        per_file.append(tuple(len(x) for x in ids))
    if not per_file:
        raise RuntimeError("no prose found for the real-text length distribution (no model card, no METADATA)")
    return tuple(per_file), n_files, n_chars


def pack(counts: tuple[int, ...], max_length: int, special: int = 2) -> list[int]:
    """Greedy packing of one file's paragraph token counts into passage lengths <= ``max_length`` (with
    ``special`` tokens per passage)."""
    budget = max_length - special
    out, current = [], 0
    for n in counts:
        if current and current + n > budget:
            out.append(current + special)
            current = 0
        current += n
        if current >= budget:  # a paragraph longer than the budget is truncated
            out.append(max_length)
            current = 0
    if current:
        out.append(current + special)
    return out


@functools.lru_cache(maxsize=None)
def passage_lengths(max_length: int, max_chars: int = MAX_CHARS) -> np.ndarray:
    """Token lengths (with ``[CLS]``/``[SEP]``) of the corpus packed into passages of at most ``max_length``."""
    per_file, _, _ = _paragraph_token_counts(max_chars)
    lengths = [n for counts in per_file for n in pack(counts, max_length)]
    return np.asarray(lengths, dtype=np.int64)


def sample_lengths(max_length: int, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` passage lengths drawn (with replacement) from the packed corpus."""
    return rng.choice(passage_lengths(max_length), size=batch, replace=True)


def summary(max_lengths, max_chars: int = MAX_CHARS) -> dict:
    """What was read and the length statistics per maximum length, for the benchmark's JSON."""
    per_file, n_files, n_chars = _paragraph_token_counts(max_chars)
    stats = {}
    for m in max_lengths:
        lengths = passage_lengths(m, max_chars)
        stats[str(m)] = {
            "passages": int(lengths.size),
            "mean": round(float(lengths.mean()), 1),
            "mean_over_max": round(float(lengths.mean()) / m, 3),
            "p10": int(np.percentile(lengths, 10)),
            "p50": int(np.percentile(lengths, 50)),
            "p90": int(np.percentile(lengths, 90)),
            "at_max_fraction": round(float((lengths == m).mean()), 3),
        }
    return {
        "sources": "bundled all-MiniLM-L6-v2 README.md + *.dist-info/METADATA long descriptions in site-packages",
        "files": n_files,
        "characters": n_chars,
        "paragraphs": sum(len(c) for c in per_file),
        "packing": "prose paragraphs packed greedily in file order into passages of <= max_length tokens",
        "tokenizer": "BertTokenizerFast(all-MiniLM-L6-v2)",
        "lengths": stats,
    }
