"""The GPU check: one prepared command that proves and times fastbert on a lent GPU with nothing fetched.

    python -m benchmarks.gpu_check                  # on the GPU machine: every stage, at most 7m50s in all
    python -m benchmarks.gpu_check --dry-run        # the same stages on CPU with tiny shapes (CI runs this)
    python -m benchmarks.gpu_check --stages grid sentence --budget grid=300    # a second call: part of it

Stages, in order (budgets: :data:`STAGES`, also in ``--help`` and the README's GPU check table). Each runs in a
child process (its own process group) that is killed when its budget is spent and recorded as ``cut``; inside
the grid and sentence stages a row predicted to overrun is not started and is recorded as ``skipped``. Nothing
waits past a budget, so the whole check ends within the sum of the budgets (at most :data:`TOTAL_BUDGET_S` on a
GPU) plus the few seconds this parent takes.

* ``build``    -- ``python setup.py build_ext --inplace``: the C++ tokenizer for this Python, so that fastbert
  runs from the checkout (what ``pip install --no-deps --no-build-isolation -e .`` gives, without touching
  site-packages); when the extension is already newer than its sources, only an import check.
* ``env``      -- device, driver, torch / triton / transformers / sentence-transformers versions, git commit;
  that ``fastbert`` and its tokenizer import.
* ``pytest``   -- ``python -m pytest -m gpu -v`` on the test files holding GPU tests; each test's outcome is read
  from the ``-v`` lines, so a cut run still reports what ran.
* ``corpus``   -- a WordPiece vocabulary trained offline on prose already on the machine
  (:mod:`benchmarks.gpu_check_stages`), and the token count of every paragraph.
* ``grid``     -- the encoder grid (:mod:`benchmarks.gpu_check_grid`); needs ``corpus``.
* ``sentence`` -- ``SentenceEncoder.encode`` vs ``SentenceTransformer.encode`` on a synthetic
  sentence-transformers folder (:mod:`benchmarks.gpu_check_sentence`); needs ``corpus``.

Correctness (every grid and sentence row): ``err`` = max |output - reference| where the reference is
transformers / sentence-transformers in float32 (TF32 off) on the same inputs; a row passes when
``err <= k x max(err of transformers / sentence-transformers itself in the row's dtype, 2e-5 x max(1, |ref|))``
with ``k`` = :data:`benchmarks.encoder.TOLERANCE_K` (1.5).

Output (``--out``, else ``$OUT`` when set, else ``benchmarks/results/<gpu-name>/``; a dry run without either
writes to a new temporary folder): ``gpu_check.json`` (everything), ``gpu_check.md`` (the tables printed at the
end) and ``stages.log`` (each stage's command and output, capped at :data:`LOG_CAP` bytes per stage). Both
reports are rewritten after every stage, so a run killed from outside keeps what it finished. Exit status: 0
when every selected stage finished and every test and row passed, 1 otherwise, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .gpu_check_stages import ROW_FIELDS, row_id

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOG_CAP = 200_000  # bytes of one stage's output kept in stages.log: the first quarter and the last three
KILL_GRACE_S = 3.0  # after SIGTERM at the budget, SIGKILL this much later


@dataclass(frozen=True)
class Stage:
    name: str
    gpu_budget_s: float
    dry_budget_s: float
    needs: tuple[str, ...]
    what: str


STAGES = (
    Stage("build", 60, 120, (), "python setup.py build_ext --inplace (the C++ tokenizer, incremental)"),
    Stage("env", 20, 60, (), "device, driver and library versions; fastbert and its tokenizer import"),
    Stage("pytest", 120, 60, (), "python -m pytest -m gpu -v on the files holding GPU tests"),
    Stage("corpus", 20, 60, (), "WordPiece vocabulary trained offline on local prose; paragraph token counts"),
    Stage("grid", 180, 90, ("corpus",), "encoder: fastbert padded/ragged vs transformers SDPA/eager"),
    Stage("sentence", 60, 90, ("corpus",), "SentenceEncoder.encode vs SentenceTransformer.encode"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
CHILD_STAGES = ("env", "corpus", "grid", "sentence")  # run as `python -m benchmarks.gpu_check --run-stage NAME`
TOTAL_BUDGET_S = 470  # the GPU budgets add up to at most this: 8 minutes less 10 s for this parent


# ----------------------------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _budget(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or name not in STAGE_NAMES:
        raise argparse.ArgumentTypeError(f"expected STAGE=SECONDS with STAGE one of {', '.join(STAGE_NAMES)}, "
                                         f"got {text!r}")
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise argparse.ArgumentTypeError(f"a budget is a positive number of seconds, got {text!r}")
    return name, seconds


def stages_help() -> str:
    """The stage table of ``--help``: name, GPU and dry-run budgets, what it does."""
    lines = ["stages (budget on a GPU / in a dry run):"]
    lines += [f"  {s.name:<9} {s.gpu_budget_s:>4g} s / {s.dry_budget_s:>3g} s  {s.what}" for s in STAGES]
    total = sum(s.gpu_budget_s for s in STAGES)
    lines.append(f"A stage is killed at its budget and the run goes on; GPU budgets add up to {total:g} s.")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmarks.gpu_check", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Prove and time fastbert on a GPU in under 8 minutes, or rehearse it on CPU (--dry-run).",
                epilog=stages_help())
    p.add_argument("--dry-run", action="store_true", help="run every stage on CPU with tiny shapes")
    p.add_argument("--out", type=Path, help="output folder (default: $OUT, else benchmarks/results/<gpu-name>/)")
    p.add_argument("--stages", nargs="+", choices=STAGE_NAMES, metavar="STAGE",
                   help=f"run only these ({', '.join(STAGE_NAMES)}); grid and sentence bring corpus along")
    p.add_argument("--budget", type=_budget, action="append", default=[], metavar="STAGE=SECONDS",
                   help="change one stage's budget (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="weights and batches (default 0)")
    # Internal: one stage in a child process, writing JSON lines to WORK/<stage>.jsonl.
    p.add_argument("--run-stage", choices=CHILD_STAGES, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return p


def budgets(args) -> dict[str, float]:
    """Seconds per stage: the GPU or dry-run default, then ``--budget`` overrides."""
    out = {s.name: (s.dry_budget_s if args.dry_run else s.gpu_budget_s) for s in STAGES}
    out.update(dict(args.budget))
    return out


def selected_stages(args) -> list[str]:
    """The stages to run, in pipeline order, prerequisites added."""
    chosen = set(args.stages or STAGE_NAMES)
    for s in STAGES:
        if s.name in chosen:
            chosen.update(s.needs)
    return [n for n in STAGE_NAMES if n in chosen]


def output_dir(args) -> Path:
    """``--out``, else ``$OUT``, else a fresh temporary folder (dry run) or ``benchmarks/results/<gpu-name>/``."""
    if args.out is not None:
        return args.out
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"])
    if args.dry_run:
        return Path(tempfile.mkdtemp(prefix="fastbert-gpu-check-dry-"))
    import torch

    from .encoder import device_slug

    return RESULTS / device_slug(torch.device("cuda"))


def cuda_problem() -> str | None:
    """Why this is no GPU run (None when torch sees a CUDA device)."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"no CUDA device visible to torch {torch.__version__}; "
            "use --dry-run to rehearse the check on CPU")


# ----------------------------------------------------------------------------------------------------------------
# Running one stage
# ----------------------------------------------------------------------------------------------------------------

def gpu_test_files() -> list[str]:
    """The test files that hold GPU tests (``pytest.mark.gpu``), relative to the checkout. Only these are
    collected: other test files import packages a GPU image may lack (ray, hypothesis, the bundled model)."""
    files = sorted((REPO / "tests").glob("test_*.py"))
    return [str(f.relative_to(REPO)) for f in files if "pytest.mark.gpu" in f.read_text(encoding="utf-8")]


def extension_up_to_date() -> bool:
    """Whether a compiled fastbert extension for this Python sits in the checkout, newer than ``setup.py`` and
    everything in ``csrc/``."""
    built = list((REPO / "fastbert").rglob(f"*{sysconfig.get_config_var('EXT_SUFFIX')}"))
    sources = [REPO / "setup.py", *(p for p in (REPO / "csrc").rglob("*") if p.is_file())]
    return bool(built) and min(p.stat().st_mtime for p in built) > max(p.stat().st_mtime for p in sources)


BUILD = ["setup.py", "build_ext", "--inplace"]
IMPORT_CHECK = ["-c", "import fastbert; fastbert.BertTokenizer"]


def stage_command(name: str, args, work: Path, deadline: float) -> list[str] | None:
    """The command line of one stage (None: nothing to run). ``build`` compiles only when the extension is
    missing or older than its sources (setuptools would recompile whenever its own build/ folder is missing, as
    after ``pip install -e .``); otherwise it checks that the extension imports."""
    if name == "build":
        return [sys.executable, *(IMPORT_CHECK if extension_up_to_date() else BUILD)]
    if name == "pytest":
        files = gpu_test_files()
        return [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "--tb=short",
                "-rfE", "--color=no", *files] if files else None
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--run-stage", name, "--work", str(work),
           "--deadline", repr(deadline), "--seed", str(args.seed)]
    return cmd + (["--dry-run"] if args.dry_run else [])


def child_env(dry_run: bool) -> dict:
    """The stages' environment: this one; in a dry run OpenMP threads also sleep while they wait
    (``OMP_WAIT_POLICY=PASSIVE`` unless set), since spinning threads on a loaded CPU made tiny forwards 100x slower."""
    env = dict(os.environ)
    if dry_run:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


@dataclass
class Finished:
    returncode: int | None  # None: killed at the budget
    seconds: float
    output: str


def run_with_budget(cmd: list[str], budget_s: float, log_path: Path, env: dict | None = None) -> Finished:
    """Run ``cmd`` in the checkout (environment ``env``), in its own process group, output to ``log_path``; at
    ``budget_s`` send the group SIGTERM, then SIGKILL after :data:`KILL_GRACE_S`."""
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        try:
            rc = proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _end_group(proc)
    return Finished(rc, time.monotonic() - t0, log_path.read_text(encoding="utf-8", errors="replace"))


def _end_group(proc: subprocess.Popen) -> None:
    """Stop what is left of ``proc``'s process group (the child and anything it started): SIGTERM, then SIGKILL
    :data:`KILL_GRACE_S` later. A group that is already gone is left alone."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def read_records(work: Path, name: str) -> list[dict]:
    """The JSON lines a child stage wrote (a line cut short by a kill is dropped)."""
    path = work / f"{name}.jsonl"
    records = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


# ----------------------------------------------------------------------------------------------------------------
# What each stage's output says
# ----------------------------------------------------------------------------------------------------------------

_PYTEST_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b(.*)$")


def parse_pytest(output: str) -> dict:
    """Per-test outcomes from ``pytest -v`` output: counts, the failed/errored test ids with pytest's one-line
    reason (from ``-rfE``), and ``running``: the test whose line has no outcome yet (the one a cut stopped)."""
    outcomes: dict[str, str] = {}
    lines = output.splitlines()
    for line in lines:
        m = _PYTEST_LINE.match(line.strip())
        if m:
            outcomes[m.group(1)] = m.group(2).lower()
    last = lines[-1].strip() if lines else ""
    running = last if re.fullmatch(r"\S+::\S+", last) else None
    counts = {k: sum(v == k for v in outcomes.values()) for k in ("passed", "failed", "error", "skipped")}
    m = re.search(r"collected (\d+) items?(?: / (\d+) deselected)?", output)
    reasons = dict(re.findall(r"^(?:FAILED|ERROR) (\S+::\S+) - (.*)$", output, flags=re.M))
    bad = [{"test": t, "outcome": o, "reason": reasons.get(t, "")[:300]}
           for t, o in outcomes.items() if o in ("failed", "error")]
    collected = int(m.group(1)) if m else None
    deselected = int(m.group(2)) if m and m.group(2) else 0
    return {"collected": collected, "deselected": deselected, "selected": None if m is None else collected - deselected,
            **counts, "problems": bad[:50], "running": running}


def stage_note(name: str, status: str, result, finished: Finished, budget_s: float) -> str:
    """One line for the stage table."""
    parts = []
    if status == "cut":
        parts.append(f"over its {budget_s:g} s budget, cut at {finished.seconds:.0f} s")
    elif status == "failed":
        lines = [ln for ln in finished.output.splitlines() if ln.strip()]
        parts.append(f"exit {finished.returncode}: {lines[-1][:200] if lines else 'no output'}")
    if name == "pytest" and result:
        parts.append(", ".join(f"{result[k]} {k}" for k in ("passed", "failed", "error", "skipped") if result[k])
                     or "no test ran")
        if status == "cut" and result["running"]:
            parts.append(f"running: {result['running']}")
    if name in ("grid", "sentence") and result:
        parts.append(_rows_note(result["rows"]))
    return "; ".join(p for p in parts if p)


def _rows_note(rows: list[dict]) -> str:
    """``"14/16 rows ran, 14 correct, 2 skipped"``."""
    ran = [r for r in rows if r.get("status") == "ok"]
    correct = sum(1 for r in ran if r.get("correct"))
    other = Counter(str(r.get("status")) for r in rows if r.get("status") != "ok")
    rest = "".join(f", {n} {s}" for s, n in sorted(other.items()))
    return f"{len(ran)}/{len(rows)} rows ran, {correct} correct{rest}"


def stage_result(name: str, work: Path, finished: Finished):
    """The stage's payload for the report: parsed pytest output, or the child's records (rows it planned but did
    not record are ``cut`` when the stage was killed, ``not run`` when it ended early)."""
    if name == "build":
        return None
    if name == "pytest":
        return parse_pytest(finished.output)
    records = read_records(work, name)
    if name in ("env", "corpus"):
        return records[-1] if records else None
    plan = next((r["plan"] for r in records if "plan" in r), [])
    settings = next((r["settings"] for r in records if "settings" in r), None)
    rows = {_row_key(r): r for r in records if "status" in r}
    killed = finished.returncode is None
    missing = {"status": "cut", "reason": "the stage was cut at its budget"} if killed else {
        "status": "not run", "reason": f"the stage ended (exit {finished.returncode}) before this row"}
    for key in plan:
        rows.setdefault(tuple(key), {**row_id(key), **missing})
    return {"settings": settings, "rows": [rows[tuple(k)] for k in plan] if plan else list(rows.values())}


def _row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ROW_FIELDS)


def stage_status(finished: Finished) -> str:
    """``cut`` (killed at its budget), ``ok`` (exit 0) or ``failed`` (pytest: a test failed or none was found)."""
    if finished.returncode is None:
        return "cut"
    return "ok" if finished.returncode == 0 else "failed"


def run_stage(stage: Stage, args, work: Path, budget_s: float, log: Path) -> dict:
    """Run one stage within its budget; its record for the report."""
    started = time.time()
    cmd = stage_command(stage.name, args, work, started + budget_s)
    if cmd is None:
        return {"stage": stage.name, "status": "skipped", "seconds": 0.0, "budget_s": budget_s,
                "note": "no test file holds pytest.mark.gpu", "result": None}
    finished = run_with_budget(cmd, budget_s, work / f"{stage.name}.out", child_env(args.dry_run))
    result = stage_result(stage.name, work, finished)
    status = stage_status(finished)
    _append_log(log, stage.name, cmd, finished)
    note = stage_note(stage.name, status, result, finished, budget_s)
    if stage.name == "build" and cmd[1:] == IMPORT_CHECK:
        note = "; ".join(filter(None, ["extension newer than its sources: not rebuilt, import checked", note]))
    return {"stage": stage.name, "what": stage.what, "status": status, "seconds": round(finished.seconds, 2),
            "budget_s": budget_s, "returncode": finished.returncode, "command": " ".join(["python", *cmd[1:]]),
            "note": note, "result": result}


def _append_log(log: Path, name: str, cmd: list[str], finished: Finished) -> None:
    text = finished.output
    if len(text.encode()) > LOG_CAP:
        head, tail = text[: LOG_CAP // 4], text[-3 * LOG_CAP // 4:]
        text = f"{head}\n[... {len(finished.output) - len(head) - len(tail)} characters left out ...]\n{tail}"
    rc = "cut at its budget" if finished.returncode is None else f"exit {finished.returncode}"
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"===== {name}: {' '.join(cmd)}\n===== {rc} after {finished.seconds:.1f} s\n{text}\n")


# ----------------------------------------------------------------------------------------------------------------
# The run and its report
# ----------------------------------------------------------------------------------------------------------------

def verdict(results: dict) -> list[str]:
    """What did not pass (empty: everything selected ran and passed)."""
    problems = []
    for s in results["stages"]:
        if s["status"] != "ok" and s.get("selected", True):
            problems.append(f"stage {s['stage']} {s['status']}" + (f" ({s['note']})" if s["note"] else ""))
        res = s.get("result") or {}
        if s["stage"] == "pytest" and s["status"] == "ok" and (res.get("failed") or res.get("error")):
            problems.append(f"pytest: {res['failed']} failed, {res['error']} errors")  # exit 0 all the same
        for r in res.get("rows", []) if s["stage"] in ("grid", "sentence") else []:
            if r.get("status") == "ok" and not r.get("correct"):
                problems.append(f"{s['stage']} row {'/'.join(str(x) for x in _row_key(r) if x)} is wrong")
            elif r.get("status") in ("error", "oom", "not run"):
                problems.append(f"{s['stage']} row {'/'.join(str(x) for x in _row_key(r) if x)}: {r['status']}")
    return problems


def write_report(results: dict, out: Path) -> str:
    """Write gpu_check.json and gpu_check.md into ``out``; return the markdown."""
    from .gpu_check_report import markdown

    tmp = out / "gpu_check.json.part"
    tmp.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    tmp.replace(out / "gpu_check.json")
    md = markdown(results)
    (out / "gpu_check.md").write_text(md, encoding="utf-8")
    return md


def run(args, out: Path) -> dict:
    """Every stage in order within its budget; the report is rewritten after each."""
    times = budgets(args)
    chosen = selected_stages(args)
    results = {"check": "fastbert gpu_check", "schema": 1, "dry_run": args.dry_run, "seed": args.seed,
               "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "budgets_s": times, "total_budget_s": sum(times[n] for n in chosen), "stages": []}
    log = out / "stages.log"
    log.write_text("", encoding="utf-8")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastbert-gpu-check-") as tmp:
        work = Path(tmp)
        for stage in STAGES:
            results["stages"].append(_one_stage(stage, args, work, chosen, results["stages"], times[stage.name], log))
            results["seconds"] = round(time.monotonic() - t0, 1)
            results["problems"] = verdict(results)
            write_report(results, out)
    return results


def _one_stage(stage: Stage, args, work: Path, chosen: list[str], done: list[dict], budget_s: float,
               log: Path) -> dict:
    record = {"stage": stage.name, "status": "skipped", "seconds": 0.0, "budget_s": budget_s, "result": None}
    if stage.name not in chosen:
        return {**record, "selected": False, "note": "not selected (--stages)"}
    failed = [d["stage"] for d in done if d["stage"] in stage.needs and d["status"] != "ok"]
    if failed:
        return {**record, "note": f"needs {', '.join(failed)}, which did not finish"}
    print(f"gpu_check: {stage.name} (budget {budget_s:g} s) ...", file=sys.stderr, flush=True)
    return run_stage(stage, args, work, budget_s, log)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_stage:
        from .gpu_check_stages import child_main

        return child_main(args)
    if not args.dry_run:
        problem = cuda_problem()
        if problem:
            print(f"gpu_check: {problem}", file=sys.stderr)
            return 1
    out = output_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"gpu_check: cannot create the output folder {out}: {e.strerror}", file=sys.stderr)
        return 1
    try:
        results = run(args, out)
    except KeyboardInterrupt:
        print("gpu_check: interrupted", file=sys.stderr)
        return 130
    print((out / "gpu_check.md").read_text(encoding="utf-8"))
    problems = results["problems"]
    print(f"gpu_check: {'all selected stages ran and passed' if not problems else '; '.join(problems[:5])}"
          f" ({results['seconds']:.0f} s); report in {out}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
