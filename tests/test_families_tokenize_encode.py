"""Tokenizers and sentence embeddings of the BERT family against transformers / sentence-transformers.

Per family a folder is built offline: a tiny tokenizer trained with the ``tokenizers`` trainers (WordPiece for
DistilBERT/ELECTRA, byte-level BPE with RoBERTa's post-processor, Unigram with SentencePiece-style Metaspace for
XLM-R/ALBERT) on real English prose plus multilingual strings, wrapped as transformers' fast tokenizer of the
family and saved with a random-weight model (hidden 96, 6 heads; ALBERT/ELECTRA embeddings of 48).

- ``fastbert.AutoTokenizer`` == ``transformers.AutoTokenizer`` on that corpus: singles and pairs, option sets,
  left and right padding, word_ids / offsets / token mappings.
- ``fastbert.SentenceEncoder`` == ``SentenceTransformer`` in float32 on sentence-transformers folders of every
  family (mean / cls / mean+max pooling, Normalize, do_lower_case), texts longer than max_seq_length included.
- Clear errors: unknown model_type or tokenizer class, a SentencePiece-only folder.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

import fastbert
from fastbert.tokenizers import TokenizersTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MULTILINGUAL = [
    "", " ", "東京は日本の首都です。北京欢迎你！", "한국어 문장입니다.", "Привет, мир! Как дела?", "Ελληνικά κείμενα εδώ.",
    "مرحبا بالعالم", "हिन्दी पाठ यहाँ है।", "Über naïve café owners in São Paulo serve crème brûlée.",
    "ÀÉÎÕÜ ÇÑ ångström Øresund", "ﬁne ｆｕｌｌｗｉｄｔｈ ①② ½ ™", "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "  leading and   multiple   spaces\tand\ttabs\nand newlines  ", "``quoted'' text and 'single' quotes",
    "zero\u200bwidth and soft\u00adhyphen", "a" * 120, "MiXeD CaSe WoRdS and UPPER", "3.14159, 2024-01-01; $5 & 10%",
]
SIZES = dict(hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.1)


@pytest.fixture(scope="session")
def corpus():
    """Training text and test texts: English paragraphs (several longer than 64 tokens) + multilingual strings."""
    from benchmarks.corpus import first_paragraphs

    english = first_paragraphs(300)
    return {"train": english[:240] + MULTILINGUAL * 3, "test": english[240:300] + MULTILINGUAL}


# ------------------------------------------------------------------------------------------------- tokenizers
def _wordpiece(texts, lowercase):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def _bpe(texts):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, special=True)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def _unigram(texts, specials, unk, normalizer, post=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=specials, unk_token=unk))
    if post is not None:
        tok.post_processor = post(tok)
    return tok


def _albert_post(tok):
    from tokenizers import processors

    return processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])


def _hf_tokenizer(family, texts):
    """transformers' fast tokenizer of the family around a freshly trained tiny tokenizer."""
    from tokenizers import normalizers

    if family == "distilbert":
        return transformers.DistilBertTokenizerFast(tokenizer_object=_wordpiece(texts, True))
    if family == "electra":  # cased: the config says so, as a cased checkpoint's does
        return transformers.ElectraTokenizerFast(tokenizer_object=_wordpiece(texts, False), do_lower_case=False)
    if family == "roberta":
        return transformers.RobertaTokenizerFast(tokenizer_object=_bpe(texts))
    if family == "xlm-roberta":  # an NFKC normalizer in the file, which transformers' XLM-R class drops
        return transformers.XLMRobertaTokenizerFast(tokenizer_object=_unigram(
            texts, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>", normalizers.NFKC()))
    assert family == "albert"
    norm = normalizers.Sequence([normalizers.Replace("``", '"'), normalizers.Replace("''", '"'), normalizers.NFKD(),
                                 normalizers.StripAccents(), normalizers.Lowercase()])
    return transformers.AlbertTokenizerFast(tokenizer_object=_unigram(
        texts, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", norm, _albert_post))


def _hf_model(family, vocab_size):
    if family == "roberta":
        config = transformers.RobertaConfig(vocab_size=vocab_size, max_position_embeddings=66, type_vocab_size=1,
                                            **SIZES)
    elif family == "xlm-roberta":
        config = transformers.XLMRobertaConfig(vocab_size=vocab_size, max_position_embeddings=66, **SIZES)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(vocab_size=vocab_size, dim=96, n_heads=6, hidden_dim=160, n_layers=2,
                                               max_position_embeddings=64, dropout=0.0, attention_dropout=0.0,
                                               initializer_range=0.1)
    elif family == "electra":
        config = transformers.ElectraConfig(vocab_size=vocab_size, embedding_size=48, max_position_embeddings=64,
                                            **SIZES)
    else:
        config = transformers.AlbertConfig(vocab_size=vocab_size, embedding_size=48, max_position_embeddings=64,
                                           **dict(SIZES, num_hidden_layers=3), classifier_dropout_prob=0.0)
    return transformers.AutoModel.from_config(config)


FAMILIES = ["roberta", "xlm-roberta", "distilbert", "electra", "albert"]


@pytest.fixture(scope="session")
def family_folders(corpus, tmp_path_factory):
    """family -> a transformers folder (random-weight model + trained tokenizer, save_pretrained output)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("families")
    folders = {}
    for family in FAMILIES:
        folder = str(root / family)
        tokenizer = _hf_tokenizer(family, corpus["train"])
        tokenizer.save_pretrained(folder)
        _hf_model(family, len(tokenizer)).save_pretrained(folder)
        folders[family] = folder
    return folders


@pytest.fixture(scope="session")
def tokenizer_pairs(family_folders):
    return {f: (fastbert.AutoTokenizer.from_pretrained(p), transformers.AutoTokenizer.from_pretrained(p))
            for f, p in family_folders.items()}


OPTIONS = [
    {},
    dict(padding=True, return_special_tokens_mask=True, return_offsets_mapping=True, return_length=True),
    dict(padding="max_length", max_length=40, truncation=True, padding_side="left", return_tensors="np"),
    dict(padding="longest", truncation="longest_first", max_length=24, return_tensors="pt", return_token_type_ids=True),
    dict(truncation="only_first", max_length=32, return_attention_mask=False, pad_to_multiple_of=8, padding=True),
    dict(truncation=True, max_length=20, stride=4, return_overflowing_tokens=True, padding=True),
    dict(add_special_tokens=False, padding=True, return_offsets_mapping=True),
    dict(padding=True, split_special_tokens=True),
]


def _same(got, ref, what):
    assert set(got.keys()) == set(ref.keys()), what
    for key in ref:
        a, b = got[key], ref[key]
        if isinstance(b, torch.Tensor):
            assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), (what, key)
        elif isinstance(b, np.ndarray):
            assert isinstance(a, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b), (what, key)
        else:
            assert a == b, (what, key)


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_matches_transformers(family, tokenizer_pairs, corpus):
    ours, ref = tokenizer_pairs[family]
    expected = TokenizersTokenizer if family in ("roberta", "xlm-roberta", "albert") else fastbert.BertTokenizer
    assert isinstance(ours, expected)
    texts = corpus["test"] + ["hello <mask> world</s><s> [MASK] [SEP] and <pad>"]
    pairs = texts[::-1]
    for options in OPTIONS:
        what = f"{family} {options}"
        _same(ours(texts, **options), ref(texts, **options), what + " singles")
        try:
            exp = ref(texts, pairs, **options)
        except Exception:  # e.g. only_first cannot reach max_length: transformers raises, so must we
            with pytest.raises(ValueError):
                ours(texts, pairs, **options)
            continue
        got = ours(texts, pairs, **options)
        _same(got, exp, what + " pairs")
        for i in (0, len(texts) // 2, -1):
            assert got.word_ids(i) == exp.word_ids(i) and got.sequence_ids(i) == exp.sequence_ids(i), what
            assert got.tokens(i) == exp.tokens(i), what
            assert got.token_to_chars(i, 1) == exp.token_to_chars(i, 1), what
    for text in texts[:5] + MULTILINGUAL:
        _same(ours(text), ref(text), f"{family} one text {text!r}")
        _same(ours(text, "a pair"), ref(text, "a pair"), f"{family} one pair {text!r}")
        assert ours.tokenize(text) == ref.tokenize(text)
    words = [t.split() for t in texts if t.split()]
    _same(ours(words, is_split_into_words=True, padding=True), ref(words, is_split_into_words=True, padding=True),
          f"{family} split into words")
    batch = ours(words[:4], is_split_into_words=True)
    assert [batch.word_ids(i) for i in range(4)] == \
        [ref(words[:4], is_split_into_words=True).word_ids(i) for i in range(4)]
    ids = ref(texts)["input_ids"]
    assert ours.batch_decode(ids) == ref.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
    assert ours.all_special_ids == ref.all_special_ids and ours.pad_token_id == ref.pad_token_id
    assert ours.model_input_names == ref.model_input_names


def test_distilbert_has_no_token_type_ids(tokenizer_pairs):
    ours, ref = tokenizer_pairs["distilbert"]
    assert "token_type_ids" not in ref("a text") and "token_type_ids" not in ours("a text")
    assert ours("a", "b", return_token_type_ids=True)["token_type_ids"] == \
        ref("a", "b", return_token_type_ids=True)["token_type_ids"]


def test_pipeline_is_transformers_not_just_the_file(tokenizer_pairs, family_folders):
    """The XLM-R file carries an NFKC normalizer that transformers' class drops on loading; so must we."""
    from tokenizers import Tokenizer

    ours, ref = tokenizer_pairs["xlm-roberta"]
    raw = Tokenizer.from_file(os.path.join(family_folders["xlm-roberta"], "tokenizer.json"))
    text = "ﬁne ｆｕｌｌｗｉｄｔｈ ①②"
    assert raw.encode(text).ids != ref(text)["input_ids"]  # the case this test is about
    assert ours(text)["input_ids"] == ref(text)["input_ids"]


def _rewrite(folder, name, change):
    path = os.path.join(folder, name)
    with open(path, encoding="utf-8") as f:
        value = json.load(f)
    change(value)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False)


def _older_xlmr_file(spec):
    """The layout of tokenizer.json files written by transformers 4 for XLM-R: a Replace normalizer, Metaspace
    alone, RobertaProcessing."""
    spec["normalizer"] = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    spec["post_processor"] = {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0],
                              "trim_offsets": True, "add_prefix_space": True}


@pytest.mark.parametrize("family, file, change", [
    ("xlm-roberta", "tokenizer.json", _older_xlmr_file),
    ("albert", "tokenizer_config.json", lambda c: c.update(do_lower_case=False, keep_accents=True)),
    ("roberta", "tokenizer_config.json", lambda c: c.update(add_prefix_space=True, trim_offsets=False)),
], ids=["xlmr-older-file", "albert-cased-accents", "roberta-prefix-space"])
def test_folder_variants(family, file, change, family_folders, corpus, tmp_path):
    """Other files and options of a family: what transformers makes of them, fastbert makes too."""
    folder = str(tmp_path / family)
    shutil.copytree(family_folders[family], folder)
    _rewrite(folder, file, change)
    ours, ref = fastbert.AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)
    texts = corpus["test"] + ["Ünïcödé ÀÉÎ  ``quoted''  text"]
    options = dict(padding=True, return_offsets_mapping=True, return_special_tokens_mask=True)
    _same(ours(texts, **options), ref(texts, **options), family)
    _same(ours(texts, texts[::-1], **options), ref(texts, texts[::-1], **options), family + " pairs")
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")).encode_batch(texts)
    expected = ref(texts, return_offsets_mapping=True)
    assert [(e.ids, e.offsets) for e in raw] != list(zip(expected["input_ids"], expected["offset_mapping"])), \
        "the file alone gives transformers' output: this variant tests nothing"


def test_save_pretrained_round_trip(tokenizer_pairs, corpus, tmp_path):
    ours, ref = tokenizer_pairs["roberta"]
    ours.save_pretrained(tmp_path)
    again = fastbert.AutoTokenizer.from_pretrained(tmp_path)
    hf_again = transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = corpus["test"]
    _same(again(texts, padding=True), ref(texts, padding=True), "fastbert reload")
    _same(hf_again(texts, padding=True), ref(texts, padding=True), "transformers reload")


# ------------------------------------------------------------------------------------------------- errors
def test_errors(family_folders, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(family_folders["roberta"], bad)
    os.remove(bad / "tokenizer_config.json")
    with open(bad / "config.json") as f:
        config = json.load(f)
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "deberta"}))
    with pytest.raises(ValueError, match="model_type 'deberta' has no tokenizer fastbert implements"):
        fastbert.AutoTokenizer.from_pretrained(bad)
    (bad / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "CamembertTokenizer"}))
    with pytest.raises(ValueError, match="tokenizer_class 'CamembertTokenizer' is not one fastbert implements"):
        fastbert.AutoTokenizer.from_pretrained(bad)

    spm = tmp_path / "spm"
    shutil.copytree(family_folders["albert"], spm)
    os.remove(spm / "tokenizer.json")
    (spm / "spiece.model").write_bytes(b"\x0a\x00")
    with pytest.raises(OSError, match=r"only the SentencePiece model spiece.model.*needs a tokenizer.json.*"
                                      r"save_pretrained"):
        fastbert.AutoTokenizer.from_pretrained(spm)
    with pytest.raises(OSError, match="needs a tokenizer.json"):
        fastbert.SentenceEncoder(spm, device="cpu")
    with pytest.raises(OSError, match="not a model folder"):
        fastbert.AutoTokenizer.from_pretrained(tmp_path / "missing")

    ours = fastbert.AutoTokenizer.from_pretrained(family_folders["roberta"])
    with pytest.raises(ValueError, match="leaves no tokens"):
        ours("some words here", truncation=True, max_length=1)
    with pytest.raises(ValueError, match="stride"):
        ours("some words here and more", truncation=True, max_length=5, stride=3, return_overflowing_tokens=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ours("text", not_an_option=True)
    with pytest.raises(ValueError, match="num_threads is not supported.*RAYON_NUM_THREADS"):
        ours(["text", "more"], num_threads=2)
    with pytest.raises(TypeError, match="unexpected keyword argument.*not_an_option"):
        fastbert.AutoTokenizer.from_pretrained(family_folders["albert"], not_an_option=True)
    left = fastbert.AutoTokenizer.from_pretrained(family_folders["albert"], padding_side="left", model_max_length=9)
    ref = transformers.AutoTokenizer.from_pretrained(family_folders["albert"], padding_side="left",
                                                     model_max_length=9)
    _same(left(MULTILINGUAL, padding=True, truncation=True), ref(MULTILINGUAL, padding=True, truncation=True),
          "albert with options")


# ------------------------------------------------------------------------------------------------- embeddings
# family -> (pooling modes, Normalize, do_lower_case, max_seq_length)
ST_SETUPS = {
    "roberta": ("mean", True, False, 64),  # the longest input: positions 2..65 of 66
    "xlm-roberta": ("mean", False, True, 40),
    "distilbert": ("cls", True, False, 48),
    "electra": ("mean", True, False, 64),
    "albert": (["mean", "max"], False, False, 32),
}


@pytest.fixture(scope="session")
def st_folders(family_folders, tmp_path_factory):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    root = tmp_path_factory.mktemp("st")
    folders = {}
    for family, (pooling, normalize, lower, max_len) in ST_SETUPS.items():
        transformer = Transformer(family_folders[family], max_seq_length=max_len, do_lower_case=lower)
        modules = [transformer, Pooling(96, pooling_mode=pooling)] + ([Normalize()] if normalize else [])
        folder = str(root / family)
        SentenceTransformer(modules=modules, device="cpu").save(folder)
        folders[family] = folder
    return folders


# float32 bound on max |fastbert - sentence-transformers| x max(1, |ref|). Measured (Intel Xeon, 78 texts):
# 7e-8 (RoBERTa, ELECTRA), 1.1e-7 (DistilBERT), 5.7e-7 (XLM-R, |ref| <= 3), 1.2e-6 (ALBERT, |ref| <= 3.7); one token
# more or less of truncation moves embeddings by >= 9e-3.
MAX_ABS = 5e-6
MIN_COSINE = 0.99999


@pytest.mark.parametrize("family", list(ST_SETUPS))
def test_sentence_encoder_matches_sentence_transformers(family, st_folders, corpus):
    from sentence_transformers import SentenceTransformer

    texts = corpus["test"]
    ref_model = SentenceTransformer(st_folders[family], device="cpu")
    ref = ref_model.encode(texts, batch_size=16, convert_to_numpy=True)
    encoder = fastbert.SentenceEncoder(st_folders[family], device="cpu", dtype="float32")
    got = encoder.encode(texts, batch_size=16)
    assert encoder.max_seq_length == ref_model.max_seq_length == ST_SETUPS[family][3]
    assert encoder.last_truncated > 0  # some texts are longer than max_seq_length
    assert got.shape == ref.shape and np.isfinite(got).all()
    cosine = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= MIN_COSINE, (family, cosine.min())
    assert np.abs(got - ref).max() <= MAX_ABS * max(1.0, np.abs(ref).max()), (family, np.abs(got - ref).max())


def test_worker_pool_on_a_tokenizers_family(st_folders, corpus):
    """A 2-worker pool on an XLM-R folder (tokenizers library, RAYON_NUM_THREADS per worker) gives the single
    process' embeddings, in input order."""
    texts = corpus["test"][:40]
    encoder = fastbert.SentenceEncoder(st_folders["xlm-roberta"], device="cpu", dtype="float32")
    single = encoder.encode(texts, batch_size=8)
    pool = encoder.start_multi_process_pool(2, threads_per_worker=1)
    try:
        pooled = encoder.encode(texts, batch_size=8, pool=pool)
    finally:
        encoder.stop_multi_process_pool(pool)
    assert pooled.shape == single.shape
    assert np.abs(pooled - single).max() <= MAX_ABS * max(1.0, np.abs(single).max())


def test_max_seq_length_cap_is_the_familys_positions(st_folders, tmp_path):
    """RoBERTa's usable positions are max_position_embeddings - padding_idx - 1 (64 of 66 here)."""
    folder = tmp_path / "roberta"
    shutil.copytree(st_folders["roberta"], folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["model_max_length"] = int(1e30)  # no limit from the tokenizer: the positions decide
    config_file.write_text(json.dumps(config))
    st_config = folder / "sentence_bert_config.json"
    st = json.loads(st_config.read_text())
    st.pop("max_seq_length", None)
    st_config.write_text(json.dumps(st))
    encoder = fastbert.SentenceEncoder(folder, device="cpu")
    assert encoder.max_seq_length == 64
    with pytest.raises(ValueError, match="max_position_embeddings 66 less its position offset 2 = 64"):
        encoder.max_seq_length = 65
    st["max_seq_length"] = 66
    st_config.write_text(json.dumps(st))
    with pytest.raises(ValueError, match="max_seq_length 66 exceeds"):
        fastbert.SentenceEncoder(folder, device="cpu")


def test_cli_encodes_an_xlm_roberta_folder(st_folders, tmp_path):
    from sentence_transformers import SentenceTransformer

    texts = ["Привет, мир!", "東京は日本の首都です。", "A plain English sentence."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    proc = subprocess.run([sys.executable, "-m", "fastbert", "encode", "--model", st_folders["xlm-roberta"],
                           "--device", "cpu", "-i", str(src), "-o", str(out)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    ref = SentenceTransformer(st_folders["xlm-roberta"], device="cpu").encode(texts)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= MAX_ABS * max(1.0, np.abs(ref).max())


def test_cli_without_the_tokenizers_package_says_which_extra(st_folders):
    """A RoBERTa folder needs the tokenizers package: without it, one line naming the extra, exit 1."""
    code = ("import sys; sys.modules['tokenizers'] = None; from fastbert.cli import main; "
            f"sys.exit(main(['encode', '--model', {st_folders['roberta']!r}, '--device', 'cpu', 'hi']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'fastbert[tokenizers]'" in lines[0], proc.stderr
