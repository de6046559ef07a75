"""XLNet's tokenizer (SentencePiece Unigram on the ``tokenizers`` library) against transformers'.

A tiny Unigram is trained offline on the shared corpus (``test_families_tokenize_encode``) with XLNet's special tokens
in XLNet's order, wrapped as transformers' ``XLNetTokenizer`` and saved beside a random-weight XLNet;
``fastbert.AutoTokenizer`` must give what ``transformers.AutoTokenizer`` gives for the folder (singles, pairs with
``<sep>``/``<cls>`` at the END and segment ids 0/1/2, option sets, LEFT padding by default, truncation, word ids,
offsets, decoding), also with ``do_lower_case`` in ``tokenizer_config.json``, and the encoder on its ids matches
transformers' model.
"""
import json
import os
import shutil

import pytest
import torch
import transformers
from test_families_tokenize_encode import MULTILINGUAL, OPTIONS, corpus  # noqa: F401  (corpus: a fixture)
from test_tokenizer_deberta import compare_with_transformers
from utils import max_err, parity_bound

import fastbert

SPECIALS = ["<unk>", "<s>", "</s>", "<cls>", "<sep>", "<pad>", "<mask>", "<eod>", "<eop>"]  # xlnet-base-cased's order


def _hf_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=400, special_tokens=SPECIALS,
                                                           unk_token="<unk>"))
    vocab = [tuple(v) for v in json.loads(tok.to_str())["model"]["vocab"]]
    return transformers.XLNetTokenizer(vocab=vocab)


@pytest.fixture(scope="module")
def folder(corpus, tmp_path_factory):  # noqa: F811
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("xlnet") / "base")
    tokenizer = _hf_tokenizer(corpus["train"])
    tokenizer.save_pretrained(path)
    config = transformers.XLNetConfig(vocab_size=len(tokenizer), d_model=96, n_head=6, d_inner=160, n_layer=2,
                                      dropout=0.0)
    transformers.XLNetModel(config).save_pretrained(path)
    return path


def test_tokenizer_matches_transformers(folder, corpus):  # noqa: F811
    got = fastbert.AutoTokenizer.from_pretrained(folder)("a b", "c", return_token_type_ids=True)
    assert got["token_type_ids"][-3:] == [1, 1, 2]  # ... B <sep> <cls>: the segments XLNet's attention reads
    options = OPTIONS + [dict(padding=True, return_token_type_ids=True, truncation=True, max_length=16)]
    compare_with_transformers(folder, corpus["test"] + ["hello <mask> world<sep><cls> and <pad>", "a,b.c!d (e) [f]",
                                                         "``x'' <eod>"], unk_id=0, options=options, padding_side="left")


def test_tokenizer_lowercase(folder, corpus, tmp_path):  # noqa: F811
    path = str(tmp_path / "variant")
    shutil.copytree(folder, path)
    file = os.path.join(path, "tokenizer_config.json")
    with open(file) as f:
        config = json.load(f)
    with open(file, "w") as f:
        json.dump(dict(config, do_lower_case=True), f)
    compare_with_transformers(path, corpus["test"][:20] + ["a,b.c!d (e) [f]", "MiXeD CaSe"], unk_id=0,
                              padding_side="left")


def test_encoder_on_the_tokenizers_ids(folder, corpus):  # noqa: F811
    """The folder end to end: fastbert's tokenizer (left padding, pairs with segment ids) and encoder against
    transformers' on a padded batch."""
    texts = [t[:10 + 12 * i] for i, t in enumerate(corpus["test"][:8])]  # of different lengths
    ids = fastbert.AutoTokenizer.from_pretrained(folder)(texts, ["yes", "no, not that one"] * 4, padding=True,
                                                         return_token_type_ids=True, return_tensors="pt")
    model = fastbert.AutoModel.from_pretrained(folder)
    ref = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = ref(**ids)[0]
        got = model(ids["input_ids"], ids["attention_mask"], ids["token_type_ids"])[0]
    mask = ids["attention_mask"]
    assert not bool(mask[:, 0].all()) and bool(mask[:, -1].all())  # left padded
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()])


def test_sentence_encoder_matches_sentence_transformers(folder, corpus, tmp_path):  # noqa: F811
    """A sentence-transformers folder around the XLNet folder (mean pooling, max_seq_length 32, so most texts are
    truncated; XLNet's tokenizer pads on the left): ``fastbert.SentenceEncoder`` gives
    ``SentenceTransformer.encode``'s embeddings in float32."""
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    st_folder = str(tmp_path / "st")
    modules = [Transformer(folder, max_seq_length=32), Pooling(96, pooling_mode="mean")]
    SentenceTransformer(modules=modules, device="cpu").save(st_folder)
    texts = corpus["test"][:24] + MULTILINGUAL
    ref = SentenceTransformer(st_folder, device="cpu").encode(texts, batch_size=8, convert_to_numpy=True)
    encoder = fastbert.SentenceEncoder(st_folder, device="cpu", dtype="float32")
    got = encoder.encode(texts, batch_size=8)
    assert encoder.last_truncated > 0 and got.shape == ref.shape
    cosine = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.99999, cosine.min()
    assert np.abs(got - ref).max() <= 5e-6 * max(1.0, np.abs(ref).max()), np.abs(got - ref).max()
