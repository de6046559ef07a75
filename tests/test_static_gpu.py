"""The Triton kernels compiled for A100 (sm_80) and H100 (sm_90a) without a GPU: they compile, fit the target's
shared memory, do not spill, and their products run on tensor cores.

One subprocess runs ``python -m benchmarks.static_gpu --quick`` (``TRITON_INTERPRET`` unset there: this test
process interprets, and the kernel modules shrink their config lists under the interpreter). The subset covers
every kernel, every candidate tile in fp16 and fp32 and every constexpr variant (mask, varlen, bias, activation,
EVEN_K, specialisation) at MiniLM's and BERT-base's head dims; the full matrix and its report are
``python -m benchmarks.static_gpu`` (``benchmarks/results/static/``). What this proves and what it does not: see
``benchmarks/static_gpu.py``.
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton.backends.nvidia")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"linear_kernel", "attention_fwd_kernel", "disentangled_fwd_kernel", "bias_residual_layernorm_kernel",
           "embed_layernorm_kernel", "activation_bwd_kernel", "attention_bwd_dkdv_kernel", "attention_bwd_dq_kernel",
           "bias_residual_layernorm_bwd_kernel"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "quick.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, stated (3.10 changes it)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.static_gpu", "--quick", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert out.exists(), f"static check wrote no report (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    with open(out) as f:
        return json.load(f)


def _static():
    sys.path.insert(0, ROOT)
    from benchmarks import static_gpu

    return static_gpu


def test_every_variant_compiles_fits_and_does_not_spill(report):
    static_gpu = _static()
    bad = [f"sm_{v['arch']} {v['kernel']} {v['dtype']} {static_gpu._variant_label(v)}: {'; '.join(p)}"
           for v in report["variants"] if (p := static_gpu.problems(v))]
    assert not bad, "\n".join(bad)


def test_covers_every_kernel_dtype_and_target(report):
    for arch in (80, 90):
        got = {(v["kernel"], v["dtype"]) for v in report["variants"] if v["arch"] == arch}
        assert {k for k, _ in got} == KERNELS
        for kernel in ("linear_kernel", "attention_fwd_kernel"):
            assert {d for k, d in got if k == kernel} == {"float16", "bfloat16", "float32"}, (arch, kernel)
        assert {d for k, d in got if k == "disentangled_fwd_kernel"} == {"float16", "float32"}, arch
    for launch in report["launches"]:
        assert launch["configs_kept"] >= 1, launch


def _wgmma_tile(v) -> bool:
    """Triton takes Hopper's warp-group MMA for >= 4 warps with >= 16 rows per warp (64 per warp group)."""
    m = v["meta"]
    return m["num_warps"] >= 4 and m["BLOCK_M"] >= 16 * m["num_warps"]


def test_dots_run_on_tensor_cores(report):
    """fp16/bf16 products are HMMA (sm_80) / HGMMA = wgmma (sm_90, tiles of >= 64 rows per warp group); fp32
    products are tf32x3, i.e. TF32 tensor-core MMAs (three per product), never FFMA loops."""
    for v in report["variants"]:
        if v["kernel"] not in ("linear_kernel", "attention_fwd_kernel", "disentangled_fwd_kernel"):
            continue
        forms = {op.split(".")[0] for op in v["mma"]}
        label = f"sm_{v['arch']} {v['kernel']} {v['dtype']} {v['meta']}"
        if v["arch"] == 90 and _wgmma_tile(v):
            assert "HGMMA" in forms, label
        else:
            assert "HMMA" in forms, label
        if v["dtype"] == "float32":
            assert any("TF32" in op for op in v["mma"]), label


def test_small_row_gemms_get_wgmma_on_hopper(report):
    """The pooler (rows = batch) and one short query keep tiles that use Hopper's warp-group MMA."""
    pooler = [v for v in report["variants"] if v["arch"] == 90 and v["kernel"] == "linear_kernel"
              and any(u.endswith(": pooler") for u in v["uses"]) and v["dtype"] != "float32"]
    assert pooler
    for v in pooler:
        assert any(op.startswith("HGMMA") for op in v["mma"]), v["meta"]
