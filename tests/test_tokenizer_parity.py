"""Parity of fastbert.BertTokenizer with transformers' BertTokenizerFast: every code point, a large mixed corpus,
and random strings (hypothesis). Expected outputs are always computed by Hugging Face in the test."""
import glob
import gettext
import os
import random
import sys
import unicodedata

import numpy as np
import pytest

import transformers
from hypothesis import given, settings, strategies as st

from fastbert.tokenizers import BertTokenizer
from fastbert.tokenizers.files import read_vocab_txt

CONFIGS = {
    "uncased": {},
    "cased": {"do_lower_case": False},
    "lower_keep_accents": {"strip_accents": False},
    "cased_strip_no_cjk": {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False},
}


@pytest.fixture(scope="module")
def model_dir(minilm_path):
    return minilm_path


@pytest.fixture(scope="module")
def vocab(model_dir):
    return read_vocab_txt(os.path.join(model_dir, "vocab.txt"))


def make_pair(vocab, config):
    hf = transformers.BertTokenizerFast(vocab=dict(vocab), **config)
    hf.model_max_length = 512
    fb = BertTokenizer(vocab=dict(vocab), model_max_length=512, **config)
    return fb, hf


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


# ----------------------------------------------------------------------------------------------- every code point
@pytest.mark.parametrize("config", ["uncased", "cased", "lower_keep_accents"])
def test_every_code_point(vocab, config):
    """'a' + c + 'b' for every code point c but surrogates; 64 such words per text, separated by spaces."""
    fb, hf = make_pair(vocab, CONFIGS[config])
    backend = hf.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    groups = [cps[i:i + 64] for i in range(0, len(cps), 64)]
    texts = [" ".join("a" + chr(c) + "b" for c in g) for g in groups]
    expected = backend.encode_batch(texts, add_special_tokens=True)
    got = fb(texts, return_offsets_mapping=True)
    bad = []
    for group, text, enc, ids, offs in zip(groups, texts, expected, got["input_ids"], got["offset_mapping"]):
        if ids != enc.ids or offs != enc.offsets:
            for c in group:  # locate the code points
                e = backend.encode("a" + chr(c) + "b")
                r = fb("a" + chr(c) + "b", return_offsets_mapping=True)
                if r["input_ids"] != e.ids or r["offset_mapping"] != e.offsets:
                    bad.append((f"U+{c:04X}", r["input_ids"], e.ids))
    assert not bad, f"{len(bad)} code points differ, first: {bad[:10]}"


# ----------------------------------------------------------------------------------------------- corpus
def _corpus_texts(limit_bytes=3_000_000, seed=0):
    """Text found on this machine: Python sources and docs, translations (.mo catalogs, many languages),
    /usr/share/doc, the model README; plus synthetic text in many scripts, control characters, URLs, emoji
    and very long words. Split into paragraphs and lines of varied length."""
    rng = random.Random(seed)
    texts = []
    site = os.path.dirname(os.path.dirname(np.__file__))
    files = sorted(glob.glob(os.path.join(site, "*", "*.py")))[:400] + sorted(
        glob.glob(os.path.join(site, "**", "*.md"), recursive=True))[:100] + sorted(
        glob.glob("/usr/share/doc/*/*.txt"))[:50]
    rng.shuffle(files)
    size = 0
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                data = f.read(40_000)
        except OSError:
            continue
        for para in data.split("\n\n"):
            texts.append(para)
            size += len(para)
        if size > limit_bytes // 2:
            break
    for mo in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo"))[:300]:
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        texts.extend(v for v in list(catalog.values())[:40] if isinstance(v, str))
    # Synthetic: words drawn from many scripts (letters, marks, digits, punctuation), control and format chars.
    pools = {}
    for c in range(0x20, 0x30000):
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat[0] in "LMNPSZ" or cat in ("Cc", "Cf", "Co"):
            pools.setdefault(unicodedata.name(ch, "?").split(" ")[0], []).append(ch)
    scripts = sorted(pools)
    for _ in range(3000):
        pool = pools[rng.choice(scripts)]
        words = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 30))]
        texts.append(rng.choice([" ", "  ", "\t", "\n", " , "]).join(words))
    texts += [
        "https://example.com/path?q=naïve&x=1#frag émoji 😀👍🏽 🇫🇷 ZWJ 👨‍👩‍👧",
        "x" * 99, "y" * 100, "z" * 101, "é" * 120, "ab" * 5000, "\x00\x01\x7f\u200b\ufeff\ufffd text",
        "[CLS] [SEP][MASK]x[PAD][UNK] [cls] [MASK", "Ⅻ ǅ ß ﬁ İ ΣΑΣ Ǆ ẞ", "中文字符和日本語のテキスト 한국어 텍스트",
        "", " ", "\n\n", "def f(x):\n\treturn x ** 2  # comment", "a\u0301\u0316 e\u0308\u0323",
    ]
    return [t for t in texts if len(t) < 20_000]


@pytest.fixture(scope="module")
def corpus():
    return _corpus_texts()


def hf_call(hf, *args, **kwargs):
    try:
        return hf(*args, **kwargs), None
    except Exception as e:  # tokenizers raises a bare Exception for truncation errors
        return None, e


def too_small_for_specials(call, pair):
    """fastbert's deliberate ValueError: truncation to a max_length below the special tokens (transformers' limit
    wraps around and truncation is silently off)."""
    truncation, max_length = call.get("truncation"), call.get("max_length")
    active = truncation not in (None, False, "do_not_truncate") or (
        max_length is not None and call.get("padding", False) is False and truncation is None)
    added = (3 if pair else 2) if call.get("add_special_tokens", True) else 0
    return active and max_length is not None and max_length < added


def assert_same(fb_out, hf_out, keys=("input_ids", "token_type_ids", "attention_mask", "offset_mapping")):
    for key in keys:
        if key not in hf_out:
            assert key not in fb_out
            continue
        a, b = fb_out[key], hf_out[key]
        if isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, key
            diff = np.argwhere(a != b)
            assert diff.size == 0, f"{key} differs first at {diff[0]}"
        else:
            a = [list(map(tuple, r)) if key == "offset_mapping" else r for r in a] if a and isinstance(a[0], list) else a
            b = [list(map(tuple, r)) if key == "offset_mapping" else r for r in b] if b and isinstance(b[0], list) else b
            i = first_difference(a, b)
            assert i is None, f"{key} differs at row {i}: {a[i] if i < len(a) else None} != {b[i] if i < len(b) else None}"


@pytest.mark.parametrize("config", ["uncased", "cased", "lower_keep_accents", "cased_strip_no_cjk"])
def test_corpus_single(vocab, corpus, config):
    fb, hf = make_pair(vocab, CONFIGS[config])
    assert_same(fb(corpus, return_offsets_mapping=True), hf(corpus, return_offsets_mapping=True))


CALLS = [
    dict(),
    dict(padding=True, return_tensors="np"),
    dict(truncation=True, max_length=7),
    dict(truncation="longest_first", max_length=16, padding="max_length", return_tensors="np"),
    dict(truncation="only_first", max_length=32, padding=True),
    dict(truncation="only_second", max_length=32),
    dict(truncation=True, padding=True, pad_to_multiple_of=8, return_tensors="np"),
    dict(padding="max_length", max_length=24, truncation=True, pad_to_multiple_of=8),
    dict(truncation=True, max_length=3),
    dict(max_length=9),
    dict(padding=True, max_length=5),
    dict(truncation=True),
    dict(add_special_tokens=False, truncation=True, max_length=6, padding=True),
    dict(return_attention_mask=False, return_token_type_ids=False, padding=True),
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pair"])
def test_corpus_options(vocab, corpus, call, pairs):
    fb, hf = make_pair(vocab, CONFIGS["uncased"])
    texts = corpus[:600]
    # transformers builds every combination of the two texts' overflowing windows even when they are not returned,
    # which is slow for long pairs cut to a few tokens: 200 pairs of the first 300 characters of texts
    args = ([t[:300] for t in texts[0:400:2]], [t[:300] for t in texts[1:400:2]]) if pairs else (texts,)
    expected, error = hf_call(hf, *args, return_offsets_mapping=True, **call)
    if error is not None or too_small_for_specials(call, pair=pairs):
        with pytest.raises(ValueError):
            fb(*args, return_offsets_mapping=True, **call)
        return
    assert_same(fb(*args, return_offsets_mapping=True, **call), expected)


def test_corpus_pair_truncation_rows(vocab, corpus):
    """Each truncation strategy on single pairs of every length mix, including the error cases."""
    fb, hf = make_pair(vocab, CONFIGS["uncased"])
    rng = random.Random(1)
    for _ in range(300):
        a, b = rng.choice(corpus)[:300], rng.choice(corpus)[:300]
        call = dict(truncation=rng.choice([True, "only_first", "only_second"]), max_length=rng.randint(0, 40),
                    add_special_tokens=rng.random() < 0.8)
        expected, error = hf_call(hf, a, b, return_offsets_mapping=True, **call)
        if error is not None or too_small_for_specials(call, pair=True):
            with pytest.raises(ValueError):
                fb(a, b, return_offsets_mapping=True, **call)
        else:
            assert_same(fb(a, b, return_offsets_mapping=True, **call), expected)


# ----------------------------------------------------------------------------------------------- random strings
_SPECIAL = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "##", "[", "]", " ", "\t", "\n", "\u00a0", "\u3000",
            "é", "e\u0301", "\u0301", "中", "文", "ß", "İ", "Σ", "ﬁ", "😀", "\x00", "\u200b", "\ufffd", "a" * 101]
_texts = st.lists(st.one_of(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12),
                            st.text(alphabet="abcdefghij .,!'#", max_size=12), st.sampled_from(_SPECIAL)),
                  max_size=12).map("".join)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=_texts, config=st.sampled_from(sorted(CONFIGS)))
def test_random_text(vocab, text, config):
    fb, hf = _cached_pair(vocab, config)
    assert_same(fb(text, return_offsets_mapping=True), hf(text, return_offsets_mapping=True))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(batch=st.lists(st.tuples(_texts, _texts), min_size=1, max_size=6),
       truncation=st.sampled_from([None, False, True, "longest_first", "only_first", "only_second"]),
       max_length=st.one_of(st.none(), st.integers(0, 24)),
       padding=st.sampled_from([False, True, "longest", "max_length"]),
       pad_to_multiple_of=st.sampled_from([None, 1, 4, 8]), tensors=st.sampled_from([None, "np"]),
       special=st.booleans())
def test_random_pairs(vocab, batch, truncation, max_length, padding, pad_to_multiple_of, tensors, special):
    fb, hf = _cached_pair(vocab, "uncased")
    a, b = [x for x, _ in batch], [y for _, y in batch]
    call = dict(truncation=truncation, max_length=max_length, padding=padding, pad_to_multiple_of=pad_to_multiple_of,
                return_tensors=tensors, add_special_tokens=special, return_offsets_mapping=True)
    expected, error = hf_call(hf, a, b, **call)
    if error is not None or too_small_for_specials(call, pair=True):
        with pytest.raises((ValueError, TypeError)):
            fb(a, b, **call)
        return
    got = fb(a, b, **call)
    if tensors == "np" and expected["input_ids"].dtype == object:
        for key in expected:
            assert [list(np.asarray(r).ravel()) for r in got[key]] == [list(np.asarray(r).ravel()) for r in expected[key]]
        return
    assert_same(got, expected)


_PAIRS = {}


def _cached_pair(vocab, config):
    if config not in _PAIRS:
        _PAIRS[config] = make_pair(vocab, CONFIGS[config])
    return _PAIRS[config]


def test_decode_matches(vocab, corpus):
    fb, hf = make_pair(vocab, CONFIGS["uncased"])
    for text in corpus[:200] + ["don't it's [SEP] a , b . c ? d ! ##x"]:
        ids = hf(text[:500])["input_ids"]
        for skip in (False, True):
            assert fb.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
    assert fb.tokenize(corpus[5]) == hf.tokenize(corpus[5])
