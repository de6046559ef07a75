"""MPNet's tokenizer: fastbert's C++ WordPiece with RoBERTa's special tokens and pair template, through
``fastbert.AutoTokenizer``, against transformers' ``MPNetTokenizer`` (a ``tokenizers`` WordPiece with
``RobertaProcessing``) on the parity corpus, pair/truncation/overflow calls and ``<mask>``'s lstrip offsets.

The folder is MPNet's layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, BERT's uncased vocabulary, ``<mask>``
last) written by transformers' own ``save_pretrained``; the real all-mpnet-base-v2 folder is compared too when present
(``FASTBERT_MPNET_DIR``). Expected outputs are always computed by transformers in the test.
"""
import os
import random

import pytest
import transformers
from test_tokenizer_parity import CALLS, _corpus_texts, assert_same, hf_call

import fastbert
from fastbert.tokenizers.files import read_vocab_txt

REAL = os.environ.get("FASTBERT_MPNET_DIR", os.path.expanduser("~/.cache/fastbert/all-mpnet-base-v2"))


@pytest.fixture(scope="module")
def folder(minilm_path, tmp_path_factory):
    bert = read_vocab_txt(os.path.join(minilm_path, "vocab.txt"))
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *sorted(bert, key=bert.get), "<mask>"]
    path = tmp_path_factory.mktemp("mpnet-tokenizer")
    transformers.MPNetTokenizer(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=512).save_pretrained(path)
    (path / "config.json").write_text('{"model_type": "mpnet"}')
    return str(path)


@pytest.fixture(scope="module")
def pair(folder):
    return fastbert.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def corpus():
    texts = _corpus_texts(limit_bytes=1_000_000)
    rng = random.Random(3)
    # MPNet's mask token takes the whitespace before it (lstrip): offsets trimmed as RobertaProcessing does
    return texts + [f"{t[:rng.randint(0, 60)]}{rng.choice([' ', '  ', ''])}<mask>{rng.choice(['', ' x'])}"
                    for t in texts[:300]]


def too_small_for_specials(call, pair):
    """fastbert's deliberate ValueError for truncation below the special tokens (2 per text, 4 per MPNet pair)."""
    truncation, max_length = call.get("truncation"), call.get("max_length")
    active = truncation not in (None, False, "do_not_truncate") or (
        max_length is not None and call.get("padding", False) is False and truncation is None)
    added = (4 if pair else 2) if call.get("add_special_tokens", True) else 0
    return active and max_length is not None and max_length < added


def test_loads_as_mpnet(pair):
    fb, hf = pair
    assert isinstance(fb, fastbert.BertTokenizer) and fb.pair_template == "roberta"
    assert fb.model_input_names == list(hf.model_input_names) == ["input_ids", "attention_mask"]
    assert fb.all_special_tokens == hf.all_special_tokens and fb.all_special_ids == hf.all_special_ids
    for name in ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id",
                 "unk_token_id"):
        assert getattr(fb, name) == getattr(hf, name), name
    assert fb.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True) == 4
    assert fb.max_len_sentences_pair == hf.max_len_sentences_pair


def test_corpus_single(pair, corpus):
    fb, hf = pair
    call = dict(return_offsets_mapping=True, return_token_type_ids=True, return_special_tokens_mask=True)
    assert_same(fb(corpus, **call), hf(corpus, **call), keys=(*call_keys(), "special_tokens_mask"))


def call_keys():
    return ("input_ids", "token_type_ids", "attention_mask", "offset_mapping")


@pytest.mark.parametrize("call", CALLS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pair"])
def test_corpus_options(pair, corpus, call, pairs):
    fb, hf = pair
    texts = corpus[:400]
    args = ([t[:300] for t in texts[0:400:2]], [t[:300] for t in texts[1:400:2]]) if pairs else (texts,)
    call = dict(call, return_offsets_mapping=True, return_token_type_ids=True)
    expected, error = hf_call(hf, *args, **call)
    if error is not None or too_small_for_specials(call, pair=pairs):
        with pytest.raises(ValueError):
            fb(*args, **call)
        return
    assert_same(fb(*args, **call), expected)


def test_pair_truncation_and_overflow_rows(pair, corpus):
    """Each truncation strategy on single pairs of every length mix, with overflowing windows and strides,
    including the error cases (where transformers raises or its Rust core panics, fastbert raises ValueError)."""
    fb, hf = pair
    rng = random.Random(1)
    for _ in range(300):
        a, b = rng.choice(corpus)[:300], rng.choice(corpus)[:300]
        call = dict(truncation=rng.choice([True, "only_first", "only_second"]), max_length=rng.randint(0, 40),
                    add_special_tokens=rng.random() < 0.8, return_overflowing_tokens=rng.random() < 0.5,
                    stride=rng.choice([0, 0, 1, 3]), return_offsets_mapping=True)
        try:
            expected, error = hf_call(hf, a, b, **call)
        except BaseException as e:  # tokenizers panics on a stride >= a truncated sequence's length
            assert type(e).__name__ == "PanicException", e
            expected, error = None, e  # fastbert names the stride in a ValueError instead
        if error is not None or too_small_for_specials(call, pair=True):
            with pytest.raises(ValueError):
                fb(a, b, **call)
        else:
            got = fb(a, b, **call)
            assert_same(got, expected)
            if call["return_overflowing_tokens"]:
                assert got["overflow_to_sample_mapping"] == expected["overflow_to_sample_mapping"]


def test_decode_and_save_pretrained(pair, corpus, tmp_path):
    fb, hf = pair
    for text in corpus[:100]:
        ids = hf(text)["input_ids"]
        assert fb.decode(ids) == hf.decode(ids)
        assert fb.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    fb.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(again).__name__ == "MPNetTokenizer"
    assert_same(fastbert.AutoTokenizer.from_pretrained(tmp_path)(corpus[:200], corpus[200:400]),
                again(corpus[:200], corpus[200:400]), keys=("input_ids", "attention_mask"))


@pytest.mark.skipif(not os.path.isdir(REAL), reason=f"no all-mpnet-base-v2 folder at {REAL} (FASTBERT_MPNET_DIR; "
                                                   "tools/get_mpnet.py fetches it)")
def test_real_checkpoint_tokenizer(corpus):
    fb, hf = fastbert.AutoTokenizer.from_pretrained(REAL), transformers.AutoTokenizer.from_pretrained(REAL)
    call = dict(return_offsets_mapping=True, return_token_type_ids=True)
    assert_same(fb(corpus, **call), hf(corpus, **call))
    assert_same(fb(corpus[:300], corpus[300:600], truncation=True, max_length=64, **call),
                hf(corpus[:300], corpus[300:600], truncation=True, max_length=64, **call))
