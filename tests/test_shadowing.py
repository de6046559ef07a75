"""The checkout's top-level ``kernels/`` folder (installed as ``fastbert.kernels``) never shadows Hugging Face's
``kernels`` package, which transformers >= 5.25 imports whenever a model loads.

``python -m pytest``, ``python -m benchmarks.X``, ``python -c`` and scripts in the root put the checkout first on
``sys.path``. ``kernels/`` has no ``__init__.py``, so there it is at most a namespace-package portion, which the import
system ranks below any regular package of the same name anywhere on the path; ``fastbert.kernels`` is reached through
the ``fastbert/kernels`` link in the source tree and is a real folder in the wheel.
"""
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys, importlib.util
assert sys.path[0] in ('', {root!r}), sys.path[:2]
spec = importlib.util.find_spec('kernels')
origin = spec.origin if spec is not None else None
assert origin is None or not origin.startswith({kernels!r}), origin
import fastbert.kernels.attention as attention
assert attention.__file__.startswith({root!r} + '/fastbert/kernels/'), attention.__file__
import transformers
from transformers.utils import is_kernels_available
model = transformers.BertModel(transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1,
                                                      num_attention_heads=2, intermediate_size=37))
import fastbert
from sentence_transformers import SentenceTransformer
st = SentenceTransformer(fastbert.default_model_path(), device='cpu')
assert st.encode(['a text']).shape == (1, 384)
print('kernels:', origin, is_kernels_available())
"""


def test_models_load_from_the_checkout_root():
    """Hugging Face's kernels is in the dev extra (transformers >= 5.25 requires it): it must be the one found."""
    version("kernels")  # installed, or PackageNotFoundError
    proc = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), kernels=str(ROOT / "kernels") + "/")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]  # "kernels: ORIGIN AVAILABLE"
    assert line.startswith("kernels: ") and "site-packages" in line, line  # (AVAILABLE also weighs versions)


def test_kernels_folder_is_no_regular_package():
    assert not (ROOT / "kernels" / "__init__.py").exists()
    assert (ROOT / "fastbert" / "kernels").resolve() == (ROOT / "kernels").resolve()
