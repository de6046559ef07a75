"""The package's layout holds (ARCHITECTURE.md): arrows point one way, no import cycles, functions read in one sitting.

- The import contracts in pyproject.toml (``[tool.importlinter]``: the wings are layered cli -> embeddings ->
  encoder | tokenizers, the tokenizers use nothing of the encoder, nothing inside goes through a deprecated path),
  checked with import-linter.
- No import cycle anywhere in the package, function-level and ``TYPE_CHECKING`` imports counted (grimp's graph).
- ``kernels/`` (``fastbert.kernels``) imports nothing of the rest of fastbert.
- No function over 80 lines and no class over 300 without the reason in a comment right above it.
- ARCHITECTURE.md names every module of the package.
"""
import ast
import subprocess
import sys
from pathlib import Path

import grimp
import networkx

ROOT = Path(__file__).resolve().parents[1]


def _sources():
    for base in ("fastbert", "kernels"):
        for path in sorted((ROOT / base).rglob("*.py")):
            if base == "fastbert" and "kernels" in path.relative_to(ROOT / base).parts:
                continue  # the link to kernels/: read once, from there
            yield path


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--config", "pyproject.toml", "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def test_no_import_cycles():
    sys.path.insert(0, str(ROOT))
    try:
        graph = grimp.build_graph("fastbert", exclude_type_checking_imports=False, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))
    edges = networkx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if not module.startswith(imported + "."):  # a package's own __init__ is no arrow
                edges.add_edge(module, imported)
    cycles = [sorted(c) for c in networkx.strongly_connected_components(edges) if len(c) > 1]
    assert not cycles, cycles
    assert len(graph.modules) > 30  # the graph really was read


def test_kernels_import_nothing_of_fastbert():
    for path in (ROOT / "kernels").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("fastbert"), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("fastbert") for a in node.names), path.name


def test_long_definitions_say_why():
    long = []
    for path in _sources():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            limit = 80 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else \
                300 if isinstance(node, ast.ClassDef) else 0
            if limit and node.end_lineno - node.lineno + 1 > limit:
                first = min([d.lineno for d in node.decorator_list] + [node.lineno])
                if not lines[first - 2].strip().startswith("#"):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def test_architecture_md_names_every_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    missing = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        if path.name == "__init__.py":
            continue
        if rel.stem not in text:
            missing.append(str(rel))
    assert not missing, missing
