"""Microbenchmarks of fastbert's Triton kernels against PyTorch, on a CUDA GPU.

    python -m benchmarks.bench_kernels            # everything
    python -m benchmarks.bench_kernels --quick    # fewer shapes

Each kernel is timed with ``triton.testing.do_bench`` (CUDA events, median of repeated runs, L2 flushed between
runs) and reported against the machine's own measured ceilings: matmul peak (a large fp16 ``torch.matmul``) for
compute-bound kernels, copy bandwidth (a large device-to-device ``Tensor.copy_``) for memory-bound ones.

* attention -- head dim 64, sequence 512, fp16, 40% right padding: the Triton kernel on the padded batch (key mask;
  padded key blocks skipped) and on the packed batch (``cu_seqlens``) vs ``F.scaled_dot_product_attention`` with the
  same boolean padding mask; plus the unpadded case vs SDPA without a mask. TFLOP/s count real tokens only:
  ``4 * heads * D * sum_i L_i^2``.
* bias + residual + LayerNorm -- vs eager PyTorch (``x + b + r`` then ``F.layer_norm``); GB/s count the minimum
  traffic (read x and residual, write y) against copy bandwidth.
* embeddings + LayerNorm -- vs eager PyTorch (three lookups, two adds, ``F.layer_norm``).
* GEMM + bias + GELU at BERT-base/large FFN shapes -- vs bare cuBLAS ``torch.mm`` (no bias, no activation: the
  floor) and vs ``torch.addmm`` + ``F.gelu`` (what the fused epilogue replaces). ``2 M N K`` FLOPs.

Results: ``benchmarks/results/<device>/kernels.json`` (rows + environment) and ``kernels.md`` (a table), and the
folder's README rebuilt by :mod:`benchmarks.report`. Without CUDA this prints that nothing was measured and exits 0.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------------------------------
# Timing and ceilings
# ----------------------------------------------------------------------------------------------------------------

def time_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds per call, CUDA-event timed (``triton.testing.do_bench``; warm-up/autotune excluded)."""
    import triton.testing

    fn()  # compile / autotune outside the timing
    torch.cuda.synchronize()
    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def matmul_peak_tflops() -> float:
    """Measured fp16 tensor-core ceiling: an 8192^3 ``torch.matmul``."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    return 2 * 8192**3 / time_ms(lambda: torch.matmul(a, b)) / 1e9


def copy_bandwidth_gbs() -> float:
    """Measured device memory bandwidth: a 1 GiB tensor copy (reads + writes counted)."""
    src = torch.empty(2**29, device="cuda", dtype=torch.float16)
    dst = torch.empty_like(src)
    return 2 * src.numel() * src.element_size() / time_ms(lambda: dst.copy_(src)) / 1e6


def _row(kernel: str, shape: str, impl: str, ms: float, *, flops: float | None = None, nbytes: float | None = None,
         peak_tflops: float, bandwidth_gbs: float, baseline_ms: float | None = None) -> dict:
    tflops = flops / ms / 1e9 if flops is not None else None
    gbs = nbytes / ms / 1e6 if nbytes is not None else None
    return {
        "kernel": kernel, "shape": shape, "impl": impl, "ms": round(ms, 5),
        "tflops": None if tflops is None else round(tflops, 2),
        "pct_matmul_peak": None if tflops is None else round(100 * tflops / peak_tflops, 1),
        "gbs": None if gbs is None else round(gbs, 1),
        "pct_copy_bw": None if gbs is None else round(100 * gbs / bandwidth_gbs, 1),
        "speedup_vs_torch": None if baseline_ms is None else round(baseline_ms / ms, 3),
    }


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------

def bench_attention(peak: float, bw: float, quick: bool) -> list[dict]:
    from fastbert.kernels import attention as attn

    rows = []
    dtype, heads, head_dim, seqlen = torch.float16, 12, 64, 512
    for batch in ([32] if quick else [8, 32, 64]):
        for padding in (0.4, 0.0):
            length = seqlen - int(round(padding * seqlen))
            lengths = torch.full((batch,), length, dtype=torch.int64)
            key_mask = torch.arange(seqlen)[None, :] < lengths[:, None]  # [B, S]
            key_mask = key_mask.cuda()
            qkv = torch.randn(batch, seqlen, 3, heads, head_dim, device="cuda", dtype=dtype)  # fused projection
            q, k, v = qkv.unbind(2)  # [B, S, heads, D] strided views, as the model passes them
            flops = 4 * heads * head_dim * float((lengths**2).sum())
            shape = f"B={batch} S={seqlen} h={heads} D={head_dim} pad={int(100 * padding)}%"

            # SDPA in its [B, heads, S, D] layout, views of the same projection (what the torch backend does)
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
            sdpa_mask = key_mask[:, None, None, :] if padding else None
            ms_sdpa = time_ms(lambda: F.scaled_dot_product_attention(qt, kt, vt, attn_mask=sdpa_mask))
            ms_pad = time_ms(lambda: attn.attention(q, k, v, key_mask if padding else None))
            common = dict(flops=flops, peak_tflops=peak, bandwidth_gbs=bw)
            rows.append(_row("attention", shape, "torch sdpa" + (" + bool mask" if padding else ""), ms_sdpa,
                             **common))
            rows.append(_row("attention", shape, "triton padded" + (" + key mask" if padding else ""), ms_pad,
                             baseline_ms=ms_sdpa, **common))
            if padding:
                packed = qkv[key_mask]  # [T, 3, heads, D]
                pq, pk, pv = packed.unbind(1)
                cu = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32).cuda()
                ms_var = time_ms(lambda: attn.attention_varlen(pq, pk, pv, cu, seqlen))
                rows.append(_row("attention", shape, "triton packed (cu_seqlens)", ms_var, baseline_ms=ms_sdpa,
                                 **common))
    return rows


def bench_layernorm(peak: float, bw: float, quick: bool) -> list[dict]:
    from fastbert.kernels import layernorm as ln

    rows = []
    dtype = torch.float16
    for tokens, hidden in ([(64 * 128, 768)] if quick else [(64 * 128, 384), (64 * 128, 768), (64 * 512, 1024)]):
        x, r = (torch.randn(tokens, hidden, device="cuda", dtype=dtype) for _ in range(2))
        b, w, lb = (torch.randn(hidden, device="cuda", dtype=dtype) for _ in range(3))
        nbytes = 3 * tokens * hidden * x.element_size()  # read x, read residual, write y
        shape = f"N={tokens} H={hidden}"
        ms_torch = time_ms(lambda: F.layer_norm(x + b + r, (hidden,), w, lb, 1e-12))
        ms_tri = time_ms(lambda: ln.bias_residual_layernorm(x, b, r, w, lb, 1e-12))
        common = dict(nbytes=nbytes, peak_tflops=peak, bandwidth_gbs=bw)
        rows.append(_row("bias+residual+layernorm", shape, "torch eager", ms_torch, **common))
        rows.append(_row("bias+residual+layernorm", shape, "triton", ms_tri, baseline_ms=ms_torch, **common))
    return rows


def bench_embedding(peak: float, bw: float, quick: bool) -> list[dict]:
    from fastbert.kernels import embedding as emb

    rows = []
    dtype, hidden = torch.float16, 768
    for batch, seqlen in ([(64, 128)] if quick else [(64, 128), (32, 512)]):
        word = torch.randn(30522, hidden, device="cuda", dtype=dtype)
        pos_t = torch.randn(512, hidden, device="cuda", dtype=dtype)
        tt_t = torch.randn(2, hidden, device="cuda", dtype=dtype)
        w, b = torch.randn(hidden, device="cuda", dtype=dtype), torch.randn(hidden, device="cuda", dtype=dtype)
        ids = torch.randint(0, 30522, (batch, seqlen), device="cuda")
        tts = torch.zeros(batch, seqlen, dtype=torch.long, device="cuda")
        pos = torch.arange(seqlen, device="cuda").expand(batch, seqlen)
        nbytes = 2 * batch * seqlen * hidden * word.element_size()  # gather word rows, write y (small tables cached)
        shape = f"B={batch} S={seqlen} H={hidden}"

        def eager():
            h = F.embedding(ids, word) + F.embedding(tts, tt_t) + F.embedding(pos, pos_t)
            return F.layer_norm(h, (hidden,), w, b, 1e-12)

        ms_torch = time_ms(eager)
        ms_tri = time_ms(lambda: emb.embed_layernorm(ids, tts, pos, word, pos_t, tt_t, w, b, 1e-12))
        common = dict(nbytes=nbytes, peak_tflops=peak, bandwidth_gbs=bw)
        rows.append(_row("embeddings+layernorm", shape, "torch eager", ms_torch, **common))
        rows.append(_row("embeddings+layernorm", shape, "triton", ms_tri, baseline_ms=ms_torch, **common))
    return rows


GEMM_SHAPES = {
    # name: (tokens, K, N, activation)
    "bert-base ffn up": (64 * 128, 768, 3072, "gelu"),
    "bert-base ffn down": (64 * 128, 3072, 768, None),
    "bert-base qkv": (64 * 128, 768, 2304, None),
    "bert-large ffn up": (32 * 256, 1024, 4096, "gelu"),
    "bert-large ffn down": (32 * 256, 4096, 1024, None),
    "bert-base ffn up, 512 tokens": (512, 768, 3072, "gelu"),
}


def bench_gemm(peak: float, bw: float, quick: bool) -> list[dict]:
    from fastbert.kernels import gemm

    rows = []
    names = ["bert-base ffn up", "bert-base ffn down"] if quick else list(GEMM_SHAPES)
    for dtype in (torch.float16, torch.bfloat16):
        for name in names:
            tokens, k, n, act = GEMM_SHAPES[name]
            x = torch.randn(tokens, k, device="cuda", dtype=dtype)
            w = torch.randn(n, k, device="cuda", dtype=dtype) / math.sqrt(k)
            b = torch.randn(n, device="cuda", dtype=dtype)
            wt = w.t()
            flops = 2.0 * tokens * n * k
            shape = f"{name}: M={tokens} K={k} N={n} {str(dtype).removeprefix('torch.')}"
            ms_mm = time_ms(lambda: torch.mm(x, wt))
            if act == "gelu":
                ms_eager = time_ms(lambda: F.gelu(torch.addmm(b, x, wt)))
                eager_name = "torch addmm + gelu"
            else:
                ms_eager = time_ms(lambda: torch.addmm(b, x, wt))
                eager_name = "torch addmm"
            ms_tri = time_ms(lambda: gemm.linear(x, w, b, act))
            common = dict(flops=flops, peak_tflops=peak, bandwidth_gbs=bw)
            rows.append(_row("gemm", shape, "cublas mm (no bias/act)", ms_mm, **common))
            rows.append(_row("gemm", shape, eager_name, ms_eager, **common))
            rows.append(_row("gemm", shape, f"triton linear({act or 'bias'})", ms_tri, baseline_ms=ms_eager,
                             **common))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

def markdown(results: dict) -> str:
    env = results["environment"]
    lines = [
        "# Triton kernel microbenchmarks", "",
        f"{env.get('device_name', 'cuda')} · torch {env.get('torch')} · triton {env.get('triton')} · "
        f"commit {str(env.get('git_commit'))[:10]}{' (dirty)' if env.get('git_dirty') else ''} · {env.get('date')}",
        "",
        f"Measured ceilings: fp16 matmul {results['matmul_peak_tflops']:.0f} TFLOP/s, "
        f"copy bandwidth {results['copy_bandwidth_gbs']:.0f} GB/s. Times are medians (CUDA events, do_bench).",
        "",
        "| kernel | shape | impl | ms | TFLOP/s | % matmul peak | GB/s | % copy BW | speed-up vs torch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda x: "–" if x is None else f"{x}"  # noqa: E731
    for r in results["rows"]:
        lines.append(
            f"| {r['kernel']} | {r['shape']} | {r['impl']} | {r['ms']:.4f} | {fmt(r['tflops'])} | "
            f"{fmt(r['pct_matmul_peak'])} | {fmt(r['gbs'])} | {fmt(r['pct_copy_bw'])} | {fmt(r['speedup_vs_torch'])} |"
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False, out_dir: Path | None = None) -> tuple[dict, Path]:
    """Measure everything on the current CUDA device; write ``kernels.json`` and ``kernels.md``."""
    from benchmarks.encoder import device_slug, environment

    device = torch.device("cuda", torch.cuda.current_device())
    peak, bw = matmul_peak_tflops(), copy_bandwidth_gbs()
    print(f"measured ceilings: fp16 matmul {peak:.0f} TFLOP/s, copy {bw:.0f} GB/s", flush=True)
    rows = []
    for bench in (bench_attention, bench_layernorm, bench_embedding, bench_gemm):
        part = bench(peak, bw, quick)
        for r in part:
            print(f"{r['kernel']:<24} {r['shape']:<56} {r['impl']:<30} {r['ms']:.4f} ms", flush=True)
        rows += part
    results = {
        "environment": environment(device),
        "matmul_peak_tflops": round(peak, 1),
        "copy_bandwidth_gbs": round(bw, 1),
        "rows": rows,
    }
    out_dir = out_dir or RESULTS / device_slug(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kernels.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (out_dir / "kernels.md").write_text(markdown(results), encoding="utf-8")
    from benchmarks import report

    report.write_readme(out_dir)
    return results, out_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_kernels", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/<device>/)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_kernels: no CUDA device -- the Triton kernels are only benchmarked on a GPU "
              "(the CPU interpreter is a correctness tool, not a speed one). Nothing measured.")
        return 0
    _, out_dir = run(args.quick, args.out)
    print(f"wrote {out_dir / 'kernels.json'} and {out_dir / 'kernels.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
