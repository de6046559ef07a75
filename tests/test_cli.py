"""`fastbert encode`: embeddings in input order, equal to pooling the reference model's output."""
import json

import numpy as np
import pytest
import torch
from conftest import SENTENCES

import fastbert
from fastbert.cli import encode_texts, length_batches, main, pool, sentence_transformers_defaults


def _reference_embeddings(hf_model, hf_tokenizer, texts, pooling, normalize):
    enc = hf_tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        states = hf_model(**enc).last_hidden_state
    emb = pool(states, enc["attention_mask"], pooling)
    return torch.nn.functional.normalize(emb, dim=-1).numpy() if normalize else emb.numpy()


def test_length_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = list(length_batches(lengths, 3))
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in batches[0]] == [9, 7, 5]


def test_minilm_defaults_follow_sentence_transformers(minilm_path):
    assert sentence_transformers_defaults(minilm_path) == ("mean", True)


@pytest.mark.parametrize("pooling, normalize", [("mean", True), ("cls", False)])
def test_encode_texts_matches_reference(minilm_path, hf_minilm, hf_tokenizer, pooling, normalize):
    model = fastbert.BertModel.from_pretrained(minilm_path, add_pooling_layer=False)
    texts = SENTENCES + ["", "short"]
    got = encode_texts(texts, model, hf_tokenizer, batch_size=3, pooling=pooling, normalize=normalize)
    expected = _reference_embeddings(hf_minilm, hf_tokenizer, texts, pooling, normalize)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5 * max(1.0, np.abs(expected).max()), rtol=0)
