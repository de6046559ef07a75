"""The README's Python examples run as written (in order, in one namespace, in a scratch folder), except the ones
that need hardware or a cluster this machine lacks (several CUDA devices, Ray)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
NEEDS_MORE = ("cuda:0", "ray.", "OpenAI(")  # OpenAI(: a running server (tests/test_serve.py runs that one)


def python_blocks() -> list[str]:
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def _has_accelerate() -> bool:
    import importlib.util

    return importlib.util.find_spec("accelerate") is not None


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = python_blocks()
    # transformers.Trainer needs accelerate, which fastbert does not depend on: that example runs where it is installed
    needs = NEEDS_MORE + (() if _has_accelerate() else ("Trainer(",))
    runnable = [b for b in blocks if not any(word in b for word in needs)]
    assert len(blocks) >= 5 and len(runnable) >= 4, "the README's examples moved: update this test"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in runnable:
        try:
            exec(compile(block, README, "exec"), namespace)
        except Exception as e:
            pytest.fail(f"README example failed with {type(e).__name__}: {e}\n{block}")
    assert namespace["emb"].shape == (2, 384)
    assert tuple(namespace["logits"].shape) == (2, 2)
    assert namespace["step"] == 1 and namespace["loss"].requires_grad  # the fine-tuning loop ran
    assert tuple(namespace["out"].last_hidden_state.shape) == (15, 384)
    assert os.path.isfile(tmp_path / "out" / "config.json")
