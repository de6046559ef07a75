"""End-to-end encoder benchmark: fastbert against transformers' BertModel.

    python -m benchmarks.encoder                       # full grid on CUDA; a tiny CPU grid without a GPU
    python -m benchmarks.encoder --quick               # a small CUDA grid
    python -m benchmarks.encoder --models bert-base --dtypes fp16 --batches 1 32 --lengths 128 --dists real

Implementations (``--impls``):

* ``fastbert``        -- ``fastbert.BertModel`` (op-seam backend ``auto``: Triton on CUDA, PyTorch on CPU; the
  resolved backend is stored with every row).
* ``hf-eager``        -- ``transformers.BertModel``, ``attn_implementation="eager"``.
* ``hf-sdpa``         -- ``transformers.BertModel``, ``attn_implementation="sdpa"``.
* ``hf-sdpa-compile`` -- the SDPA model under ``torch.compile(dynamic=True)``. Compile time is not in the timings:
  every row's ``warmup_s`` is the first call at that shape (compile or recompile, Triton autotuning for fastbert),
  and ``compile_s`` per model/dtype is the first call overall.

All implementations of a model share the same weights (random for BERT-base/large, the real checkpoint for
MiniLM), remapped into fastbert with :func:`fastbert.encoder.weights.remap_state_dict`.

Inputs: random token ids (``[CLS] ... [SEP]``, padding id 0, right padding, token types 0). Each row's lengths come
from a length distribution -- ``full`` (all ``max_length``), ``uniform`` (U[0.2 max, max], mean 0.6 max) or ``real``
(packed real text, :mod:`benchmarks.corpus`) -- and the batch is padded to its longest sequence, as a tokenizer
with ``padding=True`` does.

Metrics per row: p50 and p99 time per batch (CUDA events around each call on GPU; ``time.perf_counter`` on CPU),
sequences/s and real (non-padding) tokens/s from the p50, peak memory (CUDA), model FLOP utilisation against the
measured matmul peak (:data:`FLOP_FORMULA`; CPU rows use a measured CPU fp32 matmul), and a correctness check of
the output (see :func:`check_output`).

Results go to ``--out`` (default ``benchmarks/results/<device>/``): ``encoder.json`` (everything), ``encoder.md``
(tables), ``encoder_<model>_<dtype>_L<max>.png`` (real tokens/s against batch), and the directory's ``README.md``
rebuilt by :mod:`benchmarks.report`.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import math
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from fastbert.encoder.backends.cpu_features import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

IMPLS = ("fastbert", "hf-eager", "hf-sdpa", "hf-sdpa-compile")
DISTS = ("full", "uniform", "real")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Published shapes; "tiny" is the CPU smoke-test model. vocab 30522 and 512 positions throughout.
MODELS = {
    "minilm": None,  # the real all-MiniLM-L6-v2 checkpoint (384 hidden, 6 layers, 12 heads, 1536 FFN)
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
}

GPU_GRID = dict(models=["minilm", "bert-base", "bert-large"], dtypes=["fp16", "bf16"], batches=[1, 8, 32, 128],
                lengths=[128, 512], dists=list(DISTS), impls=list(IMPLS))
QUICK_GPU_GRID = dict(models=["minilm", "bert-base"], dtypes=["fp16"], batches=[1, 32], lengths=[128, 512],
                      dists=list(DISTS), impls=list(IMPLS))
CPU_GRID = dict(models=["tiny"], dtypes=["fp32"], batches=[1, 4], lengths=[16], dists=list(DISTS),
                impls=["fastbert", "hf-eager", "hf-sdpa"])

FLOP_FORMULA = (
    "FLOPs = layers * [2*T*(4*H^2 + 2*H*I) + 4*H*sum_i(L_i^2)], T = sum_i L_i real tokens of the batch "
    "(L_i = length of sequence i, H = hidden, I = intermediate). The first term is the Q/K/V, output and FFN "
    "matmuls, the second QK^T and PV. Embeddings, LayerNorm, softmax, GELU and the pooler are not counted; "
    "padding is not counted, so work spent on padding lowers an implementation's utilisation."
)
TOLERANCE_K = 1.5  # STYLE 12: err(impl vs HF fp32) <= k * err(HF same dtype vs HF fp32)


# ----------------------------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------------------------

def device_slug(device: torch.device) -> str:
    """``cpu``, or the GPU's name as a folder name (``nvidia-h100-80gb-hbm3``)."""
    if device.type != "cuda":
        return device.type
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def _command(args: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device: torch.device) -> dict:
    """Device, driver and library versions, git commit and date."""
    import transformers

    import fastbert

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _command(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(_command(["git", "status", "--porcelain", "--untracked-files=no"])),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": triton_version,
        "transformers": transformers.__version__,
        "fastbert": fastbert.__version__,
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "device_type": device.type,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            device_name=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            sm_count=props.multi_processor_count,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda_runtime=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            driver=_command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i",
                             str(device.index or 0)]),
        )
    else:
        env.update(device_name=env["cpu"], cuda_runtime=None, driver=None)
    return env


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device, *, warmup_ms: float, rep_ms: float,
               min_iters: int = 5, max_iters: int = 1000) -> list[float]:
    """Milliseconds per call of ``fn``, one sample per call: CUDA events around each call on GPU (the time the
    GPU stream takes, launch gaps included), ``time.perf_counter`` on CPU. ``fn`` should have run once already."""
    # warm-up, which also estimates one call's time
    sync(device)
    start, n = time.perf_counter(), 0
    while n < 2 or (time.perf_counter() - start) * 1e3 < warmup_ms:
        fn()
        sync(device)
        n += 1
    estimate_ms = (time.perf_counter() - start) * 1e3 / n
    iters = int(min(max_iters, max(min_iters, rep_ms / max(estimate_ms, 1e-3))))
    if device.type == "cuda":
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(device)
        return [s.elapsed_time(e) for s, e in zip(starts, ends)]
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def matmul_peak(device: torch.device, dtype: torch.dtype) -> dict:
    """Measured dense matmul throughput in TFLOP/s: the denominator of the utilisation column.

    CUDA: a square 8192 matmul timed with ``triton.testing.do_bench`` (median), TF32 off for fp32.
    CPU: a square 1024 fp32 matmul timed with ``time.perf_counter`` (median of 10).
    """
    if device.type == "cuda":
        from triton.testing import do_bench

        n = 8192
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        with _no_tf32():
            ms = do_bench(lambda: a @ b, warmup=100, rep=500, return_mode="median")
        method = f"triton.testing.do_bench, median, {n}x{n}x{n} {_dtype_name(dtype)} matmul"
    else:
        n = 1024
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        ms = float(np.median(time_calls(lambda: a @ b, device, warmup_ms=50, rep_ms=200, min_iters=10)))
        method = f"time.perf_counter, median, {n}x{n}x{n} {_dtype_name(dtype)} matmul on {torch.get_num_threads()} threads"
    return {"tflops": round(2 * n**3 / (ms * 1e-3) / 1e12, 3), "method": method}


@contextlib.contextmanager
def _no_tf32():
    """fp32 matmuls in full fp32 (no TF32) inside the block: the fp32 reference and the fp32 peak."""
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


# ----------------------------------------------------------------------------------------------------------------
# Inputs, FLOPs, correctness
# ----------------------------------------------------------------------------------------------------------------

def sample_lengths(dist: str, batch: int, max_length: int, rng: np.random.Generator) -> np.ndarray:
    """Sequence lengths (``[CLS]``/``[SEP]`` included) for one batch."""
    if dist == "full":
        return np.full(batch, max_length, dtype=np.int64)
    if dist == "uniform":
        return rng.integers(max(2, round(0.2 * max_length)), max_length, size=batch, endpoint=True)
    if dist == "real":
        from . import corpus

        return corpus.sample_lengths(max_length, batch, rng)
    raise ValueError(f"unknown length distribution {dist!r}; expected one of {DISTS}")


def make_batch(lengths: np.ndarray, vocab_size: int, rng: np.random.Generator, device: torch.device):
    """input_ids, attention_mask, token_type_ids ``[B, max(lengths)]``: right-padded random ids."""
    batch, seqlen = len(lengths), int(lengths.max())
    ids = rng.integers(1000, vocab_size, size=(batch, seqlen))
    mask = np.arange(seqlen)[None, :] < lengths[:, None]
    ids[:, 0] = 101  # [CLS]
    ids[np.arange(batch), lengths - 1] = 102  # [SEP]
    ids[~mask] = 0  # [PAD]
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=torch.long)  # noqa: E731
    return to(ids), to(mask), torch.zeros(batch, seqlen, dtype=torch.long, device=device)


def model_flops(lengths: np.ndarray, hidden: int, intermediate: int, layers: int) -> float:
    """:data:`FLOP_FORMULA` for one batch with these real lengths."""
    lengths = lengths.astype(np.float64)
    tokens = lengths.sum()
    per_layer = 2 * tokens * (4 * hidden**2 + 2 * hidden * intermediate) + 4 * hidden * (lengths**2).sum()
    return float(layers * per_layer)


def max_abs_err(out: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    """Max |out - ref| in float32 over real (non-padding) positions; inf if anything there is not finite."""
    d = (out.float() - ref.float()).abs()[mask.bool()]
    return float(d.max()) if torch.isfinite(d).all() else math.inf


def check_output(err: float, ref_err: float, ref: torch.Tensor, mask: torch.Tensor) -> dict:
    """STYLE 12: pass when ``err <= k * max(ref_err, floor)``. ``ref_err`` is HF eager's own error in the same dtype
    (against HF eager fp32); ``floor`` is the fp32 parity bound ``2e-5 * max(1, max|ref|)`` so that fp32 rows,
    where HF's own error is ~0, are judged against the tests' fp32 bound."""
    floor = 2e-5 * max(1.0, float(ref.float().abs()[mask.bool()].max()))
    bound = TOLERANCE_K * max(ref_err, floor)
    return {
        "max_abs_err": err,
        "hf_same_dtype_err": ref_err,
        "err_ratio": (err / ref_err) if ref_err > 0 else None,
        "err_bound": bound,
        "correct": bool(err <= bound),
    }


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------

def hf_base_model(name: str, seed: int):
    """The fp32 CPU ``transformers.BertModel`` every implementation is copied from."""
    import transformers

    import fastbert

    if name == "minilm":
        return transformers.BertModel.from_pretrained(fastbert.default_model_path(), attn_implementation="eager")
    return random_bert(MODELS[name], seed)


def random_bert(shape: dict, seed: int):
    """A random-weight fp32 CPU ``transformers.BertModel`` (seeded; BERT's vocabulary of 30522, 512 positions, two
    token types, no dropout) of ``shape``: ``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``,
    ``intermediate_size``."""
    import transformers

    config = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **shape)
    torch.manual_seed(seed)
    return transformers.BertModel(config)


def build_impl(impl: str, base, device: torch.device, dtype: torch.dtype, validate: bool):
    """One implementation, in eval mode on ``device``/``dtype``, with ``base``'s weights. Returns a callable
    ``(ids, mask, types) -> last_hidden_state`` and the module (for its weight count)."""
    import fastbert
    from fastbert.encoder.weights import remap_state_dict

    if impl == "fastbert":
        model = fastbert.BertModel(fastbert.BertConfig.from_hf(base.config), add_pooling_layer=base.pooler is not None)
        model.load_state_dict(remap_state_dict(base.state_dict(), model.config), strict=True)
        model = model.to(device=device, dtype=dtype).eval()
        model.validate_inputs = validate
        return (lambda ids, mask, types: model(ids, mask, types).last_hidden_state), model
    if impl not in IMPLS:
        raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")
    model = copy.deepcopy(base).to(device=device, dtype=dtype).eval()
    model.set_attn_implementation("eager" if impl == "hf-eager" else "sdpa")
    run = torch.compile(model, dynamic=True) if impl == "hf-sdpa-compile" else model
    return (lambda ids, mask, types: run(input_ids=ids, attention_mask=mask,
                                         token_type_ids=types).last_hidden_state), model


def _mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


# ----------------------------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Settings:
    device: torch.device
    warmup_ms: float
    rep_ms: float
    latency_min_iters: int
    seed: int
    validate: bool


def first_call(fn, inputs, device: torch.device) -> tuple[torch.Tensor, float]:
    """The output of the first call at this shape, and its wall time in seconds (compilation, autotuning)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn(*inputs)
    sync(device)
    return out, time.perf_counter() - t0


def measure(fn, inputs, device: torch.device, settings: Settings, batch: int) -> dict:
    """Peak memory of one call, then the timed calls. ``fn`` has already run once at this shape."""
    peak_extra = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        out = fn(*inputs)
        sync(device)
        peak_extra = torch.cuda.max_memory_allocated(device) - before
        del out
    # batch 1 is the latency row: enough samples for a p99
    min_iters = settings.latency_min_iters if batch == 1 else 5
    times = time_calls(lambda: fn(*inputs), device, warmup_ms=settings.warmup_ms, rep_ms=settings.rep_ms,
                       min_iters=min_iters)
    return {"peak_extra_bytes": peak_extra, "times_ms": times}


def run_model_dtype(model_name: str, dtype_name: str, grid: dict, settings: Settings, peaks: dict, progress) -> tuple[list, dict]:
    """All rows of one model in one dtype."""
    from fastbert.encoder import ops

    device, dtype = settings.device, DTYPES[dtype_name]
    base = hf_base_model(model_name, settings.seed).eval()
    cfg = base.config
    impls = {}
    for impl in grid["impls"]:
        fn, module = build_impl(impl, base, device, dtype, settings.validate)
        impls[impl] = (fn, sum(p.numel() * p.element_size() for p in module.parameters()))
    reference, _ = build_impl("hf-eager", base, device, torch.float32, settings.validate)
    if dtype == torch.float32:
        same_dtype = reference
    else:
        same_dtype = impls["hf-eager"][0] if "hf-eager" in impls else build_impl("hf-eager", base, device, dtype,
                                                                                   settings.validate)[0]
    del base
    backend = ops.resolve_backend(None, device)
    section = {"model": model_name, "dtype": dtype_name, "hidden": cfg.hidden_size, "layers": cfg.num_hidden_layers,
               "heads": cfg.num_attention_heads, "intermediate": cfg.intermediate_size,
               "weights": "all-MiniLM-L6-v2 checkpoint" if model_name == "minilm" else "random (seeded)",
               "fastbert_backend": backend, "compile_s": None}

    rows = []
    for max_length in grid["lengths"]:
        if max_length > cfg.max_position_embeddings:
            progress.update(len(grid["dists"]) * len(grid["batches"]) * len(impls))
            continue
        for dist in grid["dists"]:
            for batch in grid["batches"]:
                rng = np.random.default_rng([settings.seed, batch, max_length, DISTS.index(dist)])
                lengths = sample_lengths(dist, batch, max_length, rng)
                inputs = make_batch(lengths, cfg.vocab_size, rng, device)
                mask = inputs[1]
                try:
                    with torch.inference_mode(), _no_tf32():
                        ref = reference(*inputs)
                        ref_err = max_abs_err(same_dtype(*inputs), ref, mask)
                except torch.cuda.OutOfMemoryError:  # the fp32 eager reference is the hungriest model here
                    ref = None
                    torch.cuda.empty_cache()
                flops = model_flops(lengths, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
                tokens = int(lengths.sum())
                for impl, (fn, weight_bytes) in impls.items():
                    progress.set_postfix_str(f"{model_name} {dtype_name} L{max_length} {dist} B{batch} {impl}")
                    row = {"model": model_name, "dtype": dtype_name, "max_length": max_length, "dist": dist,
                           "batch": batch, "impl": impl, "padded_length": int(lengths.max()),
                           "real_tokens": tokens, "mean_length": round(tokens / batch, 1),
                           "backend": backend if impl == "fastbert" else "transformers", "flops": flops}
                    try:
                        if ref is None:
                            raise RuntimeError("the HF eager fp32 reference ran out of memory on this batch")
                        with torch.inference_mode():
                            out, warmup_s = first_call(fn, inputs, device)
                            row.update(check_output(max_abs_err(out, ref, mask), ref_err, ref, mask))
                            del out
                            m = measure(fn, inputs, device, settings, batch)
                            m["warmup_s"] = warmup_s
                    except torch.cuda.OutOfMemoryError:
                        row.update(status="oom", correct=None)
                        torch.cuda.empty_cache()
                    except Exception as e:  # a broken implementation is a row, not the end of the run
                        row.update(status="error", error=f"{type(e).__name__}: {e}"[:500], correct=None)
                    else:
                        row.update(_summarise(m, batch, tokens, flops, peaks[dtype_name]["tflops"], weight_bytes))
                        if impl == "hf-sdpa-compile" and section["compile_s"] is None:
                            section["compile_s"] = row["warmup_s"]
                    rows.append(row)
                    progress.update(1)
                del ref
    return rows, section


def _summarise(m: dict, batch: int, tokens: int, flops: float, peak_tflops: float, weight_bytes: int) -> dict:
    times = np.asarray(m["times_ms"])
    p50 = float(np.percentile(times, 50))
    tflops = flops / (p50 * 1e-3) / 1e12
    out = {
        "status": "ok",
        "iters": int(times.size),
        "warmup_s": round(m["warmup_s"], 4),
        "p50_ms": p50,
        "p99_ms": float(np.percentile(times, 99)),
        "mean_ms": float(times.mean()),
        "seq_per_s": batch / (p50 * 1e-3),
        "real_tok_per_s": tokens / (p50 * 1e-3),
        "tflops": tflops,
        "mfu": tflops / peak_tflops,
        "weights_mib": _mib(weight_bytes),
    }
    if m["peak_extra_bytes"] is not None:
        out["peak_extra_mib"] = _mib(m["peak_extra_bytes"])
        out["peak_mem_mib"] = _mib(weight_bytes + m["peak_extra_bytes"])
    return out


def _add_speedups(rows: list[dict]) -> None:
    """``speedup_vs_hf_sdpa``: p50 of HF SDPA over this row's p50, for the same model/dtype/shape/lengths."""
    key = lambda r: (r["model"], r["dtype"], r["max_length"], r["dist"], r["batch"])  # noqa: E731
    sdpa = {key(r): r["p50_ms"] for r in rows if r["impl"] == "hf-sdpa" and r.get("status") == "ok"}
    for r in rows:
        if r.get("status") == "ok" and key(r) in sdpa:
            r["speedup_vs_hf_sdpa"] = sdpa[key(r)] / r["p50_ms"]


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.encoder",
        description="End-to-end encoder benchmark: fastbert vs transformers (eager, SDPA, SDPA + torch.compile). "
                    "Without a GPU it runs a tiny CPU grid, labelled CPU.")
    p.add_argument("--device", help="cuda, cuda:1 or cpu (default: cuda when available)")
    p.add_argument("--models", nargs="+", choices=list(MODELS), help="default: minilm bert-base bert-large (CUDA), tiny (CPU)")
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), help="default: fp16 bf16 (CUDA), fp32 (CPU)")
    p.add_argument("--batches", nargs="+", type=int, help="default: 1 8 32 128 (CUDA), 1 4 (CPU)")
    p.add_argument("--lengths", nargs="+", type=int, help="maximum lengths; default: 128 512 (CUDA), 16 (CPU)")
    p.add_argument("--dists", nargs="+", choices=list(DISTS), help="length distributions; default: all")
    p.add_argument("--impls", nargs="+", choices=list(IMPLS),
                   help="default: all (CUDA), all but hf-sdpa-compile (CPU)")
    p.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/<device>/)")
    p.add_argument("--quick", action="store_true", help="CUDA: a small grid (minilm, bert-base; fp16; batch 1, 32)")
    p.add_argument("--warmup-ms", type=float, help="warm-up per row (default 100 CUDA, 20 CPU)")
    p.add_argument("--rep-ms", type=float, help="timed calls per row, in ms (default 500 CUDA, 200 with --quick, 100 CPU)")
    p.add_argument("--latency-iters", type=int, help="minimum timed calls at batch 1 (default 200 CUDA, 20 CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-validate", action="store_true", help="turn off fastbert's input value checks (a host sync)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p


def resolve_grid(args, device: torch.device) -> dict:
    """The grid to run: the device's default (or --quick), overridden by explicit flags."""
    default = (QUICK_GPU_GRID if args.quick else GPU_GRID) if device.type == "cuda" else CPU_GRID
    grid = {k: list(getattr(args, k) or v) for k, v in default.items()}
    if device.type != "cuda" and any(d != "fp32" for d in grid["dtypes"]):
        raise ValueError(f"on CPU the encoder benchmark runs fp32 only, got --dtypes {grid['dtypes']}")
    if any(b < 1 for b in grid["batches"]) or any(n < 2 for n in grid["lengths"]):
        raise ValueError("batches must be >= 1 and lengths >= 2")
    return grid


def run(args) -> tuple[dict, Path]:
    """Run the grid described by parsed ``args``; write JSON, markdown, plots and README into the output folder.
    Returns the results and that folder."""
    from tqdm import tqdm

    from . import corpus, report

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device} asked for, but CUDA is not available")
    if device.type not in ("cuda", "cpu"):
        raise ValueError(f"unsupported device {device}; use cuda or cpu")
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    gpu = device.type == "cuda"
    grid = resolve_grid(args, device)
    settings = Settings(
        device=device,
        warmup_ms=args.warmup_ms if args.warmup_ms is not None else (100 if gpu else 20),
        rep_ms=args.rep_ms if args.rep_ms is not None else ((200 if args.quick else 500) if gpu else 100),
        latency_min_iters=args.latency_iters if args.latency_iters is not None else (200 if gpu else 20),
        seed=args.seed,
        validate=not args.no_validate,
    )
    out_dir = args.out or RESULTS / device_slug(device)
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = environment(device)
    # Tokenize the real-text corpus before anything is timed (the tokenizer's thread pool stays out of the way).
    corpus_stats = corpus.summary(grid["lengths"]) if "real" in grid["dists"] else None
    peaks = {d: matmul_peak(device, DTYPES[d]) for d in grid["dtypes"]}
    total = len(grid["models"]) * len(grid["dtypes"]) * len(grid["lengths"]) * len(grid["dists"]) * \
        len(grid["batches"]) * len(grid["impls"])
    rows, sections = [], []
    # torch.compile(dynamic=True) still recompiles for new shape classes (batch 1 is specialised): allow enough.
    dynamo = _recompile_limit(64) if "hf-sdpa-compile" in grid["impls"] else contextlib.nullcontext()
    with tqdm(total=total, desc=f"encoder ({env['device_name']})", unit="row", disable=args.no_progress) as bar, dynamo:
        for model_name in grid["models"]:
            for dtype_name in grid["dtypes"]:
                r, s = run_model_dtype(model_name, dtype_name, grid, settings, peaks, bar)
                rows += r
                sections.append(s)
                if "hf-sdpa-compile" in grid["impls"]:
                    _reset_compiled()
                if gpu:
                    torch.cuda.empty_cache()
    _add_speedups(rows)

    results = {
        "benchmark": "encoder",
        "schema": 1,
        "label": ("GPU" if gpu else "CPU") + f": {env['device_name']}"
                 + (", tiny random model" if "tiny" in grid["models"] else ""),
        "environment": env,
        "timing": ("CUDA events around each call (torch.cuda.Event), after warm-up" if gpu
                   else "time.perf_counter around each call, after warm-up (CPU wall clock)"),
        "settings": {"warmup_ms": settings.warmup_ms, "rep_ms": settings.rep_ms,
                     "latency_min_iters": settings.latency_min_iters, "seed": settings.seed,
                     "fastbert_validate_inputs": settings.validate, "tolerance_k": TOLERANCE_K},
        "grid": grid,
        "peak": peaks,
        "flop_formula": FLOP_FORMULA,
        "padding": "right padding to the longest sequence of each batch; random token ids; token types 0",
        "length_distributions": {
            "full": "every sequence max_length",
            "uniform": "lengths uniform on [0.2*max_length, max_length] (mean 0.6*max_length)",
            "real": "lengths of real text packed into passages of <= max_length tokens (benchmarks/corpus.py)",
        },
        "corpus": corpus_stats,
        "correctness": ("max |out - HF eager fp32| over real positions of last_hidden_state; pass when "
                        f"<= {TOLERANCE_K} x max(HF eager same-dtype error, 2e-5*max(1, max|ref|))"),
        "memory": ("peak_extra_mib: torch.cuda.max_memory_allocated during one call minus memory allocated before "
                   "it (activations, workspace, output); peak_mem_mib = that + this implementation's weights"
                   if gpu else "not measured on CPU"),
        "models": sections,
        "rows": rows,
    }
    with open(out_dir / "encoder.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=_json_default)
    (out_dir / "encoder.md").write_text(report.encoder_markdown(results), encoding="utf-8")
    if not args.no_plots:
        report.plot_encoder(results, out_dir)
    report.write_readme(out_dir)
    return results, out_dir


def _reset_compiled() -> None:
    """Drop torch.compile's graphs (and the models they hold) before the next model."""
    import torch._dynamo

    torch._dynamo.reset()


def _recompile_limit(n: int):
    """``torch._dynamo.config.patch`` of the recompile limit (``cache_size_limit`` in older torch)."""
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    return torch._dynamo.config.patch(**{name: max(n, getattr(torch._dynamo.config, name))})


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results, out = run(args)
    except ValueError as e:
        print(f"benchmarks.encoder: {e}", file=sys.stderr)
        return 2
    bad = [r for r in results["rows"] if r.get("status") != "ok" or not r.get("correct")]
    print(f"{results['label']}: {len(results['rows'])} rows written to {out}"
          + (f"; {len(bad)} rows failed or were wrong (see the 'ok' column)" if bad else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
