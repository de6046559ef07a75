"""The GPU check (``python -m benchmarks.gpu_check``) rehearsed on CPU, so that it cannot rot before a GPU is lent.

The dry run is the real command with tiny shapes: every stage must run, write the report the GPU run writes and
pass its correctness column. Budgets are tested by making them too small: the stage is cut (or its rows skipped)
and the run goes on, never hangs.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("build", "env", "pytest", "corpus", "grid", "sentence")
ROW_KEY = ("model", "dtype", "mix", "impl", "layout")


def gpu_check(*args, timeout=240):
    """Run ``python -m benchmarks.gpu_check ARGS`` from the checkout; (completed process, wall seconds)."""
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)
    return proc, time.monotonic() - t0


def stages(report: dict) -> dict:
    return {s["stage"]: s for s in report["stages"]}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    proc, seconds = gpu_check("--dry-run", "--out", str(out))
    return proc, out, seconds


def test_dry_run_runs_every_stage(dry_run):
    proc, out, _ = dry_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md", "stages.log"]
    assert all(p.stat().st_size < 1 << 20 for p in out.iterdir())  # the device tool takes 8 files of < 16 MiB
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["problems"] == []
    by_name = stages(report)
    assert list(by_name) == list(STAGES)
    for name, s in by_name.items():
        assert s["status"] == "ok", (name, s["note"])
        assert 0 < s["seconds"] <= s["budget_s"]
    env = by_name["env"]["result"]
    assert env["device_type"] == "cpu" and env["torch"] and env["transformers"] and env["sentence_transformers"]
    assert env["fastbert_tokenizer"] == "ok" and env["fastbert_backend"] == "torch"
    corpus = by_name["corpus"]["result"]
    assert corpus["paragraphs"] > 100 and 1000 < corpus["vocab_size"] <= 4000


def test_dry_run_pytest_stage_collected_the_gpu_tests(dry_run):
    _, out, _ = dry_run
    s = stages(json.loads((out / "gpu_check.json").read_text()))["pytest"]
    res = s["result"]
    assert "-m gpu" in s["command"] and "tests/test_kernels_gpu.py" in s["command"]
    assert res["selected"] > 50 and res["failed"] == res["error"] == 0
    assert res["passed"] + res["skipped"] == res["selected"]  # no CUDA here: skipped, each one seen in -v output


def test_dry_run_grid_rows(dry_run):
    _, out, _ = dry_run
    rows = stages(json.loads((out / "gpu_check.json").read_text()))["grid"]["result"]["rows"]
    keys = {tuple(r[k] for k in ROW_KEY) for r in rows}
    impls = (("fastbert", "padded"), ("fastbert", "ragged"), ("hf-sdpa", "padded"), ("hf-eager", "padded"))
    assert keys == {("tiny", dtype, mix, impl, layout) for dtype in ("fp16", "bf16")
                    for mix in ("paragraphs", "passages") for impl, layout in impls}
    for r in rows:
        assert r["status"] == "ok" and r["correct"] is True, r
        assert 0 < r["max_abs_err"] <= r["err_bound"] and r["err_ratio"] <= 1.5
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["real_tok_per_s"] > 0 and r["iters"] >= 3
        assert 0 < r["real_tokens"] <= r["batch"] * r["padded_length"] <= r["batch"] * r["max_length"]
        assert r["backend"] == ("torch" if r["impl"] == "fastbert" else "transformers")
    # padded batches of realistic mixes: some padding, and the same batch for every implementation of a mix. (The
    # dry run's corpus is the installed packages' prose, so a mix can come out all at the maximum length: no padding
    # in that mix, seen with an unpinned install.)
    assert all(0 <= r["pad_fraction"] < 1 for r in rows) and any(r["pad_fraction"] > 0 for r in rows)
    assert len({(r["mix"], r["real_tokens"]) for r in rows}) == 2


def test_dry_run_sentence_rows(dry_run):
    _, out, _ = dry_run
    rows = stages(json.loads((out / "gpu_check.json").read_text()))["sentence"]["result"]["rows"]
    assert [(r["impl"], r["dtype"]) for r in rows] == [
        ("sentence-transformers", "fp32"), ("sentence-transformers", "fp16"), ("fastbert", "fp16"),
        ("sentence-transformers", "bf16"), ("fastbert", "bf16")]
    for r in rows:
        assert r["status"] == "ok" and r["correct"] is True, r
        assert r["texts"] == 48 and r["texts_per_s"] > 0 and r["min_cosine"] > 0.99
    assert rows[0]["max_abs_err"] == 0  # the reference itself
    assert all(r["max_abs_err"] > 0 for r in rows[1:])  # low precision differs, within sentence-transformers' own


def test_dry_run_markdown_and_summary(dry_run):
    proc, out, _ = dry_run
    md = (out / "gpu_check.md").read_text()
    assert md.startswith("# fastbert GPU check: dry run on CPU")
    assert "| tiny | fp16 | paragraphs | fastbert | ragged |" in md and "| fastbert | bf16 | 48 |" in md
    assert "**FAIL**" not in md and "**Every selected stage finished" in md
    assert md in proc.stdout  # the same tables are printed
    assert "all selected stages ran and passed" in proc.stderr


def test_stage_over_budget_is_cut_not_hung(tmp_path):
    """pytest gets half a second and the grid three: both are killed at their budget, the grid's planned rows are
    reported as cut, and the run ends with status 1 and a full report."""
    proc, seconds = gpu_check("--dry-run", "--out", str(tmp_path), "--stages", "pytest", "grid",
                              "--budget", "pytest=0.5", "--budget", "grid=3")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    by_name = stages(report)
    assert [by_name[n]["status"] for n in STAGES] == ["skipped", "skipped", "cut", "ok", "cut", "skipped"]
    for name in ("pytest", "grid"):
        assert by_name[name]["seconds"] < by_name[name]["budget_s"] + 5
        assert "budget" in by_name[name]["note"]
    assert by_name["build"]["note"] == "not selected (--stages)"
    rows = by_name["grid"]["result"]["rows"]
    assert len(rows) == 16 and any(r["status"] == "cut" for r in rows)
    assert all(r["status"] in ("ok", "skipped", "cut") for r in rows)
    assert seconds < 60
    assert "stage pytest cut" in " ".join(report["problems"])
    assert "| pytest | cut |" in (tmp_path / "gpu_check.md").read_text()


def test_stage_whose_prerequisite_did_not_finish_is_skipped(tmp_path):
    proc, _ = gpu_check("--dry-run", "--out", str(tmp_path), "--stages", "sentence", "--budget", "corpus=0.05")
    assert proc.returncode == 1
    by_name = stages(json.loads((tmp_path / "gpu_check.json").read_text()))
    assert by_name["corpus"]["status"] == "cut"
    assert by_name["sentence"]["status"] == "skipped"
    assert by_name["sentence"]["note"] == "needs corpus, which did not finish"


class FakeDeadline:
    """Allows the first ``allowed`` checks, then refuses."""

    def __init__(self, allowed: int):
        self.allowed = allowed

    def left(self) -> float:
        return 0.0

    def allows(self, estimate_s: float) -> bool:
        self.allowed -= 1
        return self.allowed >= 0


@pytest.fixture
def grid_stage(tmp_path, monkeypatch):
    """Run the grid stage in this process on a fresh corpus; returns ``run(deadline) -> records``."""
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.gpu_check_grid import stage_grid
    from benchmarks.gpu_check_stages import Context, Recorder, stage_corpus

    stage_corpus(Context(work=tmp_path, dry_run=True, seed=1, deadline=FakeDeadline(1),
                         record=Recorder(tmp_path / "corpus.jsonl")))

    def run(deadline):
        stage_grid(Context(work=tmp_path, dry_run=True, seed=1, deadline=deadline,
                           record=Recorder(tmp_path / "grid.jsonl")))
        return [json.loads(line) for line in (tmp_path / "grid.jsonl").read_text().splitlines()]

    return run


def test_grid_skips_rows_predicted_past_its_deadline(grid_stage):
    """Allowed: the first model/dtype group, its first mix and that mix's first two rows; then everything is refused.
    Every planned row is recorded once, in plan order: two ran, the rest were skipped with the reason."""
    from benchmarks.gpu_check_grid import plan

    records = grid_stage(FakeDeadline(4))
    rows = [r for r in records if "status" in r]
    assert records[0]["plan"] == [list(k) for k in plan(dry_run=True)]
    assert [tuple(r[k] for k in ROW_KEY) for r in rows] == [tuple(k) for k in plan(dry_run=True)]
    assert [r["status"] for r in rows] == ["ok", "ok"] + ["skipped"] * (len(rows) - 2)
    assert all("over budget" in r["reason"] for r in rows[2:])


def test_grid_records_a_failed_setup_on_its_rows(grid_stage, monkeypatch):
    """A model that cannot be built (say, no usable Triton) fails its own rows, not the stage."""
    import benchmarks.gpu_check_grid as grid

    def broken(base, folder, dtype, device, backend):
        raise RuntimeError(f"no kernels for {dtype}")

    monkeypatch.setattr(grid, "build_models", broken)
    rows = [r for r in grid_stage(FakeDeadline(10**6)) if "status" in r]
    assert len(rows) == len(grid.plan(dry_run=True))
    assert {r["status"] for r in rows} == {"error"}
    assert {r["error"] for r in rows} == {"RuntimeError: no kernels for torch.float16",
                                         "RuntimeError: no kernels for torch.bfloat16"}


@pytest.mark.parametrize("args, message", [
    (["--budget", "grid"], "expected STAGE=SECONDS"),
    (["--budget", "nope=3"], "expected STAGE=SECONDS"),
    (["--budget", "grid=-1"], "a budget is a positive number of seconds"),
    (["--budget", "grid=inf"], "a budget is a positive number of seconds"),
    (["--stages", "bench"], "invalid choice"),
    (["--seed", "x"], "invalid int value"),
    (["--run-stage", "grid"], "--run-stage needs --work and --deadline"),
])
def test_bad_arguments_are_one_line(args, message):
    proc, _ = gpu_check("--dry-run", *args, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == ""


def test_no_gpu_without_dry_run_is_one_line(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc, _ = gpu_check("--out", str(tmp_path), timeout=60)
    assert proc.returncode == 1 and list(tmp_path.iterdir()) == []
    assert proc.stderr.strip().splitlines() == [
        f"gpu_check: no CUDA device visible to torch {torch.__version__}; use --dry-run to rehearse the check on CPU"]


def test_pytest_output_parsing(monkeypatch):
    """-v lines give each test's outcome; a run cut mid-way (no summary) still counts what it printed."""
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.gpu_check import parse_pytest

    cut = ("collected 9 items / 4 deselected / 5 selected\n\n"
           "tests/t.py::test_a[fp16-base-128] PASSED                                 [ 20%]\n"
           "tests/t.py::test_a[bf16-base-128] FAILED                                 [ 40%]\n"
           "tests/t.py::test_b SKIPPED (needs a CUDA GPU)                            [ 60%]\n"
           "tests/t.py::test_c ERROR                                                 [ 80%]\n")
    res = parse_pytest(cut + "FAILED tests/t.py::test_a[bf16-base-128] - AssertionError: 0.1 > 0.05\n")
    assert (res["selected"], res["passed"], res["failed"], res["skipped"], res["error"]) == (5, 1, 1, 1, 1)
    assert res["problems"][0] == {"test": "tests/t.py::test_a[bf16-base-128]", "outcome": "failed",
                                  "reason": "AssertionError: 0.1 > 0.05"}
    assert res["running"] is None
    stopped = parse_pytest(cut + "tests/t.py::test_d[fp32] ")  # killed while test_d ran
    assert stopped["running"] == "tests/t.py::test_d[fp32]" and stopped["passed"] == 1
    assert parse_pytest("")["selected"] is None


def test_gpu_budgets_fit_in_eight_minutes(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.gpu_check import STAGES as DEFINED
    from benchmarks.gpu_check import TOTAL_BUDGET_S, build_parser, budgets

    assert [s.name for s in DEFINED] == list(STAGES)
    assert sum(s.gpu_budget_s for s in DEFINED) <= TOTAL_BUDGET_S <= 8 * 60 - 10
    assert budgets(build_parser().parse_args(["--budget", "grid=240"]))["grid"] == 240


def test_readme_states_the_budgets_in_force(monkeypatch):
    """The README's GPU check table lists every stage with the budgets the code uses."""
    import re

    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.gpu_check import STAGES as DEFINED

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (\d+) s / (\d+) s \|", readme, flags=re.M)
    assert [(n, float(g), float(d)) for n, g, d in rows] == [(s.name, s.gpu_budget_s, s.dry_budget_s)
                                                             for s in DEFINED]
    total = sum(s.gpu_budget_s for s in DEFINED)
    assert f"The GPU budgets add up to {total:g} s" in readme
