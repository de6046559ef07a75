"""pytest-benchmark versions of the tokenizer benchmark (``pytest benchmarks --benchmark-only``).

One batch of 1,024 English paragraphs, truncation to 128, padding, numpy output, for fastbert, transformers'
BertTokenizerFast and raw ``tokenizers``; ``extra_info`` holds the input bytes and real tokens per call
(MB/s = bytes / time). The fine-tuning paths (NER: pre-tokenized words and word_ids; QA: overflowing windows with
stride, offsets and sequence_ids) for fastbert and transformers, with the plain call each extends. The full grid
(single core vs all cores, multilingual, memory, ratios) is ``python -m benchmarks.bench_tokenizer``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.bench_tokenizer import BATCH, MAX_LENGTH, TASK_PATHS, _task_calls, english_texts


@pytest.fixture(scope="module")
def texts():
    return english_texts(BATCH)


@pytest.fixture(scope="module")
def model_dir():
    import fastbert
    try:
        return fastbert.default_model_path()
    except OSError as e:
        pytest.skip(str(e))


def _encoder(name, model_dir):
    if name == "fastbert":
        import fastbert.tokenizers
        tok = fastbert.tokenizers.BertTokenizer.from_pretrained(model_dir)
        return lambda b: tok(b, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")["attention_mask"]
    if name == "transformers":
        transformers = pytest.importorskip("transformers")
        tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
        return lambda b: tok(b, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="np")["attention_mask"]
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.enable_truncation(MAX_LENGTH)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return lambda b: np.array([e.attention_mask for e in tok.encode_batch(b)])


@pytest.mark.parametrize("name", ["fastbert", "transformers", "tokenizers"])
def test_tokenizer_batch(benchmark, texts, model_dir, name):
    encode = _encoder(name, model_dir)
    mask = encode(texts)
    benchmark.extra_info.update(tokenizer=name, batch=BATCH, max_length=MAX_LENGTH,
                                bytes=sum(len(t.encode()) for t in texts), real_tokens=int(mask.sum()))
    benchmark(encode, texts)


@pytest.mark.parametrize("path", TASK_PATHS)
@pytest.mark.parametrize("name", ["fastbert", "transformers"])
def test_tokenizer_task_path(benchmark, texts, model_dir, name, path):
    if name == "fastbert":
        import fastbert.tokenizers
        tok = fastbert.tokenizers.BertTokenizer.from_pretrained(model_dir)
    else:
        transformers = pytest.importorskip("transformers")
        tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
    baseline, call = _task_calls(tok, texts)[path]
    enc = call()
    benchmark.extra_info.update(tokenizer=name, path=path, extends=baseline, batch=BATCH, max_length=MAX_LENGTH,
                                rows=len(enc["input_ids"]))
    benchmark(call)
