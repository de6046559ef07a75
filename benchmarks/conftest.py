"""pytest-benchmark set-up for ``pytest benchmarks --benchmark-only``.

* ``benchmark``: pytest-benchmark's fixture, with a CUDA-synchronised clock when CUDA is available
  (:func:`cuda_synchronized_timer`): pytest-benchmark reads its timer before and after a loop of calls, and an
  unsynchronised clock would time kernel launches, not kernels.
* Machine info (``pytest_benchmark_update_machine_info``): GPU name, compute capability, driver and CUDA versions,
  torch/triton/transformers/fastbert versions and the git commit, so saved runs (``--benchmark-autosave``) say what
  they ran on and ``--benchmark-compare`` warns when that changes.
* ``device``: ``cuda`` when available, else ``cpu``.

The normal test run (``pytest``, ``testpaths = ["tests"]``) does not collect this folder.
"""
from __future__ import annotations

import time

import pytest
import torch


def cuda_synchronized_timer() -> float:
    """``time.perf_counter`` after waiting for the current CUDA device's queued work."""
    torch.cuda.synchronize()
    return time.perf_counter()


@pytest.fixture
def benchmark(benchmark):
    if torch.cuda.is_available():
        benchmark._timer = cuda_synchronized_timer  # read when the benchmarked function is run
        benchmark.extra_info["timer"] = "torch.cuda.synchronize() + time.perf_counter"
    return benchmark


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pytest_benchmark_update_machine_info(config, machine_info):
    from benchmarks.encoder import environment

    env = environment(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    machine_info["gpu"] = None if env["device_type"] != "cuda" else {
        k: env.get(k) for k in ("device_name", "compute_capability", "sm_count", "gpu_memory_gib", "driver",
                                "cuda_runtime", "cudnn")
    }
    machine_info["versions"] = {k: env.get(k) for k in ("torch", "triton", "transformers", "fastbert")}
    machine_info["torch_threads"] = env["cpu_threads"]
    machine_info["git_commit"] = env["git_commit"]
    machine_info["git_dirty"] = env["git_dirty"]
