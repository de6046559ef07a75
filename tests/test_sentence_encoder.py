"""`fastbert.SentenceEncoder`: sentence-transformers' call habits, batching, truncation, options and their errors."""
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sentence_folders import real_texts  # noqa: E402

import fastbert  # noqa: E402
from fastbert.embeddings.batching import TokenizedTexts, TruncationError, token_budget_batches  # noqa: E402


@pytest.fixture(scope="module")
def encoder():
    return fastbert.SentenceEncoder(device="cpu")


@pytest.fixture(scope="module")
def texts():
    return real_texts(8, 2, random.SystemRandom().randrange(2**31)) + ["", "Hi"]


def test_call_habits(encoder, texts):
    """numpy [N, D] by default, one tensor or a list of tensors on request, a 1-D row for a single string,
    [0, D] for no texts; every form holds the same float32 values in input order."""
    texts = texts[:5]
    emb = encoder.encode(texts)
    assert isinstance(emb, np.ndarray) and emb.shape == (len(texts), 384) and emb.dtype == np.float32
    tensor = encoder.encode(texts, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.device == encoder.device
    rows = encoder.encode(texts, convert_to_numpy=False)
    assert isinstance(rows, list) and all(r.shape == (384,) for r in rows)
    np.testing.assert_array_equal(tensor.numpy(), emb)
    np.testing.assert_array_equal(torch.stack(rows).numpy(), emb)
    single = encoder.encode(texts[0])
    assert single.shape == (384,)
    np.testing.assert_allclose(single, emb[0], atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.encode(np.array(texts[:2])).shape == (2, 384)
    assert encoder.encode(t for t in texts[:3]).shape == (3, 384)


def test_order_and_batching_do_not_change_results(encoder, texts):
    reference = encoder.encode(texts, batch_size=64)
    perm = np.random.permutation(len(texts))
    shuffled = encoder.encode([texts[i] for i in perm], batch_size=3, max_batch_tokens=300)
    np.testing.assert_allclose(shuffled, reference[perm], atol=2e-6, rtol=0)
    one_by_one = encoder.encode(texts[:5], batch_size=1, max_batch_tokens=None)
    np.testing.assert_allclose(one_by_one, reference[:5], atol=2e-6, rtol=0)


@given(lengths=st.lists(st.integers(1, 600), max_size=60), batch_size=st.integers(1, 9),
       budget=st.one_of(st.none(), st.integers(1, 2000)))
@settings(max_examples=300, deadline=None)
def test_token_budget_batches(lengths, batch_size, budget):
    batches = token_budget_batches(lengths, batch_size, budget)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    order = [i for b in batches for i in b]
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    for b in batches:
        assert 1 <= len(b) <= batch_size
        assert budget is None or len(b) == 1 or len(b) * lengths[b[0]] <= budget
    for first, second in zip(batches, batches[1:]):  # a batch closes only when it is full or over budget
        assert len(first) == batch_size or (budget is not None and (len(first) + 1) * lengths[first[0]] > budget)


def test_truncation_counted_or_refused(encoder):
    texts = ["short", "word " * 300, "also short", "token " * 1000]
    encoder.encode(texts)
    assert encoder.last_truncated == 2
    with pytest.raises(TruncationError) as info:
        encoder.encode(texts, truncation=False)
    assert info.value.indices == [1, 3] and info.value.lengths == [302, 1002] and info.value.max_length == 256
    assert "2 of 4 texts are longer than max_seq_length=256 tokens (the first is texts[1], 302 tokens)" in str(
        info.value)
    encoder.encode(texts[:1], truncation=False)
    assert encoder.last_truncated == 0



def test_tokenize_texts_then_encode_tokenized_is_encode(encoder, texts):
    """``encode`` in two steps (what a server does across threads): the same tokens, the same rows, also for
    parts tokenized apart and joined; truncation counted per call without touching ``last_truncated``."""
    options = dict(normalize_embeddings=True, truncate_dim=100)
    reference = encoder.encode(texts, **options)
    truncated = encoder.last_truncated
    assert truncated >= 2  # real_texts(8, 2): two passages (and maybe a paragraph) over 256 tokens
    encoder.last_truncated = -1
    parts = [encoder.tokenize_texts(texts[:3]), encoder.tokenize_texts(texts[3:7]), encoder.tokenize_texts(texts[7:])]
    joined = TokenizedTexts.concat(parts)
    assert encoder.last_truncated == -1 and sum(p.truncated for p in parts) == joined.truncated == truncated
    assert len(joined) == len(texts) and joined.lengths.max() == encoder.max_seq_length
    whole = encoder.tokenize_texts(texts)
    np.testing.assert_array_equal(joined.ids, whole.ids)
    np.testing.assert_array_equal(joined.offsets, whole.offsets)
    np.testing.assert_array_equal(encoder.encode_tokenized(joined, **options), reference)
    np.testing.assert_array_equal(encoder.encode_tokenized(parts[1]), encoder.encode(texts[3:7]))
    with pytest.raises(TruncationError) as info:
        encoder.tokenize_texts(texts, truncation=False)
    assert len(info.value.indices) == truncated
    with pytest.raises(ValueError, match=r"different prompt lengths \[0, 3\]"):
        TokenizedTexts.concat([parts[0], TokenizedTexts(parts[1].ids, parts[1].offsets, 0, 3)])

def test_max_seq_length_is_settable_and_checked(encoder):
    long = "word " * 300
    default = encoder.encode(long)
    try:
        encoder.max_seq_length = 512
        longer = encoder.encode(long)
        assert encoder.last_truncated == 0 and not np.allclose(longer, default, atol=1e-3)
        for bad in (0, 1, 513, True, 2.5, "256"):
            with pytest.raises(ValueError, match="max_seq_length must be an integer from 2"):
                encoder.max_seq_length = bad
    finally:
        encoder.max_seq_length = 256
    assert fastbert.SentenceEncoder(device="cpu", max_seq_length=16).max_seq_length == 16


def test_prompt_resolution(encoder):
    encoder.prompts = {"query": "query: ", "doc": ""}
    try:
        plain = encoder.encode("what is fastbert")
        prefixed = encoder.encode("query: what is fastbert")
        np.testing.assert_allclose(encoder.encode("what is fastbert", prompt_name="query"), prefixed, atol=1e-6)
        np.testing.assert_allclose(encoder.encode("what is fastbert", prompt_name="query", prompt=""), plain,
                                   atol=1e-6)  # prompt wins over prompt_name, as in sentence-transformers
        encoder.default_prompt_name = "query"
        np.testing.assert_allclose(encoder.encode("what is fastbert"), prefixed, atol=1e-6)
        with pytest.raises(ValueError, match=r"prompt name 'passage' is not one of the model's prompts \['doc', "):
            encoder.encode("x", prompt_name="passage")
    finally:
        encoder.prompts, encoder.default_prompt_name = {}, None


def test_overrides(encoder, texts):
    texts = texts[:5]
    unnormalized = fastbert.SentenceEncoder(device="cpu", normalize=False).encode(texts)
    assert not np.allclose(np.linalg.norm(unnormalized, axis=1), 1, atol=1e-3)
    normalized = unnormalized / np.linalg.norm(unnormalized, axis=1, keepdims=True)
    np.testing.assert_allclose(normalized, encoder.encode(texts), atol=2e-6)
    np.testing.assert_allclose(encoder.encode(texts, normalize_embeddings=True, truncate_dim=10),
                               normalized[:, :10] / np.linalg.norm(normalized[:, :10], axis=1, keepdims=True),
                               atol=2e-6)
    cls = fastbert.SentenceEncoder(device="cpu", pooling=["cls", "max"], normalize=False)
    assert cls.get_sentence_embedding_dimension() == 768 and cls.encode(texts).shape == (len(texts), 768)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"device": "gpu"}, ValueError, "unknown device 'gpu'; fastbert runs on 'cpu' or 'cuda'"),
    ({"device": "mps"}, ValueError, "unknown device 'mps'"),
    ({"device": "meta"}, ValueError, "unknown device 'meta'"),
    ({"dtype": "int8"}, ValueError, "unknown dtype 'int8'"),
    ({"dtype": torch.float64}, ValueError, "unsupported dtype torch.float64"),
    ({"pooling": "median"}, ValueError, "unknown pooling mode(s) ['median']"),
    ({"normalize": "yes"}, TypeError, "normalize must be None, True or False"),
    ({"max_seq_length": 0}, ValueError, "max_seq_length must be an integer from 2"),
])
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error) as info:
        fastbert.SentenceEncoder(**kwargs)
    assert message in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="device 'cuda:1' requested but CUDA is not available on this machine"):
        fastbert.SentenceEncoder(device="cuda:1")


@pytest.mark.parametrize("call, error, message", [
    (lambda e: e.encode([1, "a"]), TypeError, "texts[0] is a int, not a str"),
    (lambda e: e.encode(b"bytes"), TypeError, "texts must be a str or a sequence of str, got bytes"),
    (lambda e: e.encode(["a"], batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
    (lambda e: e.encode(["a"], max_batch_tokens=0), ValueError, "max_batch_tokens must be a positive integer"),
    (lambda e: e.encode(["a"], truncate_dim=0), ValueError, "truncate_dim must be a positive integer"),
    (lambda e: e.encode(["a"], prompt=3), TypeError, "prompt must be a str"),
])
def test_encode_errors(encoder, call, error, message):
    with pytest.raises(error) as info:
        call(encoder)
    assert message in str(info.value)


@pytest.mark.parametrize("dtype, min_cosine", [("float16", 0.9999), ("bfloat16", 0.999)])
def test_low_precision_error_relative_to_sentence_transformers(texts, dtype, min_cosine):
    """Low precision on CPU: error against sentence-transformers fp32 at most 1.5x sentence-transformers' own error
    in the same dtype, and a cosine bound."""
    st = pytest.importorskip("sentence_transformers")
    path = fastbert.default_model_path()
    reference = st.SentenceTransformer(path, device="cpu").encode(texts)
    st_low = st.SentenceTransformer(path, device="cpu", model_kwargs={"torch_dtype": getattr(torch, dtype)})
    st_err = np.abs(st_low.encode(texts).astype(np.float32) - reference).max()
    got = fastbert.SentenceEncoder(path, device="cpu", dtype=dtype).encode(texts)
    err = np.abs(got - reference).max()
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert err <= 1.5 * st_err, (err, st_err)
    assert cosine.min() >= min_cosine
