"""fastbert.BertTokenizer: loading, API, bad input, big input, threads and fork. Expected values come from
transformers' BertTokenizerFast computed in the test (see test_tokenizer_parity.py for the large parity runs)."""
import multiprocessing as mp
import os
import threading

import numpy as np
import pytest
import transformers

from fastbert.tokenizers import BertTokenizer


@pytest.fixture(scope="module")
def model_dir(minilm_path):
    return minilm_path


@pytest.fixture(scope="module")
def tok(model_dir):
    return BertTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def hf(model_dir):
    return transformers.BertTokenizerFast.from_pretrained(model_dir)


TEXTS = ["Hello, world!", "naïve café — ΣΑΣ İstanbul 中文", "[CLS] keep [MASK] whole[SEP]", "", "  \t\n ",
         "unaffable tokenization ##x", "x" * 300]


def test_loading_variants_agree(model_dir, tmp_path, hf):
    from_json = BertTokenizer.from_pretrained(model_dir)
    only_vocab = tmp_path / "vocab_only"
    only_vocab.mkdir()
    (only_vocab / "vocab.txt").write_bytes(open(os.path.join(model_dir, "vocab.txt"), "rb").read())
    from_txt = BertTokenizer.from_pretrained(only_vocab)
    from_file = BertTokenizer(os.path.join(model_dir, "vocab.txt"))
    expected = hf(TEXTS)["input_ids"]
    for t in (from_json, from_txt, from_file):
        assert t(TEXTS)["input_ids"] == expected
    assert from_json.model_max_length == hf.model_max_length
    assert from_json.vocab == hf.get_vocab()


def test_special_ids_and_conversions(tok, hf):
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "unk_token_id", "mask_token_id"):
        assert getattr(tok, name) == getattr(hf, name), name
    tokens = hf.tokenize(TEXTS[1])
    assert tok.tokenize(TEXTS[1]) == tokens
    assert tok.convert_tokens_to_ids(tokens) == hf.convert_tokens_to_ids(tokens)
    assert tok.convert_tokens_to_ids("no-such-token") == hf.convert_tokens_to_ids("no-such-token")
    ids = hf(TEXTS[1])["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert tok.encode(TEXTS[2]) == hf.encode(TEXTS[2])
    assert tok.encode(TEXTS[0], TEXTS[1], truncation=True, max_length=6) == hf.encode(TEXTS[0], TEXTS[1],
                                                                                        truncation=True, max_length=6)
    assert tok.decode(ids) == hf.decode(ids)


def test_single_text_shapes(tok, hf):
    for kwargs in ({}, {"return_tensors": "np"}, {"return_offsets_mapping": True}):
        a, b = tok(TEXTS[1], **kwargs), hf(TEXTS[1], **kwargs)
        assert set(a) == set(b)
        for k in b:
            assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
    out = tok(TEXTS, padding=True, return_tensors="pt")
    ref = hf(TEXTS, padding=True, return_tensors="pt")
    for k in ref:
        assert out[k].dtype == ref[k].dtype and bool((out[k] == ref[k]).all()), k
    assert out.input_ids is out["input_ids"]


def test_bad_input(tok):
    with pytest.raises(TypeError):
        tok(None)
    with pytest.raises(TypeError):
        tok(["ok", None])
    with pytest.raises(TypeError):
        tok(["ok", 3])
    with pytest.raises(TypeError):
        tok(b"bytes")
    with pytest.raises(TypeError):
        tok("a", ["b"])
    with pytest.raises(ValueError, match="surrogate"):
        tok("bad \ud800 text")
    with pytest.raises(ValueError, match="surrogate"):
        tok(["fine", "x\udfff"])
    with pytest.raises(ValueError):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError):
        tok("a", padding="sideways")


def test_empty_inputs(tok, hf):
    assert tok("")["input_ids"] == hf("")["input_ids"]
    assert tok([])["input_ids"] == []  # transformers raises IndexError here
    assert tok([], padding=True)["attention_mask"] == []
    out = tok([], return_tensors="np")
    assert out["input_ids"].shape[0] == 0


def test_missing_vocab_and_no_unk(tmp_path):
    with pytest.raises(OSError):
        BertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(OSError):
        BertTokenizer.from_pretrained(tmp_path / "does-not-exist")
    with pytest.raises(OSError):
        BertTokenizer(str(tmp_path / "vocab.txt"))
    (tmp_path / "vocab.txt").write_text("[PAD]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match="unknown token"):
        BertTokenizer.from_pretrained(tmp_path)


def test_truncation_error_is_value_error(tok, hf):
    with pytest.raises(Exception):
        hf("a b c d e f", "g", truncation="only_second", max_length=4)
    with pytest.raises(ValueError):
        tok("a b c d e f", "g", truncation="only_second", max_length=4)
    with pytest.raises(ValueError):
        tok("a b c d e f", truncation="only_second", max_length=4)


def test_large_single_text(tok, hf):
    base = "The quick brown fox jumps over the lazy dog; naïve café 中文. "
    text = base * (8 * 1024 * 1024 // len(base.encode()))
    assert len(text.encode()) > 7_900_000
    out = tok(text, truncation=True, max_length=512, return_tensors="np")
    ref = hf(text, truncation=True, max_length=512, return_tensors="np")
    assert np.array_equal(out["input_ids"], ref["input_ids"])
    full = tok(text, return_tensors="np")["input_ids"]
    assert full.shape[1] > 1_000_000


def test_million_short_texts(tok, hf):
    words = ["hello", "world", "naïve", "tokenizer", "中", "42", "!"]
    texts = [words[i % 7] + " " + words[(i * 3) % 7] for i in range(1_000_000)]
    out = tok(texts, padding=True, return_tensors="np")
    assert out["input_ids"].shape[0] == 1_000_000
    sample = list(range(0, 1_000_000, 9973))
    ref = hf([texts[i] for i in sample], padding="max_length", max_length=out["input_ids"].shape[1],
             return_tensors="np")
    assert np.array_equal(out["input_ids"][sample], ref["input_ids"])


def test_threads_agree_with_serial(tok):
    texts = [f"sentence number {i} with naïve words and 中文 {'x' * (i % 50)}" for i in range(3000)]
    kwargs = dict(padding=True, truncation=True, max_length=64, return_tensors="np", return_offsets_mapping=True)
    serial = tok(texts, num_threads=1, **kwargs)
    for n in (2, 3, 7):
        parallel = tok(texts, num_threads=n, **kwargs)
        for k in serial:
            assert np.array_equal(serial[k], parallel[k])
    results = [None] * 6
    errors = []

    def work(i):
        try:
            results[i] = tok(texts, **kwargs)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for r in results:
        for k in serial:
            assert np.array_equal(serial[k], r[k])


def _child_encode(tok, texts, queue):
    queue.put(tok(texts, padding=True, return_tensors="np")["input_ids"].tolist())


def test_fork_after_batch_call(tok):
    texts = [f"text {i} to encode in a forked child" for i in range(2000)]
    expected = tok(texts, padding=True, return_tensors="np", num_threads=2)["input_ids"].tolist()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_encode, args=(tok, texts, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert got == expected


@pytest.mark.parametrize("old, names", [
    ("fastbert.tokenizer", ["BertTokenizer", "BatchEncoding", "Encoding", "InputTypeError", "OutOfRangeError",
                            "tokenizer_options"]),
    ("fastbert.auto_tokenizer", ["AutoTokenizer", "TokenizersTokenizer", "with_lowercase"]),
])
def test_old_import_paths_warn_and_still_work(old, names, monkeypatch):
    """The pre-0.2 module paths are shims for one release: importing one warns, at the importing line, and gives
    the same objects as ``fastbert.tokenizers``."""
    import sys

    import fastbert.tokenizers

    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated .* import from fastbert.tokenizers") as record:
        __import__(old)
    assert [w.filename for w in record] == [__file__]
    module = sys.modules[old]
    for name in names:
        assert getattr(module, name) is getattr(fastbert.tokenizers, name), name
