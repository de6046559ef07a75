"""`fastbert.SentenceEncoder` against the installed sentence-transformers, folder by folder, on real prose.

Every case builds a model folder (saved by sentence-transformers itself, or in the older layouts it used to write),
embeds the same real texts with ``SentenceTransformer.encode`` and ``SentenceEncoder.encode`` in float32 on CPU, and
bounds the per-text cosine (>= 0.99999) and the max abs difference. A third of the texts are longer than the
folder's ``max_seq_length``, so truncation is exercised in every case.

``FASTBERT_PARITY_TEXTS=300 pytest tests/test_sentence_parity.py -s`` runs the same cases on more texts and prints
the measured numbers.
"""
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sentence_folders import legacy_folder, real_texts, st_saved_folder, write_json  # noqa: E402

import fastbert  # noqa: E402

st = pytest.importorskip("sentence_transformers")

N_TEXTS = int(os.environ.get("FASTBERT_PARITY_TEXTS", "12"))
MIN_COSINE = 0.99999


@pytest.fixture(scope="module")
def texts():
    """Real prose, a third of it longer than 256 tokens, drawn fresh each run (seed in the failure message)."""
    seed = random.SystemRandom().randrange(2**31)
    n_long = max(1, N_TEXTS // 3)
    return seed, real_texts(N_TEXTS - n_long, n_long, seed) + ["", "Hi", "Über naïve CAFÉ owners in São Paulo."]


def compare(folder, texts, calls=({},), parts=1):
    """Embed ``texts`` with sentence-transformers and fastbert (float32, CPU) once per ``encode`` keyword set in
    ``calls``; bound the cosine of every text (and of each of ``parts`` equal slices of the embedding, for
    concatenated pooling modes) and the max abs difference. Returns the encoder."""
    seed, texts = texts
    model = st.SentenceTransformer(folder, device="cpu")
    encoder = fastbert.SentenceEncoder(folder, device="cpu", dtype="float32")
    for kwargs in calls:
        reference = model.encode(texts, batch_size=16, **kwargs)
        got = encoder.encode(texts, batch_size=7, max_batch_tokens=1024, **kwargs)
        assert got.shape == reference.shape and got.dtype == np.float32
        diff = float(np.abs(got - reference).max())
        bound = 2e-5 * max(1.0, float(np.abs(reference).max()))
        cosines = [_cosine(g, r) for g, r in zip(np.split(got, parts, axis=1), np.split(reference, parts, axis=1))]
        print(f"\n{os.path.basename(str(folder))} {kwargs}: {len(texts)} texts, {encoder.last_truncated} truncated "
              f"at {encoder.max_seq_length}: min cosine {' '.join(f'{c.min():.8f}' for c in cosines)}, "
              f"max abs diff {diff:.2e} (bound {bound:.1e})")
        for part, cos in enumerate(cosines):
            assert cos.min() >= MIN_COSINE, f"seed {seed}: part {part}: min cosine {cos.min()} at text {cos.argmin()}"
        assert diff <= bound, f"seed {seed}: max abs diff {diff} > {bound}"
    return encoder


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def test_bundled_minilm(texts):
    """The bundled folder: sentence-transformers 2.0 layout (pooling_mode_mean_tokens, Normalize without a folder,
    max_seq_length 256 in sentence_bert_config.json)."""
    encoder = compare(fastbert.default_model_path(), texts)
    assert encoder.max_seq_length == 256 and encoder.last_truncated >= N_TEXTS // 3


def test_saved_by_current_sentence_transformers(tmp_path, texts):
    """`SentenceTransformer(minilm).save(dir)` with sentence-transformers 6: "pooling_mode": "mean", max_seq_length
    only as the tokenizer's model_max_length."""
    folder = str(tmp_path / "saved")
    st.SentenceTransformer(fastbert.default_model_path(), device="cpu").save(folder)
    with open(os.path.join(folder, "1_Pooling", "config.json")) as f:
        assert json.load(f)["pooling_mode"] == "mean"
    with open(os.path.join(folder, "sentence_bert_config.json")) as f:
        assert "max_seq_length" not in json.load(f)
    encoder = compare(folder, texts)
    assert encoder.max_seq_length == 256


def test_every_pooling_mode(tmp_path, texts):
    """All six modes in one Pooling module: sentence-transformers concatenates them; each slice is bounded alone."""
    modes = ("lasttoken", "cls", "mean", "max", "weightedmean", "mean_sqrt_len_tokens")
    folder = st_saved_folder(tmp_path / "pool-all", pooling_mode=modes, normalize=False, max_seq_length=96)
    encoder = compare(folder, texts, parts=len(modes))
    assert encoder.pooling.modes == modes and encoder.get_sentence_embedding_dimension() == 6 * 384


def test_single_pooling_mode(tmp_path, texts):
    """One mode saved as a plain string (not a list), followed by Normalize."""
    compare(st_saved_folder(tmp_path / "pool-cls", pooling_mode="cls", max_seq_length=96), texts)


def test_legacy_pooling_keys_concatenated(tmp_path, texts):
    """Old boolean keys, several true: concatenated in sentence-transformers' fixed legacy order."""
    folder = legacy_folder(tmp_path / "legacy-concat", {
        "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_weightedmean_tokens": True,
        "pooling_mode_lasttoken": True}, max_seq_length=96, normalize=False)
    encoder = compare(folder, texts, parts=4)
    assert encoder.pooling.modes == ("cls", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def test_dense_modules_saved_by_sentence_transformers(tmp_path, texts):
    """Dense layers with random weights: default Tanh, ReLU without bias, GELU with a residual, Identity with a
    projected residual, then Normalize."""
    from sentence_transformers.base.modules import Dense

    torch.manual_seed(random.SystemRandom().randrange(2**31))
    dense = [Dense(384, 96), Dense(96, 64, bias=False, activation_function=torch.nn.ReLU()),
             Dense(64, 64, activation_function=torch.nn.GELU(), use_residual=True),
             Dense(64, 48, activation_function=None, use_residual=True)]
    encoder = compare(st_saved_folder(tmp_path / "dense", dense=dense, max_seq_length=96), texts)
    assert encoder.get_sentence_embedding_dimension() == 48


def test_legacy_dense_module(tmp_path, texts):
    """The old layout: Dense weights in pytorch_model.bin, activation as a torch.nn path, no Normalize."""
    weights = {"linear.weight": torch.randn(128, 384) / 20, "linear.bias": torch.randn(128) / 10}
    dense = {"in_features": 384, "out_features": 128, "bias": True,
             "activation_function": "torch.nn.modules.activation.Tanh", "weights": weights}
    folder = legacy_folder(tmp_path / "legacy-dense", {"pooling_mode_mean_tokens": True}, dense=[dense],
                           normalize=False, max_seq_length=96)
    compare(folder, texts)


def test_prompts_excluded_from_pooling(tmp_path, texts):
    """Prompts from config_sentence_transformers.json: the default prompt, a named one, an explicit one, with the
    prompt excluded from pooling (include_prompt false) for every mode where that matters."""
    folder = st_saved_folder(tmp_path / "prompts", pooling_mode=("mean", "cls", "weightedmean", "max"),
                             include_prompt=False, max_seq_length=96, normalize=False,
                             prompts={"query": "query: ", "passage": "passage: "}, default_prompt_name="query")
    encoder = compare(folder, texts, calls=[{}, {"prompt_name": "passage"},
                                           {"prompt": "Represent this sentence for searching relevant passages: "}],
                      parts=4)
    assert encoder.default_prompt_name == "query"


def test_prompt_included(tmp_path, texts):
    folder = st_saved_folder(tmp_path / "prompt-included", pooling_mode=("cls", "weightedmean"), normalize=False,
                             max_seq_length=96)
    compare(folder, texts, calls=[{"prompt": "query: "}], parts=2)


def test_do_lower_case_on_a_cased_tokenizer(tmp_path, texts):
    """sentence_bert_config's do_lower_case lowercases in front of a cased tokenizer (which keeps accents)."""
    for lower in (True, False):
        folder = legacy_folder(tmp_path / f"cased-{lower}", {"pooling_mode_mean_tokens": True}, max_seq_length=96)
        tokenizer_file = os.path.join(folder, "tokenizer.json")
        with open(tokenizer_file, encoding="utf-8") as f:
            spec = json.load(f)
        spec["normalizer"]["lowercase"] = False
        write_json(tokenizer_file, spec)
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
            tok_config = json.load(f)
        write_json(os.path.join(folder, "tokenizer_config.json"), {**tok_config, "do_lower_case": False})
        write_json(os.path.join(folder, "sentence_bert_config.json"), {"max_seq_length": 96, "do_lower_case": lower})
        encoder = compare(folder, texts)
        assert encoder.tokenizer.do_lower_case == lower


def test_without_max_seq_length(tmp_path, texts):
    """No max_seq_length anywhere: sentence-transformers truncates at max_position_embeddings (512)."""
    folder = legacy_folder(tmp_path / "no-max", {"pooling_mode_mean_tokens": True}, max_seq_length=None)
    with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as f:
        tok_config = json.load(f)
    del tok_config["model_max_length"]
    write_json(os.path.join(folder, "tokenizer_config.json"), tok_config)
    seed, some = texts
    inputs = [" ".join(some), some[0], "short"]
    encoder = compare(folder, (seed, inputs))
    too_long = sum(len(encoder.tokenizer(t)["input_ids"]) > 512 for t in inputs)
    assert encoder.max_seq_length == 512 and too_long >= 1 and encoder.last_truncated == too_long


def test_normalize_embeddings_and_truncate_dim(tmp_path, texts):
    folder = st_saved_folder(tmp_path / "plain-mean", normalize=False, max_seq_length=96)
    compare(folder, texts, calls=[{"normalize_embeddings": True, "truncate_dim": 100}])
