"""Multi-process encode on one machine (fastbert.embeddings.pool): same embeddings as one process, in input order."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sentence_model import random_texts, save_tiny_sentence_model

from fastbert.cli import main
from fastbert.embeddings.pool import EncodePool, parse_devices, token_balanced_chunks
from fastbert.embeddings.pool_worker import _send_error
from fastbert.embeddings.sentence_encoder import load_encoder
from fastbert.embeddings.batching import TruncationError

FP32_BOUND = 1e-6  # max |difference| to single-process fp32 encode


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_sentence_model(tmp_path_factory.mktemp("tiny-st"), seed=int.from_bytes(os.urandom(4), "little"))


MAX_LENGTH = 128  # an encoder option (the folder says 256): it must reach every worker


@pytest.fixture(scope="module")
def single(tiny_model):
    return load_encoder(tiny_model, "cpu", "float32", max_seq_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def pool(single):
    """Started as sentence-transformers users do: from the encoder, whose settings the workers take."""
    pool = single.start_multi_process_pool(2, threads_per_worker=1)
    yield pool
    single.stop_multi_process_pool(pool)


@pytest.mark.parametrize("n, n_chunks", [(1, 1), (1, 4), (2, 2), (7, 3), (129, 16), (511, 7), (511, 511)])
@pytest.mark.parametrize("spread", ["uniform", "one-long"])
def test_token_balanced_chunks_cover_every_index_once(seed, n, n_chunks, spread):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 513, size=n)
    if spread == "one-long":  # one text holds most of the tokens
        lengths = rng.integers(1, 8, size=n)
        lengths[rng.integers(n)] = 512
    chunks = token_balanced_chunks(lengths, n_chunks)
    assert min(2, n, n_chunks) <= len(chunks) <= n_chunks and all(c.size for c in chunks)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(n))
    flat = np.concatenate(chunks)
    assert np.all(np.diff(lengths[flat]) <= 0), "chunks follow the longest-first order"
    sums = [lengths[c].sum() for c in chunks]
    assert max(sums) <= lengths.sum() / n_chunks + lengths.max(), "a chunk overshoots the even share by < one text"


def test_parse_devices():
    assert parse_devices(3) == ["cpu"] * 3
    assert parse_devices("2") == ["cpu"] * 2
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices(["cpu", "cuda"]) == ["cpu", "cuda"]
    for bad in (0, "", "cuda:x", "tpu", ["cpu", ""], "cpu:1", []):
        with pytest.raises(ValueError):
            parse_devices(bad)
    with pytest.raises(TypeError):
        parse_devices(2.5)


@pytest.mark.parametrize("n, batch_size, max_words", [(1, 32, 300), (7, 2, 300), (129, 16, 300), (511, 7, 60)])
def test_pool_matches_single_process(pool, single, seed, n, batch_size, max_words):
    texts = random_texts(np.random.default_rng(seed), n, max_words)
    expected = single.encode(texts, batch_size=batch_size)
    got = pool.encode(texts, batch_size=batch_size)
    assert got.shape == expected.shape == (n, pool.dimension) and got.dtype == np.float32
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() <= FP32_BOUND
    if n > 1:
        assert all(chunks >= 1 for chunks in pool.last_chunks.values()), pool.last_chunks


def test_sentence_encoder_encode_with_a_pool(pool, single, seed):
    texts = random_texts(np.random.default_rng(seed), 33)
    expected = single.encode(texts, normalize_embeddings=True)
    truncated = single.last_truncated
    assert np.abs(single.encode(texts, pool=pool, normalize_embeddings=True) - expected).max() <= FP32_BOUND
    assert single.last_truncated == truncated
    assert single.encode(texts[0], pool=pool).shape == (pool.dimension,)
    with pytest.raises(ValueError, match="numpy"):
        single.encode(texts, pool=pool, convert_to_tensor=True)


def test_pool_splits_large_inputs_into_many_chunks(pool, single, seed):
    texts = random_texts(np.random.default_rng(seed), 1200, max_words=40)
    got = pool.encode(texts, batch_size=64, chunks_per_worker=2)
    assert sum(pool.last_chunks.values()) == 4
    assert np.abs(got - single.encode(texts, batch_size=64)).max() <= FP32_BOUND


def test_pool_passes_encoder_and_encode_options(pool, single, seed):
    texts = random_texts(np.random.default_rng(seed), 129)
    expected = single.encode(texts, batch_size=8, prompt="query: ", truncate_dim=8)
    got = pool.encode(texts, batch_size=8, prompt="query: ", truncate_dim=8)
    assert pool.max_seq_length == MAX_LENGTH and got.shape == expected.shape == (129, 8)
    assert np.abs(got - expected).max() <= FP32_BOUND
    assert pool.last_truncated == single.last_truncated > 0
    assert pool.encode([], truncate_dim=8).shape == (0, 8)


@pytest.mark.parametrize("chunks_per_worker", [1, 8])
def test_pool_truncation_error_names_input_positions(pool, single, seed, chunks_per_worker):
    """Long texts may fill several chunks: all of them are found, at their positions in the input."""
    texts = random_texts(np.random.default_rng(seed), 129, max_words=600)
    with pytest.raises(TruncationError) as expected:
        single.encode(texts, truncation=False)
    with pytest.raises(TruncationError) as got:
        pool.encode(texts, batch_size=1, truncation=False, chunks_per_worker=chunks_per_worker)  # 2 or 16 chunks
    assert len(expected.value.indices) > 16, "the long texts should span several chunks"
    assert got.value.indices == expected.value.indices and got.value.lengths == expected.value.lengths
    assert str(got.value) == str(expected.value)
    short_texts = [t for i, t in enumerate(texts) if i not in set(expected.value.indices)]
    assert pool.encode(short_texts, truncation=False).shape == (len(short_texts), 32), "pool still usable"


def test_pool_bad_input(pool):
    assert pool.encode([]).shape == (0, pool.dimension)
    with pytest.raises(TypeError, match="list of str"):
        pool.encode("one text")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        pool.encode(["a", None])
    with pytest.raises(ValueError, match="batch_size"):
        pool.encode(["a"], batch_size=0)
    with pytest.raises(OSError):
        EncodePool(1, "/nonexistent/model")


def test_worker_exception_is_raised_and_pool_stays_usable(pool, single):
    with pytest.raises(TypeError, match="no_such_option"):
        pool.encode(["a", "b", "c"], no_such_option=True)
    texts = ["still", "working"]
    assert np.abs(pool.encode(texts) - single.encode(texts)).max() <= FP32_BOUND


class _PositionsError(ValueError):
    """Built from other arguments than its message (like fastbert's TruncationError): pickling rebuilds it wrong."""

    def __init__(self, positions):
        super().__init__(f"bad texts at {positions}")
        self.positions = positions


class _CountedError(TypeError):
    def __init__(self, count, total):
        super().__init__(f"{count} of {total}")


def test_worker_errors_cross_the_process_boundary_as_their_builtin_kind():
    sender, receiver = multiprocessing.Pipe()
    for exc, kind, message in ((_PositionsError([3, 5]), ValueError, "_PositionsError: bad texts at [3, 5]"),
                               (_CountedError(1, 9), TypeError, "_CountedError: 1 of 9"),
                               (KeyError("k"), KeyError, "'k'")):
        _send_error(sender, exc)
        tag, got, remote_traceback = receiver.recv()
        assert tag == "error" and type(got) is kind and str(got) == message
        assert type(exc).__name__ in remote_traceback


def test_dead_worker_is_an_error_not_a_hang(tiny_model):
    with EncodePool(1, tiny_model, threads_per_worker=1) as pool:
        (worker,) = pool._workers
        os.kill(worker.process.pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="died"):
            pool.encode(["a text"] * 10)
        with pytest.raises(ValueError, match="closed"):
            pool.encode(["a text"])


def test_script_without_main_guard(tiny_model, single, tmp_path):
    """Workers never import the caller's script, so top-level pool use in a script just works."""
    texts = ["first text", "a second, longer text with more words in it", ""]
    script = tmp_path / "embed.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        import fastbert.embeddings.pool

        embeddings = fastbert.embeddings.pool.encode_multi_process({texts!r}, 1, {tiny_model!r}, threads_per_worker=1)
        np.save({str(tmp_path / "out.npy")!r}, embeddings)
    """))
    subprocess.run([sys.executable, str(script)], check=True, timeout=300, cwd=tmp_path)
    assert np.abs(np.load(tmp_path / "out.npy") - single.encode(texts)).max() <= FP32_BOUND


def _json_embeddings(out: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in out.splitlines()], dtype=np.float32)


def test_cli_devices(tiny_model, seed, capsys):
    """`fastbert encode --devices 2` prints what single-process `fastbert encode` prints, in input order."""
    texts = random_texts(np.random.default_rng(seed), 7)
    texts = [t or "empty" for t in texts]  # an empty argument is not a text on the command line
    assert main(["encode", "--model", tiny_model, "--max-length", "16", *texts]) == 0
    expected = capsys.readouterr().out
    assert main(["encode", "--devices", "2", "--model", tiny_model, "--max-length", "16", *texts]) == 0
    got = capsys.readouterr().out
    assert [json.loads(line)["text"] for line in got.splitlines()] == texts
    assert np.abs(_json_embeddings(got) - _json_embeddings(expected)).max() <= FP32_BOUND


@pytest.mark.parametrize("argv, message", [
    (["--devices", "2", "--device", "cpu"], "not both"),
    (["--workers", "2"], "go with --ray"),
    (["--text-column", "body"], "go with --ray"),
])
def test_cli_devices_usage_errors(argv, message, capsys):
    assert main(["encode", *argv, "a text"]) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_devices_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["encode", "--devices", "tpu:0", "a text"])
    assert exit_.value.code == 2 and "unsupported device 'tpu:0'" in capsys.readouterr().err
