"""fastbert.BertTokenizer on the inputs of fine-tuning tasks, against transformers' BertTokenizerFast built from the
same vocabulary: pre-tokenized input and word ids (NER), overflowing windows with stride and sequence ids (QA),
pairs with every truncation strategy, padding sides, added tokens with their flags, decoding, the BatchEncoding
mappings, and the edge cases of issue 15. Expected values are always computed by transformers in the test.

Two vocabularies: the bundled all-MiniLM-L6-v2 one (uncased) and a small cased WordPiece trained here with
`tokenizers` on the multilingual corpus."""
import copy
import gettext
import glob
import itertools
import multiprocessing as mp
import os
import pickle
import random
import unicodedata
import warnings

import numpy as np
import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings, strategies as st
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, trainers

from fastbert.tokenizers import BertTokenizer, OutOfRangeError
from fastbert.tokenizers.files import read_vocab_txt

warnings.filterwarnings("ignore", message=".*max_length.*is ignored when.*padding")


# ----------------------------------------------------------------------------------------------- data
def multilingual_corpus(seed: int = 0) -> list[str]:
    """Texts found on this machine: translated messages of the gettext catalogs (dozens of languages and
    scripts), the model card, and synthetic text (combining marks, CJK, emoji, control characters, long words)."""
    import fastbert

    rng = random.Random(seed)
    texts = []
    for mo in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/*.mo"))[:120]:
        try:
            with open(mo, "rb") as f:
                catalog = gettext.GNUTranslations(f)._catalog
        except Exception:
            continue
        texts.extend(v for v in list(catalog.values())[:25] if isinstance(v, str) and v.strip())
    with open(os.path.join(fastbert.default_model_path(), "README.md"), encoding="utf-8") as f:
        texts.extend(p for p in f.read().split("\n\n") if p.strip())
    pieces = ["naïve", "café", "e\u0301\u0316", "\u00e9\u1b44", "中文字", "日本語", "한국어", "Ελληνικά", "русский",
              "עברית", "العربية", "हिन्दी", "😀👍🏽", "[MASK]", "[CLS]", "don't", "U.S.A.", "x" * 120, "\u200b", "\x00",
              "\t", "  ", "ǅ", "İstanbul", "ß", "\ufb01", "\U0001d165", "\u302e", ",", "!?"]
    for _ in range(300):
        texts.append("".join(rng.choice([" ", ""]) + rng.choice(pieces) for _ in range(rng.randint(1, 12))))
    rng.shuffle(texts)
    return [t for t in texts if len(t) < 3000]


@pytest.fixture(scope="module")
def corpus():
    return multilingual_corpus()


@pytest.fixture(scope="module")
def uncased_vocab(minilm_path):
    return read_vocab_txt(os.path.join(minilm_path, "vocab.txt"))


@pytest.fixture(scope="module")
def cased_vocab(corpus):
    """A cased WordPiece vocabulary of 3,000 tokens trained on the corpus."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=3000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    return tok.get_vocab()


def make_pair(vocab, **config):
    hf = transformers.BertTokenizerFast(vocab=dict(vocab), **config)
    hf.model_max_length = 512
    fb = BertTokenizer(vocab=dict(vocab), model_max_length=512, **config)
    return fb, hf


@pytest.fixture(scope="module")
def pairs(uncased_vocab, cased_vocab):
    """(fastbert, transformers) tokenizers: uncased MiniLM vocabulary, and the trained cased vocabulary."""
    return {"uncased": make_pair(uncased_vocab), "cased": make_pair(cased_vocab, do_lower_case=False)}


# ----------------------------------------------------------------------------------------------- comparison
def plain(value):
    """A comparable form of an output value (list, numpy array, object array, torch tensor)."""
    if isinstance(value, torch.Tensor):
        return ("pt", str(value.dtype), tuple(value.shape), value.tolist())
    if isinstance(value, np.ndarray):
        items = [plain(v) for v in value] if value.dtype == object else value.tolist()
        return ("np", value.dtype.str, value.shape, items)
    return value


def call_both(fb, hf, *args, **kwargs):
    """Runs both tokenizers; returns (fastbert output or exception, transformers output or exception).
    pad_to_multiple_of=0 means no multiple for both (transformers' Rust side; its Python side divides by it
    when truncation and padding are both on), so transformers gets None there."""
    out = []
    for tok in (fb, hf):
        if tok is hf and kwargs.get("pad_to_multiple_of") == 0:
            kwargs = dict(kwargs, pad_to_multiple_of=None)
        try:
            out.append(tok(*args, **kwargs))
        except BaseException as e:  # tokenizers raises bare Exceptions and PanicExceptions
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            out.append(e)
    return out


def deliberate_error(kwargs, pair: bool) -> bool:
    """fastbert raises where transformers is not well-defined: truncation to a max_length below the special
    tokens (transformers' limit wraps around and truncation is silently off)."""
    truncation, max_length = kwargs.get("truncation"), kwargs.get("max_length")
    active = truncation not in (None, False, "do_not_truncate") or (
        max_length is not None and kwargs.get("padding", False) is False and truncation is None)
    added = (3 if pair else 2) if kwargs.get("add_special_tokens", True) else 0
    return active and max_length is not None and max_length < added


def assert_same_mappings(got, want, check_tokens=True, rng=None):
    """Per row: word_ids, sequence_ids, tokens and the token/word/char mappings of BatchEncoding."""
    rng = rng or random.Random(0)
    assert len(got.encodings) == len(want.encodings)
    assert got.n_sequences == want.n_sequences
    for i, e in enumerate(want.encodings):
        assert got.word_ids(i) == want.word_ids(i), f"word_ids of row {i}"
        assert got.sequence_ids(i) == want.sequence_ids(i), f"sequence_ids of row {i}"
        if check_tokens:
            assert got.tokens(i) == want.tokens(i), f"tokens of row {i}"
        n = len(e.ids)
        for t in sorted(rng.sample(range(n + 2), min(n + 2, 12))):
            assert got.token_to_word(i, t) == want.token_to_word(i, t), (i, t)
            assert got.token_to_sequence(i, t) == want.token_to_sequence(i, t), (i, t)
            assert got.token_to_chars(i, t) == want.token_to_chars(i, t), (i, t)
        words = [w for w in e.word_ids if w is not None]
        for w in sorted(set(rng.sample(range(max(words, default=0) + 3), min(max(words, default=0) + 3, 6)))):
            for s in (0, 1, 2):
                assert got.word_to_tokens(i, w, s) == want.word_to_tokens(i, w, s), (i, w, s)
                try:
                    expected = want.word_to_chars(i, w, s)
                except TypeError:  # transformers unpacks None: a word without tokens
                    expected = None
                assert got.word_to_chars(i, w, s) == expected, (i, w, s)
        ends = [end for _, end in e.offsets]
        for c in sorted(set(rng.sample(range(max(ends, default=0) + 2), min(max(ends, default=0) + 2, 8)))):
            for s in (0, 1):
                assert got.char_to_token(i, c, s) == want.char_to_token(i, c, s), (i, c, s)
                assert got.char_to_word(i, c, s) == want.char_to_word(i, c, s), (i, c, s)


def assert_same(got, want, args, kwargs, pair: bool, check_tokens=True):
    """Outputs (keys, values, types, shapes) and mappings equal, or both raise (fastbert a ValueError/TypeError),
    or fastbert raises its deliberate ValueError."""
    if isinstance(want, BaseException) or deliberate_error(kwargs, pair):
        assert isinstance(got, (ValueError, TypeError)), (
            f"transformers raised {want!r} or the call is a deliberate error, fastbert returned {got!r}")
        return
    assert not isinstance(got, BaseException), f"fastbert raised {got!r}; transformers did not ({args}, {kwargs})"
    assert list(got) == list(want), "keys"
    for key in want:
        assert plain(got[key]) == plain(want[key]), f"{key} differs for {args!r} {kwargs!r}"
    assert_same_mappings(got, want, check_tokens)


# ----------------------------------------------------------------------------------------------- random options
_pieces = st.sampled_from(["hello", "World", "naïve", "CAFÉ", "e\u0301", "中文", "[MASK]", "[CLS]", "don't", ",", "!",
                           "x" * 40, "", " ", "\t", "İ", "ß", "\u00e9\u1b44", "😀", "##ing", "a"])
_texts = st.one_of(
    st.lists(_pieces, max_size=10).map(" ".join),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=25))
_words = st.lists(st.one_of(_pieces, st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=6)),
                  max_size=8)


@st.composite
def task_calls(draw):
    """An input (single or batch, text or pre-tokenized, single or pair) and a random set of call options."""
    split = draw(st.booleans())
    item = _words if split else _texts
    pair = draw(st.booleans())
    if draw(st.booleans()):
        n = draw(st.integers(1, 4))
        args = (draw(st.lists(item, min_size=n, max_size=n)),)
        if pair:
            args += (draw(st.lists(item, min_size=n, max_size=n)),)
    else:
        args = (draw(item),) + ((draw(item),) if pair else ())
    kwargs = dict(
        is_split_into_words=split,
        add_special_tokens=draw(st.sampled_from([True, True, False])),
        truncation=draw(st.sampled_from([None, False, True, "longest_first", "only_first", "only_second"])),
        max_length=draw(st.one_of(st.none(), st.integers(0, 24))),
        stride=draw(st.sampled_from([0, 0, 1, 2, 4])),
        padding=draw(st.sampled_from([False, True, "longest", "max_length"])),
        pad_to_multiple_of=draw(st.sampled_from([None, None, 0, 4, 8])),
        padding_side=draw(st.sampled_from([None, "left", "right"])),
        return_overflowing_tokens=draw(st.booleans()),
        return_offsets_mapping=draw(st.booleans()),
        return_special_tokens_mask=draw(st.booleans()),
        return_length=draw(st.booleans()),
        return_token_type_ids=draw(st.sampled_from([None, None, False])),
        return_attention_mask=draw(st.sampled_from([None, None, False])),
        return_tensors=draw(st.sampled_from([None, None, "np", "pt"])),
    )
    sides = (draw(st.sampled_from(["right", "left"])), draw(st.sampled_from(["right", "left"])))
    return args, kwargs, len(args) == 2, sides


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(call=task_calls(), config=st.sampled_from(["uncased", "cased"]))
def test_random_options_match_transformers(pairs, call, config):
    """Every option combination: outputs, overflow mapping, word/sequence ids and mappings as transformers."""
    args, kwargs, pair, (truncation_side, padding_side) = call
    fb, hf = pairs[config]
    fb.truncation_side = hf.truncation_side = truncation_side
    fb.padding_side = hf.padding_side = padding_side
    try:
        got, want = call_both(fb, hf, *args, **kwargs)
        assert_same(got, want, args, kwargs, pair)
    finally:
        fb.truncation_side = hf.truncation_side = fb.padding_side = hf.padding_side = "right"


# ----------------------------------------------------------------------------------------------- corpus runs
@pytest.mark.parametrize("config", ["uncased", "cased"])
def test_corpus_question_answering_windows(pairs, corpus, config, seed):
    """QA-style pairs from the corpus: only_second (and only_first with left padding) truncation with stride and
    overflowing windows, offsets, special tokens mask, length; every window's mappings."""
    fb, hf = pairs[config]
    rng = random.Random(seed)
    questions = [rng.choice(corpus)[:80] for _ in range(120)]
    contexts = [rng.choice(corpus) for _ in range(120)]
    for max_length, stride in ((64, 16), (40, 8), (24, 0)):
        kwargs = dict(truncation="only_second", max_length=max_length, stride=stride, return_overflowing_tokens=True,
                      return_offsets_mapping=True, return_special_tokens_mask=True, return_length=True,
                      padding="max_length")
        got, want = call_both(fb, hf, questions, contexts, **kwargs)
        assert_same(got, want, ("questions", "contexts"), kwargs, pair=True)
        kwargs.update(truncation="only_first", padding_side="left", padding=True, return_tensors="np")
        got, want = call_both(fb, hf, contexts, questions, **kwargs)
        assert_same(got, want, ("contexts", "questions"), kwargs, pair=True)


@pytest.mark.parametrize("config", ["uncased", "cased"])
def test_corpus_pretokenized_words(pairs, corpus, config, seed):
    """NER-style input: texts split on whitespace into words (words with inner punctuation, marks, CJK, empty
    words), single and paired, truncated with overflow, padded left and right."""
    fb, hf = pairs[config]
    rng = random.Random(seed)
    docs = [rng.choice(corpus).split(" ") for _ in range(200)]
    for kwargs in (dict(), dict(truncation=True, max_length=32, stride=4, return_overflowing_tokens=True,
                                 padding=True, return_offsets_mapping=True),
                   dict(truncation=True, max_length=16, padding="max_length", padding_side="left",
                        return_tensors="pt", return_special_tokens_mask=True)):
        got, want = call_both(fb, hf, docs, is_split_into_words=True, **kwargs)
        assert_same(got, want, ("docs",), kwargs, pair=False)
        got, want = call_both(fb, hf, docs[:100], docs[100:], is_split_into_words=True, **kwargs)
        assert_same(got, want, ("docs", "docs"), kwargs, pair=True)


def test_truncation_side_left_with_overflow(pairs, corpus):
    fb, hf = pairs["uncased"]
    texts = corpus[:150]
    try:
        fb.truncation_side = hf.truncation_side = "left"
        for kwargs in (dict(truncation=True, max_length=20, stride=5, return_overflowing_tokens=True),
                       dict(truncation="only_second", max_length=30, stride=3, return_overflowing_tokens=True,
                            return_offsets_mapping=True)):
            got, want = call_both(fb, hf, texts[:75], texts[75:], **kwargs)
            assert_same(got, want, ("texts", "texts"), kwargs, pair=True)
    finally:
        fb.truncation_side = hf.truncation_side = "right"


def test_threads_agree_on_overflow_and_words(pairs, corpus):
    fb, _ = pairs["uncased"]
    docs = [t.split(" ") for t in corpus[:600]]
    kwargs = dict(is_split_into_words=True, truncation=True, max_length=24, stride=6, return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding=True, return_tensors="np")
    serial = fb(docs, num_threads=1, **kwargs)
    parallel = fb(docs, num_threads=3, **kwargs)
    for key in serial:
        assert np.array_equal(serial[key], parallel[key]), key
    assert [serial.word_ids(i) for i in range(0, len(serial.encodings), 7)] == \
        [parallel.word_ids(i) for i in range(0, len(parallel.encodings), 7)]


# ----------------------------------------------------------------------------------------------- recipes
def align_labels(tokenizer, words, labels, label_all_tokens, max_length):
    """The label alignment of transformers' token-classification example (run_ner.py): the first token of a word
    gets its label, the other tokens of the word the label or -100, special tokens -100."""
    enc = tokenizer(words, truncation=True, max_length=max_length, is_split_into_words=True, padding=False)
    all_labels = []
    for i, word_labels in enumerate(labels):
        previous, row = None, []
        for word in enc.word_ids(batch_index=i):
            if word is None:
                row.append(-100)
            elif word != previous:
                row.append(word_labels[word])
            else:
                row.append(word_labels[word] if label_all_tokens else -100)
            previous = word
        all_labels.append(row)
    enc["labels"] = all_labels
    return enc


@pytest.mark.parametrize("config", ["uncased", "cased"])
def test_ner_label_alignment_recipe(pairs, corpus, config, seed):
    """The token-classification recipe gives identical features with both tokenizers, and
    DataCollatorForTokenClassification pads them identically."""
    fb, hf = pairs[config]
    rng = random.Random(seed)
    words = [[w for w in rng.choice(corpus).split() if w][:40] or ["empty"] for _ in range(150)]
    labels = [[rng.randrange(9) for _ in w] for w in words]
    for label_all_tokens in (False, True):
        got = align_labels(fb, words, labels, label_all_tokens, max_length=48)
        want = align_labels(hf, words, labels, label_all_tokens, max_length=48)
        assert dict(got) == dict(want)
    features = [{k: got[k][i] for k in got} for i in range(16)]
    got_batch = transformers.DataCollatorForTokenClassification(fb, pad_to_multiple_of=8)(copy.deepcopy(features))
    want_batch = transformers.DataCollatorForTokenClassification(hf, pad_to_multiple_of=8)(copy.deepcopy(features))
    assert {k: plain(v) for k, v in got_batch.items()} == {k: plain(v) for k, v in want_batch.items()}


def qa_train_features(tokenizer, questions, contexts, answers, max_length, stride, pad_to_max_length):
    """The training features of transformers' question-answering example (run_qa.py prepare_train_features):
    windows of the context with stride, and the answer's start/end token in each window (the [CLS] index when
    the window does not contain the answer)."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions if pad_on_right else contexts, contexts if pad_on_right else questions,
                    truncation="only_second" if pad_on_right else "only_first", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length" if pad_to_max_length else False)
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    offset_mapping = enc.pop("offset_mapping")
    context_id = 1 if pad_on_right else 0
    starts, ends = [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = enc["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = enc.sequence_ids(i)
        start_char, text = answers[sample_mapping[i]]
        end_char = start_char + len(text)
        first = 0
        while sequence_ids[first] != context_id:
            first += 1
        last = len(input_ids) - 1
        while sequence_ids[last] != context_id:
            last -= 1
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(cls_index)
            ends.append(cls_index)
            continue
        while first < len(offsets) and offsets[first][0] <= start_char:
            first += 1
        starts.append(first - 1)
        while offsets[last][1] >= end_char:
            last -= 1
        ends.append(last + 1)
    enc["start_positions"], enc["end_positions"] = starts, ends
    return enc


def qa_validation_features(tokenizer, questions, contexts, ids, max_length, stride):
    """transformers' prepare_validation_features: windows, their example id, offsets kept for the context only."""
    pad_on_right = tokenizer.padding_side == "right"
    enc = tokenizer(questions if pad_on_right else contexts, contexts if pad_on_right else questions,
                    truncation="only_second" if pad_on_right else "only_first", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    sample_mapping = enc.pop("overflow_to_sample_mapping")
    context_id = 1 if pad_on_right else 0
    enc["example_id"] = []
    for i in range(len(enc["input_ids"])):
        sequence_ids = enc.sequence_ids(i)
        enc["example_id"].append(ids[sample_mapping[i]])
        enc["offset_mapping"][i] = [o if sequence_ids[k] == context_id else None
                                    for k, o in enumerate(enc["offset_mapping"][i])]
    return enc


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("config", ["uncased", "cased"])
def test_qa_preprocessing_recipe(pairs, corpus, config, padding_side, seed):
    """The question-answering preprocessing (train and validation features) gives identical features."""
    fb, hf = pairs[config]
    rng = random.Random(seed)
    contexts = [c for c in rng.sample(corpus, 200) if len(c.strip()) > 20][:100]
    questions = [" " + rng.choice(corpus)[:24] + "?" for _ in contexts]
    answers = []
    for c in contexts:
        start = rng.randrange(len(c) - 5)
        answers.append((start, c[start:start + rng.randint(1, 15)]))
    try:
        fb.padding_side = hf.padding_side = padding_side
        for max_length, stride in ((48, 12), (96, 32)):
            for pad in (False, True):
                got = qa_train_features(fb, questions, contexts, answers, max_length, stride, pad)
                want = qa_train_features(hf, questions, contexts, answers, max_length, stride, pad)
                assert dict(got) == dict(want)
            got = qa_validation_features(fb, questions, contexts, list(range(len(contexts))), max_length, stride)
            want = qa_validation_features(hf, questions, contexts, list(range(len(contexts))), max_length, stride)
            assert dict(got) == dict(want)
        assert len(got["input_ids"]) > len(contexts)  # some contexts did need several windows
    finally:
        fb.padding_side = hf.padding_side = "right"


def test_data_collator_with_padding(pairs, corpus):
    fb, hf = pairs["uncased"]
    features = [dict(fb(t, truncation=True, max_length=40), label=i) for i, t in enumerate(corpus[:24])]
    for kwargs in (dict(), dict(pad_to_multiple_of=16), dict(padding="max_length", max_length=48)):
        got = transformers.DataCollatorWithPadding(fb, **kwargs)(copy.deepcopy(features))
        want = transformers.DataCollatorWithPadding(hf, **kwargs)(copy.deepcopy(features))
        assert {k: plain(v) for k, v in got.items()} == {k: plain(v) for k, v in want.items()}
    rows = {k: [f[k] for f in features] for k in ("input_ids", "attention_mask")}
    for kwargs in (dict(padding_side="left", return_tensors="np"), dict(padding="max_length", max_length=64)):
        assert {k: plain(v) for k, v in fb.pad(copy.deepcopy(rows), **kwargs).items()} == \
            {k: plain(v) for k, v in hf.pad(copy.deepcopy(rows), **kwargs).items()}


# ----------------------------------------------------------------------------------------------- added tokens
def added_tokens():
    """Fresh AddedTokens (transformers' add_tokens(..., special_tokens=True) changes them in place)."""
    return [AddedToken("<ent>", rstrip=True), AddedToken("[X]", lstrip=True, rstrip=True, normalized=False),
            AddedToken("Naïve", single_word=True), AddedToken("the", single_word=True, normalized=False),
            AddedToken(" sp", lstrip=True, normalized=False), AddedToken("中", normalized=True),
            AddedToken("<b>", special=True, normalized=False), AddedToken("##ing", rstrip=True, special=True)]


ADDED_TEXTS = ["a <ent>   b [X]  c", "  [X][X]  sp", "Naïve naïve NAÏVE xNaïve Naïve.", "the other theme the",
               "<b>bold</b> <B>", "中文 中 x中y", "sing ##ing  ##ingx", "the<ent>  sp  [X]", "", "<ent>"]


@pytest.mark.parametrize("config", ["uncased", "cased"])
@pytest.mark.parametrize("special", [False, True])
def test_added_token_flags(pairs, config, special):
    """single_word, lstrip, rstrip, normalized, special as tokenizers applies them (matching, offsets, word ids,
    decoding with and without special tokens), with split_special_tokens on and off."""
    fb0, hf0 = pairs[config]
    fb, hf = copy.deepcopy(fb0), copy.deepcopy(hf0)
    assert fb.add_tokens(added_tokens(), special_tokens=special) == hf.add_tokens(added_tokens(), special_tokens=special)
    assert fb.get_vocab() == hf.get_vocab()
    assert fb.get_added_vocab() == hf.get_added_vocab()
    for split in (False, True):
        kwargs = dict(return_offsets_mapping=True, split_special_tokens=split)
        got, want = call_both(fb, hf, ADDED_TEXTS, **kwargs)
        # tokens() shows an added token's content, transformers the matched text (see the README)
        assert_same(got, want, ("ADDED_TEXTS",), kwargs, pair=False, check_tokens=False)
        for ids in want["input_ids"]:
            for skip, clean in itertools.product((False, True), (None, True)):
                assert fb.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == \
                    hf.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
            assert fb.convert_ids_to_tokens(ids, skip_special_tokens=True) == \
                hf.convert_ids_to_tokens(ids, skip_special_tokens=True)


def test_added_token_flags_load_from_checkpoint(pairs, tmp_path):
    """Flags saved by transformers (tokenizer_config.json added_tokens_decoder) are read back."""
    _, hf0 = pairs["cased"]
    hf = copy.deepcopy(hf0)
    hf.add_tokens(added_tokens())
    hf.add_special_tokens({"extra_special_tokens": ["<sys>"]})
    hf.save_pretrained(tmp_path)
    fb = BertTokenizer.from_pretrained(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ADDED_TEXTS + ["<sys> hi"]
    got, want = call_both(fb, hf, texts, return_offsets_mapping=True)
    assert_same(got, want, ("texts",), {}, pair=False, check_tokens=False)
    assert fb.all_special_ids == hf.all_special_ids
    assert fb.decode(want["input_ids"][-1], skip_special_tokens=True) == \
        hf.decode(want["input_ids"][-1], skip_special_tokens=True)


def test_save_pretrained_round_trip(pairs, tmp_path):
    """What fastbert saves, transformers and fastbert load back to the same tokenizer (a Trainer saves the
    tokenizer with its checkpoints)."""
    fb = copy.deepcopy(pairs["cased"][0])
    fb.add_tokens(added_tokens())
    fb.add_special_tokens({"extra_special_tokens": ["<sys>"]})
    fb.padding_side = "left"
    fb.save_pretrained(tmp_path)
    hf, again = transformers.AutoTokenizer.from_pretrained(tmp_path), BertTokenizer.from_pretrained(tmp_path)
    texts = ADDED_TEXTS + ["<sys> hi", "Naïve café 中文"]
    for other in (hf, again):
        got, want = call_both(fb, other, texts, padding=True, return_offsets_mapping=True)
        assert_same(got, want, ("texts",), {}, pair=False, check_tokens=False)
        assert other.padding_side == "left" and other.get_vocab() == fb.get_vocab()
        assert other.all_special_ids == fb.all_special_ids


# ----------------------------------------------------------------------------------------------- decoding
def test_decode_variants(pairs, corpus):
    for fb, hf in pairs.values():
        batch = hf(corpus[:60], truncation=True, max_length=64)["input_ids"]
        for ids in batch[:30] + [[101, 2079, 2025, 1005, 1055, 1012, 102], [], [0, 0], [5, 40000, 7]]:
            for skip, clean in itertools.product((False, True), (None, False, True)):
                assert fb.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean) == \
                    hf.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
            assert fb.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
        assert fb.batch_decode(batch, skip_special_tokens=True) == hf.batch_decode(batch, skip_special_tokens=True)
        assert fb.decode(batch[:3]) == hf.decode(batch[:3])
        padded = hf(corpus[:5], padding=True, return_tensors="pt")["input_ids"]
        assert fb.decode(padded[0]) == hf.decode(padded[0])
        assert fb.batch_decode(padded.numpy()) == hf.batch_decode(padded.numpy())
        assert fb.decode(7) == hf.decode(7)
        assert fb.convert_ids_to_tokens(7) == hf.convert_ids_to_tokens(7)
        assert fb.convert_tokens_to_string(hf.convert_ids_to_tokens(batch[0])) == \
            hf.convert_tokens_to_string(hf.convert_ids_to_tokens(batch[0]))


# ----------------------------------------------------------------------------------------------- issue 15 cases
def test_negative_numbers_are_one_line_errors(pairs):
    fb, hf = pairs["uncased"]
    big = "word " * 1_000_000
    for kwargs in (dict(truncation=True, max_length=-1), dict(padding="max_length", max_length=-5),
                   dict(truncation=True, max_length=8, stride=-1), dict(padding=True, pad_to_multiple_of=-2)):
        with pytest.raises(OverflowError):
            hf("text", **kwargs)
        with pytest.raises(ValueError) as info:
            fb([big, "x"], **kwargs)
        assert isinstance(info.value, OverflowError)
        message = str(info.value)
        assert "\n" not in message and len(message) < 200 and "word word" not in message


@pytest.mark.parametrize("pair", [False, True])
def test_max_length_below_special_tokens(pairs, pair):
    """Below the special tokens transformers silently disables truncation; fastbert raises. At exactly the special
    tokens both keep only them and move every token to the overflowing rows."""
    fb, hf = pairs["uncased"]
    args = ("one two three four", "five six") if pair else ("one two three four",)
    added = 3 if pair else 2
    for max_length in range(added):
        want = hf(*args, truncation=True, max_length=max_length)
        assert len(want["input_ids"]) > max_length  # transformers: not truncated at all
        with pytest.raises(ValueError, match=f"max_length={max_length} is smaller than the {added} special"):
            fb(*args, truncation=True, max_length=max_length)
    kwargs = dict(truncation=True, max_length=added, return_overflowing_tokens=True, return_offsets_mapping=True)
    got, want = call_both(fb, hf, *args, **kwargs)
    assert_same(got, want, args, kwargs, pair)
    assert want["input_ids"][0] == ([101, 102, 102] if pair else [101, 102])
    # without special tokens a limit of 0 is well-defined in transformers: everything overflows
    kwargs = dict(truncation=True, max_length=0, add_special_tokens=False, return_overflowing_tokens=True)
    got, want = call_both(fb, hf, *args, **kwargs)
    assert_same(got, want, args, kwargs, pair)


def test_pad_to_multiple_of_zero_means_none(pairs):
    fb, hf = pairs["uncased"]
    texts = ["a b c d e", "f"]
    for kwargs in (dict(padding=True), dict(padding="max_length", max_length=7)):
        assert dict(fb(texts, pad_to_multiple_of=0, **kwargs)) == dict(hf(texts, pad_to_multiple_of=0, **kwargs))
        assert dict(fb(texts, pad_to_multiple_of=0, **kwargs)) == dict(fb(texts, **kwargs))
    # transformers divides by zero here; 0 still means "no multiple"
    assert dict(fb(texts, padding=True, truncation=True, max_length=4, pad_to_multiple_of=0)) == \
        dict(hf(texts, padding=True, truncation=True, max_length=4))


def test_decode_out_of_range_ids(pairs):
    fb, hf = pairs["uncased"]
    for bad in ([-1], [101, -7], -1):
        with pytest.raises(OverflowError):
            hf.decode(bad)
        with pytest.raises(OutOfRangeError, match="out of range"):
            fb.decode(bad)
    with pytest.raises(OverflowError):
        fb.convert_ids_to_tokens([-1])
    with pytest.raises(ValueError):
        fb.convert_ids_to_tokens(-1)
    for ids in ([40000], [101, 40000, 102], [2**32 - 1]):
        assert fb.decode(ids) == hf.decode(ids)  # unknown ids are skipped
        assert fb.convert_ids_to_tokens(ids) == hf.convert_ids_to_tokens(ids)
    assert fb.convert_ids_to_tokens(40000) is None


@pytest.mark.parametrize("tensors", ["np", "pt"])
def test_empty_text_gives_empty_int64_rows(pairs, tensors):
    fb, hf = pairs["uncased"]
    for args in (("",), (["", ""],)):
        got = fb(*args, add_special_tokens=False, padding=True, return_tensors=tensors)
        want = hf(*args, add_special_tokens=False, padding=True, return_tensors=tensors)
        assert {k: plain(v) for k, v in got.items()} == {k: plain(v) for k, v in want.items()}
        assert tuple(got["input_ids"].shape) == (len(args[0]) if isinstance(args[0], list) else 1, 0)
        assert str(got["input_ids"].dtype) in ("int64", "torch.int64")


def test_empty_pair_member(pairs):
    """A single pair with an empty second text is encoded as one text; in a batch it stays a pair (transformers)."""
    fb, hf = pairs["uncased"]
    for args in (("a", ""), (["a"], [""]), ("", "a"), (["a", "b"], ["", "c"]), (["x"], [[]])):
        kwargs = dict(is_split_into_words=True) if args[1] == [[]] else {}
        got, want = call_both(fb, hf, *args, **kwargs)
        assert_same(got, want, args, kwargs, pair=True)
    assert fb("a", "")["input_ids"] == [101, 1037, 102]
    assert fb(["a"], [""])["input_ids"] == [[101, 1037, 102, 102]]


SPACING_COMBINING = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF
                     and unicodedata.category(chr(c)) == "Mc" and unicodedata.combining(chr(c))]


@pytest.mark.parametrize("config", [{}, {"do_lower_case": False, "strip_accents": True}, {"do_lower_case": False}])
def test_offsets_of_spacing_combining_marks(uncased_vocab, config):
    """The spacing combining marks that NFD reorders (U+1D165.., U+302E/F, U+1B44, ...) after precomposed letters,
    other marks, CJK and punctuation: offsets as transformers."""
    assert len(SPACING_COMBINING) >= 25
    fb, hf = make_pair(uncased_vocab, **config)
    texts = [pre + mark + post for mark in SPACING_COMBINING
             for pre, post in itertools.product(["", "a", "é", "ệ", "\u0301", "e\u0316\u0301", "中", "."],
                                                ["", "b", " ", ".", "\u0301", "\u0334"])]
    got = fb(texts, return_offsets_mapping=True)
    want = hf(texts, return_offsets_mapping=True)
    assert got["input_ids"] == want["input_ids"]
    bad = [t for t, a, b in zip(texts, got["offset_mapping"], want["offset_mapping"]) if a != b]
    assert not bad, f"{len(bad)} texts differ, e.g. {[ascii(t) for t in bad[:5]]}"


# ----------------------------------------------------------------------------------------------- pickling
def _encode_in_child(tok, texts):
    out = tok(texts, is_split_into_words=True, truncation=True, max_length=12, stride=2,
              return_overflowing_tokens=True)
    return out["input_ids"], [out.word_ids(i) for i in range(len(out["input_ids"]))]


class _TokenizingDataset(torch.utils.data.Dataset):
    def __init__(self, tok, docs):
        self.tok, self.docs = tok, docs

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):
        enc = self.tok(self.docs[i], is_split_into_words=True, truncation=True, max_length=16)
        return torch.tensor(enc["input_ids"]), torch.tensor([-1 if w is None else w for w in enc.word_ids()])


def test_pickle_deepcopy_and_spawned_workers(pairs, corpus):
    fb, _ = pairs["cased"]
    fb = copy.deepcopy(fb)
    fb.add_tokens([AddedToken("<ent>", lstrip=True)])
    fb.padding_side = "left"
    docs = [t.split() for t in corpus[:40]]
    expected = _encode_in_child(fb, docs)
    for clone in (pickle.loads(pickle.dumps(fb)), copy.deepcopy(fb)):
        assert _encode_in_child(clone, docs) == expected
        assert clone.padding_side == "left" and clone.get_vocab() == fb.get_vocab()
    enc = fb(docs[:3], is_split_into_words=True, return_offsets_mapping=True)
    for clone in (pickle.loads(pickle.dumps(enc)), copy.deepcopy(enc)):
        assert dict(clone) == dict(enc)
        assert [clone.word_ids(i) for i in range(3)] == [enc.word_ids(i) for i in range(3)]
        assert clone.word_to_tokens(1, 0) == enc.word_to_tokens(1, 0)
    loader = torch.utils.data.DataLoader(_TokenizingDataset(fb, docs[:6]), batch_size=None, num_workers=1,
                                         multiprocessing_context=mp.get_context("spawn"))
    got = [(ids.tolist(), words.tolist()) for ids, words in loader]
    want = [(ids.tolist(), words.tolist()) for ids, words in _TokenizingDataset(fb, docs[:6])]
    assert got == want


# ----------------------------------------------------------------------------------------------- API surface
def test_padding_side_argument_and_attribute(pairs):
    fb, hf = pairs["uncased"]
    texts = ["a b c", "d"]
    assert dict(fb(texts, padding=True, padding_side="left")) == dict(hf(texts, padding=True, padding_side="left"))
    fb.padding_side = "left"
    try:
        assert fb(texts, padding=True)["input_ids"][1] == [0, 0, 101, 1040, 102]
        assert fb(texts, padding=True, padding_side="right")["input_ids"][1] == [101, 1040, 102, 0, 0]
        fb.padding_side = "middle"
        with pytest.raises(ValueError, match="padding_side"):
            fb(texts, padding=True)
    finally:
        fb.padding_side = "right"
    with pytest.raises(ValueError, match="padding_side"):
        fb(texts, padding=True, padding_side="up")
    with pytest.raises(ValueError, match="padding_side"):
        BertTokenizer(vocab={"[UNK]": 0}, padding_side="top")


def test_text_target_and_unknown_arguments(pairs):
    fb, hf = pairs["uncased"]
    got, want = call_both(fb, hf, ["a b", "c"], text_target=["d", "e f"], padding=True)
    assert dict(got) == dict(want)
    assert dict(fb(text_target="x y")) == dict(hf(text_target="x y"))
    with pytest.raises(TypeError, match="paddin"):
        fb("a", paddin=True)
    with pytest.raises(TypeError):
        fb("a", "b", is_split_into_words=True)
    with pytest.raises(ValueError, match="only_second"):
        fb("a b c", truncation="only_second", max_length=3)
