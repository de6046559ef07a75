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


def test_encode_command_end_to_end(minilm_path, hf_minilm, hf_tokenizer, tmp_path, capsys):
    """`fastbert encode` on the default model: JSON lines on stdout, .npy from a file, both in input order."""
    texts = ["A long sentence about encoders, with several words in it.", "Hi", "Mid-length text here."]
    assert main(["encode", *texts]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["text"] for row in lines] == texts
    expected = _reference_embeddings(hf_minilm, hf_tokenizer, texts, "mean", True)
    got = np.array([row["embedding"] for row in lines], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)

    src, dst = tmp_path / "texts.txt", tmp_path / "emb.npy"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["encode", "-i", str(src), "-o", str(dst), "--pooling", "cls", "--no-normalize",
                 "--batch-size", "2"]) == 0
    np.testing.assert_allclose(np.load(dst), _reference_embeddings(hf_minilm, hf_tokenizer, texts, "cls", False),
                               atol=2e-5 * 10, rtol=0)


def test_encode_command_errors(tmp_path, capsys):
    assert main(["encode", "--model", str(tmp_path), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastbert encode:") and str(tmp_path) in err and "vocab.txt" in err
    with pytest.raises(SystemExit, match="cannot read"):
        main(["encode", "-i", str(tmp_path / "missing.txt")])
