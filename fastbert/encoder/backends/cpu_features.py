"""What the CPU this runs on can do, read at run time (never assumed), and the choices made from it.

* :func:`cpu_features` -- the ISA extensions that matter for fastbert's CPU GEMMs, from ``/proc/cpuinfo`` flags
  (Linux) and ``torch.backends.cpu.get_cpu_capability()`` (the vector ISA PyTorch's own kernels dispatch to).
* :func:`reduced_precision_choice` -- the reduced-precision mode ``fastbert.quantize.quantize(model, "auto")`` takes:
  ``"bfloat16"`` where the CPU has AMX-BF16 tiles (oneDNN's bf16 GEMMs then run several times faster than
  fp32), else None: keep float32. Measured on a Sapphire Rapids class Xeon with oneDNN capped below AMX
  (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` / ``AVX2_VNNI``), neither bf16 nor int8 beat float32 by
  enough to pay for their error (bf16 without AMX was slower than fp32; without any bf16 instructions ~5x
  slower), so there "auto" changes nothing. (On an AMD EPYC with AVX512-BF16 and no AMX, the mixed bf16 mode
  encoded real text 1.6x faster than float32 on one thread; ``"auto"`` does not take it there yet, since the
  Intel measurement above says the opposite for the same instructions: ask for ``"bfloat16"`` explicitly.)
  A cap on oneDNN's ISA (``ONEDNN_MAX_CPU_ISA`` below AMX) counts as no AMX, since oneDNN then never uses the tiles.
"""
from __future__ import annotations

import functools
import os

import torch

# /proc/cpuinfo flag names of the extensions that decide GEMM speed, in the order reported.
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The ``flags`` line of ``/proc/cpuinfo`` (empty where there is none, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def cpu_features() -> dict:
    """``{"model": ..., "torch_capability": "AVX512", "flags": [...present ones of FLAGS...], "amx_bf16": bool,
    "int8_dot": bool, "threads": torch's intra-op threads}``."""
    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "flags": [f for f in FLAGS if f in flags],
        "amx_bf16": has_amx_bf16(),
        "int8_dot": bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "threads": torch.get_num_threads(),
    }


def has_amx_bf16() -> bool:
    """AMX-BF16 tiles present, oneDNN allowed to use them (:func:`onednn_isa_cap`), and oneDNN able to run bf16."""
    return ("amx_bf16" in cpu_flags() and onednn_allows_amx()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def onednn_isa_cap() -> str | None:
    """The ISA cap oneDNN reads from ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``), upper-cased;
    None where neither is set. oneDNN dispatches to nothing above it, so a cap below AMX turns AMX off for every
    oneDNN GEMM this process runs."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip()
        if value:
            return value.upper()
    return None


def onednn_allows_amx() -> bool:
    """False when :func:`onednn_isa_cap` names an ISA without AMX (``AVX512_CORE_BF16``, ``AVX2_VNNI``, ...); oneDNN's
    AMX levels all have ``AMX`` in their names, and ``ALL``/``DEFAULT`` mean no cap."""
    cap = onednn_isa_cap()
    return cap is None or cap in ("ALL", "DEFAULT") or "AMX" in cap


def reduced_precision_choice() -> str | None:
    """``"bfloat16"`` on CPUs with AMX-BF16, else None (stay float32; see the module docstring)."""
    return "bfloat16" if has_amx_bf16() else None
