"""The GPU the autotuned kernels are compiled for, as their config filters see it.

The filters ask Triton's active driver, not ``torch.cuda``: at run time that is the current CUDA device, and in the
static check (``benchmarks/static_gpu.py``) it is a stand-in for the A100 or H100 being compiled for -- so the
configs a real launch keeps and the configs the static check compiles come from the same code.
"""
from __future__ import annotations

from dataclasses import dataclass

from triton.runtime.driver import driver


@dataclass(frozen=True)
class Target:
    """``capability``: 80 for sm_80 (A100), 90 for sm_90 (H100), ...; ``smem``: opt-in shared memory per block."""

    capability: int
    smem: int

    @property
    def wgmma(self) -> bool:
        """Hopper's warp-group MMA (Triton uses it for dots with >= 64 rows per warp group of 4 warps)."""
        return self.capability == 90


def current_target() -> Target:
    """The device Triton compiles for now."""
    active = driver.active
    arch = active.get_current_target().arch
    props = active.utils.get_device_properties(active.get_current_device())
    return Target(arch if isinstance(arch, int) else 0, int(props["max_shared_mem"]))
