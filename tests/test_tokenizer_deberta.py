"""DeBERTa-v2/v3's tokenizer (SentencePiece Unigram on the ``tokenizers`` library) against transformers'.

A tiny Unigram is trained offline on the shared corpus (``test_families_tokenize_encode``), wrapped as transformers'
``DebertaV2TokenizerFast`` and saved beside a random-weight DeBERTa-v3-layout model; ``fastbert.AutoTokenizer`` must
give what ``transformers.AutoTokenizer`` gives for the folder (singles, pairs, option sets, padding sides, word ids,
offsets, decoding), also with ``do_lower_case``, ``split_by_punct`` and ``add_prefix_space=False`` in
``tokenizer_config.json``; the encoder on its ids matches transformers' model, and ``SentenceEncoder`` on a
sentence-transformers folder around it matches ``SentenceTransformer.encode`` (measured max abs 6e-8).
"""
import json
import os
import shutil

import pytest
import torch
import transformers
from test_families_tokenize_encode import MULTILINGUAL, OPTIONS, _same, corpus  # noqa: F401  (corpus: a fixture)
from utils import max_err, parity_bound

import fastbert
from fastbert.tokenizers import TokenizersTokenizer

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]  # DeBERTa-v3's order: [UNK] is 3, not the default 1


def _hf_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                           unk_token="[UNK]"))
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return transformers.DebertaV2TokenizerFast(vocab=vocab)


@pytest.fixture(scope="module")
def folder(corpus, tmp_path_factory):  # noqa: F811
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("deberta") / "v3")
    tokenizer = _hf_tokenizer(corpus["train"])
    tokenizer.save_pretrained(path)
    config = transformers.DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
        max_position_embeddings=512, relative_attention=True, position_buckets=32, max_relative_positions=512,
        pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    transformers.DebertaV2Model(config).save_pretrained(path)
    return path


def _variant(folder, tmp_path, **options):
    path = str(tmp_path / "variant")
    shutil.copytree(folder, path)
    file = os.path.join(path, "tokenizer_config.json")
    with open(file) as f:
        config = json.load(f)
    with open(file, "w") as f:
        json.dump(dict(config, **options), f)
    return path


def compare_with_transformers(path, texts, unk_id: int, options=OPTIONS, padding_side: str | None = None):
    """fastbert's AutoTokenizer against transformers' on ``path``: ``texts`` alone and as pairs under every option
    set (transformers refusing means fastbert must too), word ids, the multilingual texts, decoding, special ids.
    (Shared with the other SentencePiece families' tests.)"""
    ours, ref = fastbert.AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    assert isinstance(ours, TokenizersTokenizer)
    if padding_side is not None:
        assert ours.padding_side == ref.padding_side == padding_side
    pairs = texts[::-1]
    for options in options:
        what = f"{path} {options}"
        _same(ours(texts, **options), ref(texts, **options), what + " singles")
        try:
            expected = ref(texts, pairs, **options)
        except Exception:  # transformers refuses (e.g. only_first cannot reach max_length): so must fastbert
            with pytest.raises(ValueError):
                ours(texts, pairs, **options)
            continue
        got = ours(texts, pairs, **options)
        _same(got, expected, what + " pairs")
        for i in (0, len(texts) // 2, -1):
            assert got.word_ids(i) == expected.word_ids(i) and got.tokens(i) == expected.tokens(i), what
    for text in MULTILINGUAL:
        _same(ours(text), ref(text), f"one text {text!r}")
        assert ours.tokenize(text) == ref.tokenize(text), text
    ids = ref(texts)["input_ids"]
    assert ours.batch_decode(ids) == ref.batch_decode(ids)
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
    assert ours.all_special_ids == ref.all_special_ids and ours.unk_token_id == ref.unk_token_id == unk_id
    assert ours.model_input_names == ref.model_input_names


def test_tokenizer_matches_transformers(folder, corpus):  # noqa: F811
    compare_with_transformers(folder, corpus["test"] + ["hello [MASK] world[SEP][CLS] and [PAD]", "a,b.c!d (e) [f]"],
                              unk_id=3)


@pytest.mark.parametrize("options", [dict(do_lower_case=True), dict(split_by_punct=True),
                                     dict(add_prefix_space=False)], ids=["lower", "split-punct", "no-prefix"])
def test_tokenizer_config_variants(folder, corpus, tmp_path, options):  # noqa: F811
    compare_with_transformers(_variant(folder, tmp_path, **options),
                              corpus["test"][:20] + ["a,b.c!d (e) [f]", "MiXeD CaSe"], unk_id=3)


def test_encoder_on_the_tokenizers_ids(folder, corpus):  # noqa: F811
    """The folder end to end: fastbert's tokenizer and encoder against transformers' on a padded batch."""
    texts = corpus["test"][:8]
    ids = fastbert.AutoTokenizer.from_pretrained(folder)(texts, padding=True, truncation=True, max_length=128,
                                                         return_tensors="pt")
    model = fastbert.AutoModel.from_pretrained(folder)
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = ref(**ids)[0]
        got = model(ids["input_ids"], ids["attention_mask"], ids["token_type_ids"])[0]
    mask = ids["attention_mask"]
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()])


def test_sentence_encoder_matches_sentence_transformers(folder, corpus, tmp_path):  # noqa: F811
    """A sentence-transformers folder around the DeBERTa folder (mean pooling, Normalize, max_seq_length 64):
    ``fastbert.SentenceEncoder`` gives ``SentenceTransformer.encode``'s embeddings in float32."""
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st_folder = str(tmp_path / "st")
    modules = [Transformer(folder, max_seq_length=64), Pooling(96, pooling_mode="mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(st_folder)
    texts = corpus["test"]
    ref = SentenceTransformer(st_folder, device="cpu").encode(texts, batch_size=16, convert_to_numpy=True)
    encoder = fastbert.SentenceEncoder(st_folder, device="cpu", dtype="float32")
    got = encoder.encode(texts, batch_size=16)
    assert encoder.last_truncated > 0 and got.shape == ref.shape
    cosine = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.99999, cosine.min()
    assert np.abs(got - ref).max() <= 5e-6 * max(1.0, np.abs(ref).max()), np.abs(got - ref).max()
