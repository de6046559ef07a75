"""CI smoke test of the benchmark suite: the encoder benchmark's tiny CPU grid end to end, and the report.

Benchmarks measure, tests assert: here only that the run completes, writes its JSON/markdown/plots, labels itself
CPU, and that every row's correctness check passed -- never a speed.
"""
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def bench(monkeypatch):
    """The ``benchmarks`` package (it lives at the repository root, beside ``tests/``)."""
    monkeypatch.syspath_prepend(str(REPO))
    import benchmarks.encoder
    import benchmarks.report

    return benchmarks


def test_encoder_cpu_grid(bench, tmp_path):
    encoder = bench.encoder
    argv = ["--device", "cpu", "--out", str(tmp_path), "--warmup-ms", "5", "--rep-ms", "20", "--latency-iters", "5",
            "--no-progress"]
    assert encoder.main(argv) == 0

    data = json.loads((tmp_path / "encoder.json").read_text())
    assert data["label"].startswith("CPU: ") and "tiny" in data["label"]
    assert data["environment"]["device_type"] == "cpu" and data["environment"]["cuda_runtime"] is None
    assert data["peak"]["fp32"]["tflops"] > 0
    rows = data["rows"]
    grid = {(d, b, i) for d in ("full", "uniform", "real") for b in (1, 4) for i in ("fastbert", "hf-eager", "hf-sdpa")}
    assert {(r["dist"], r["batch"], r["impl"]) for r in rows} == grid
    for r in rows:
        assert r["status"] == "ok", r
        assert r["correct"], r
        assert r["model"] == "tiny" and r["dtype"] == "fp32" and r["max_length"] == 16
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["real_tok_per_s"] > 0
        assert 2 <= r["mean_length"] <= r["padded_length"] <= 16
        assert r["real_tokens"] == round(r["mean_length"] * r["batch"])
    assert {r["backend"] for r in rows if r["impl"] == "fastbert"} == {"torch"}
    assert all(r["mean_length"] == 16 for r in rows if r["dist"] == "full")
    assert data["corpus"]["lengths"]["16"]["passages"] > 100

    md = (tmp_path / "encoder.md").read_text()
    assert "CPU run" in md and "| fastbert |" in md and "**NO**" not in md
    assert (tmp_path / "encoder_tiny_fp32_L16.png").read_bytes()[:8] == PNG_MAGIC
    readme = (tmp_path / "README.md").read_text()
    assert "CPU run" in readme and "every row passed" in readme
    assert "## Triton kernels\n\nnot run" in readme and "## Tokenizer (CPU)\n\nnot run" in readme


def test_flop_count_by_hand(bench):
    """Two sequences of 3 and 5 tokens, H=4, I=8, 2 layers: matmuls 2*8*(64+64) + attention 4*4*(9+25)."""
    assert bench.encoder.model_flops(np.array([3, 5]), hidden=4, intermediate=8, layers=2) == 2 * (2048 + 544)


def test_length_distributions(bench):
    encoder = bench.encoder
    rng = np.random.default_rng(0)
    assert (encoder.sample_lengths("full", 7, 128, rng) == 128).all()
    uniform = encoder.sample_lengths("uniform", 20000, 512, rng)
    assert uniform.min() >= 102 and uniform.max() <= 512 and abs(uniform.mean() / 512 - 0.6) < 0.01
    with pytest.raises(ValueError, match="unknown length distribution"):
        encoder.sample_lengths("zipf", 1, 16, rng)


def test_corpus_packing(bench):
    from benchmarks.corpus import pack, paragraphs

    # budget 8 tokens + [CLS]/[SEP]: 3+4 fit, 5 starts a new passage, 20 is truncated, the end flushes 2
    assert pack((3, 4, 5, 20, 2), max_length=10) == [9, 7, 10, 4]
    text = "A real sentence of prose here.\n\n```\ncode = 1\n```\n\n>>> x = 1\n\n| a | b |\n\nAnother line\nof text."
    assert paragraphs(text) == ["A real sentence of prose here.", "Another line of text."]


def test_report_gathers_other_benchmarks(bench, tmp_path):
    """README.md lists the encoder as not run, embeds kernels.md, and tabulates a tokenizer JSON without markdown."""
    gpu, cpu = tmp_path / "nvidia-h100", tmp_path / "cpu"
    gpu.mkdir()
    cpu.mkdir()
    (gpu / "kernels.json").write_text(json.dumps({"rows": [{"kernel": "layernorm", "gbps": 2000.0}]}))
    (gpu / "kernels.md").write_text("# Kernels\n\n| kernel | GB/s |\n|---|---|\n| layernorm | 2000 |\n")
    (cpu / "tokenizer.json").write_text(json.dumps({"results": [{"impl": "fastbert", "texts_per_s": 12345.6}]}))
    assert bench.report.main([str(gpu)]) == 0
    readme = (gpu / "README.md").read_text()
    assert "## Encoder (end to end)\n\nnot run" in readme
    assert "### Kernels" in readme and "| layernorm | 2000 |" in readme
    assert "../cpu/tokenizer.json" in readme and "| fastbert | 12.3k |" in readme


def test_padding_free_benchmark_cpu(tmp_path):
    from benchmarks import padding_free

    assert padding_free.main(["--out", str(tmp_path), "--rep-ms", "20"]) == 0
    data = json.loads((tmp_path / "padding_free.json").read_text())
    row = data["rows"][0]
    assert data["label"].startswith("CPU")
    assert abs(row["real_fraction"] - 0.6) < 0.05 and row["dense_tokens"] >= row["real_tokens"] * 0.9
    assert all(row[k] > 0 for k in ("packed_ms", "padded_ms", "dense_ms", "check_inputs_ms"))
    assert "| tiny | fp32 |" in (tmp_path / "padding_free.md").read_text()


def test_train_benchmark_smoke(bench, tmp_path):
    """benchmarks.train end to end at a toy size: each implementation's worker runs, the table is written."""
    import benchmarks.train

    argv = ["--models", "minilm", "--dtypes", "fp32", "--implementations", "fastbert", "hf-sdpa", "--batch", "2",
            "--max-length", "16", "--steps", "1", "--threads", "1", "--out", str(tmp_path), "--tag", "smoke"]
    assert benchmarks.train.main(argv) == 0
    data = json.loads((tmp_path / "train_smoke.json").read_text())
    assert [r["implementation"] for r in data["runs"]] == ["fastbert", "hf-sdpa"]
    assert all(r["step_ms"] > 0 and r["rss_peak_mb"] > 0 for r in data["runs"])
    assert "| minilm | fp32 | fastbert |" in (tmp_path / "train_smoke.md").read_text()


def test_finetune_task_data(bench):
    """The real task's data: each class's paragraphs drawn from one package only, the held-out split stratified and
    disjoint from training."""
    import benchmarks.finetune_task as ft

    texts, labels, names = ft.task(3, 10, seed=5)
    assert len(texts) == len(labels) == 30 and len(set(names)) == 3
    assert [labels.count(k) for k in range(3)] == [10, 10, 10]
    assert len(set(texts)) == 30 and all(len(t.split()) >= ft.MIN_WORDS for t in texts)
    train, test = ft.split(labels, 0.2, seed=5)
    assert not set(train) & set(test) and sorted(train + test) == list(range(30))
    assert [sum(labels[i] == k for i in test) for k in range(3)] == [2, 2, 2]


def test_finetune_task_smoke(bench, tmp_path):
    """benchmarks.finetune_task end to end at a toy size: the four runs train and are evaluated, the table is
    written (no accuracy asserted: one step on a handful of examples)."""
    import benchmarks.finetune_task as ft

    argv = ["--classes", "2", "--per-class", "4", "--epochs", "1", "--batch", "4", "--max-length", "12",
            "--out", str(tmp_path), "--tag", "smoke"]
    assert ft.main(argv) == 0
    data = json.loads((tmp_path / "finetune_task_smoke.json").read_text())
    (seed,) = data["seeds"]
    assert seed["train_examples"] == 6 and seed["test_examples"] == 2 and seed["steps"] == 2
    assert [r["run"] for r in seed["runs"]] == list(ft.RUNS)
    for r in seed["runs"]:
        assert 0 <= r["accuracy"] <= 1 and np.isfinite(r["loss"]) and len(r["step_ms_all"]) == 2
        assert r["step_ms"] >= r["forward_backward_ms"] > 0
    assert "| 0 | fastbert-bf16 |" in (tmp_path / "finetune_task_smoke.md").read_text()


def test_train_benchmark_masked_lm_smoke(bench, tmp_path):
    """benchmarks.train --head masked-lm: fastbert with the vocabulary projection on real tokens and on every padded
    position both run; the table names the head."""
    import benchmarks.train

    argv = ["--models", "minilm", "--dtypes", "fp32", "--implementations", "fastbert", "fastbert-padded-head",
            "hf-sdpa", "--head", "masked-lm", "--batch", "2", "--max-length", "16", "--steps", "1", "--threads", "1",
            "--memory-dtypes", "--out", str(tmp_path), "--tag", "smoke"]
    assert benchmarks.train.main(argv) == 0
    data = json.loads((tmp_path / "train_smoke.json").read_text())
    assert [r["implementation"] for r in data["runs"]] == ["fastbert", "fastbert-padded-head", "hf-sdpa"]
    assert all(r["step_ms"] > 0 and np.isfinite(r["losses"]).all() for r in data["runs"])
    assert "BertForMaskedLM" in (tmp_path / "train_smoke.md").read_text()


def test_train_benchmark_triton_rows(bench, tmp_path, monkeypatch):
    """benchmarks.train's fastbert-triton row (the Triton forward and backward kernels; on CPU through the
    interpreter, as the GPU rows would run them on CUDA): with dropout 0 its losses follow fastbert's PyTorch path
    step by step from the same weights and batches (with dropout the masks differ: tests/test_kernels_dropout.py)."""
    import benchmarks.train

    argv = ["--models", "minilm", "--dtypes", "fp32", "--implementations", "fastbert", "fastbert-triton", "hf-sdpa",
            "--batch", "2", "--max-length", "12", "--steps", "1", "--threads", "1", "--memory-dtypes",
            "--out", str(tmp_path), "--tag", "smoke"]
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the workers are fresh processes: set before triton is imported
    assert benchmarks.train.main(argv + ["--dropout", "0"]) == 0
    data = json.loads((tmp_path / "train_smoke.json").read_text())
    torch_run, triton_run, _ = data["runs"]
    assert triton_run["implementation"] == "fastbert-triton" and len(triton_run["losses"]) == 2
    np.testing.assert_allclose(triton_run["losses"], torch_run["losses"], rtol=1e-3)
    assert "dropout 0 for every implementation" in (tmp_path / "train_smoke.md").read_text()


@pytest.mark.parametrize("name", ["cpu_deberta", "cpu_xlnet"])
def test_family_cpu_benchmarks_smoke(bench, tmp_path, name):
    """benchmarks.cpu_deberta / cpu_xlnet (one shared harness, benchmarks.cpu_family) at a toy batch: both rows time,
    fastbert within the fp32 bound of transformers eager, results written."""
    import importlib

    module = importlib.import_module(f"benchmarks.{name}")
    argv = ["--batch", "2", "--max-length", "12", "--rounds", "1", "--out", str(tmp_path)]
    assert module.main(argv) == 0
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert list(data["rows"]) == ["hf-eager", "fastbert"]
    fast = data["rows"]["fastbert"]
    assert fast["max_abs_err"] <= fast["bound"] and fast["median_s"] > 0
    assert "| fastbert |" in (tmp_path / f"{name}.md").read_text()
