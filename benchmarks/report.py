"""Benchmark reports: markdown tables and plots from the benchmarks' JSON files.

    python -m benchmarks.report                            # rebuild README.md in every benchmarks/results/<device>/
    python -m benchmarks.report benchmarks/results/cpu --plots   # one folder, and redraw the encoder plots

A results folder's ``README.md`` is generated, never edited by hand: it gathers ``encoder.json`` (this package's
end-to-end benchmark), ``kernels.json`` (Triton kernel microbenchmarks) and ``tokenizer.json`` (C++ tokenizer vs
HF; CPU, so a GPU folder points at ``../cpu/``). Each part the folder lacks is listed as "not run".
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).resolve().parent / "results"

IMPL_ORDER = ("fastbert", "hf-eager", "hf-sdpa", "hf-sdpa-compile")


# ----------------------------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------------------------

def _num(x, digits: int = 3) -> str:
    """Compact number: 3 significant digits, thousands with k/M suffixes."""
    if x is None:
        return "–"
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.{digits}g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.{digits}g}k"
    if ax >= 1 or ax == 0:
        return f"{x:.{digits}g}" if ax < 1000 else f"{x:.0f}"
    return f"{x:.{digits}g}"


def _err(x) -> str:
    if x is None:
        return "–"
    return "inf" if math.isinf(x) else f"{x:.2e}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _impl_rank(impl: str) -> int:
    return IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER)


def _is_cpu(results: dict) -> bool:
    return results["environment"].get("device_type") != "cuda"


# ----------------------------------------------------------------------------------------------------------------
# Encoder
# ----------------------------------------------------------------------------------------------------------------

def environment_lines(results: dict) -> list[str]:
    env = results["environment"]
    lines = [f"- **Device**: {env.get('device_name')}"]
    if env.get("device_type") == "cuda":
        lines.append(f"- **GPU**: compute capability {env.get('compute_capability')}, {env.get('sm_count')} SMs, "
                     f"{env.get('gpu_memory_gib')} GiB; driver {env.get('driver')}, CUDA runtime "
                     f"{env.get('cuda_runtime')}, cuDNN {env.get('cudnn')}")
    lines.append(f"- **Host CPU**: {env.get('cpu')} (torch threads: {env.get('cpu_threads')})")
    lines.append(f"- **Versions**: torch {env.get('torch')}, triton {env.get('triton')}, transformers "
                 f"{env.get('transformers')}, fastbert {env.get('fastbert')}, Python {env.get('python')}")
    commit = env.get("git_commit") or "unknown"
    lines.append(f"- **Commit**: `{commit}`" + (" (with uncommitted changes)" if env.get("git_dirty") else "")
                 + f"; run {env.get('date')}")
    return lines


def encoder_markdown(results: dict, level: int = 1) -> str:
    """The full encoder report: setup, then one table per model/dtype with every row, then the plots."""
    h = "#" * level
    cpu = _is_cpu(results)
    out = [f"{h} Encoder benchmark — {results['label']}", ""]
    if cpu:
        out += ["> **CPU run.** These are CPU wall-clock numbers (smoke-test grid, usually a tiny random model); "
                "fastbert runs its PyTorch backend here, not its Triton kernels. They say nothing about GPU "
                "performance.", ""]
    out += environment_lines(results)
    peaks = ", ".join(f"{d} {p['tflops']:.3g} TFLOP/s ({p['method']})" for d, p in results["peak"].items())
    s = results["settings"]
    out += [
        f"- **Timing**: {results['timing']}; warm-up {s['warmup_ms']:g} ms, then ≥{s['rep_ms']:g} ms of calls "
        f"(≥{s['latency_min_iters']} calls at batch 1). Throughput uses the median (p50) time per batch.",
        f"- **Measured matmul peak** (the MFU denominator): {peaks}",
        f"- **FLOPs**: {results['flop_formula']}",
        f"- **Correctness** (`ok` column): {results['correctness']}. `err / HF` is the max error over HF's own "
        "same-dtype error (blank when that is 0, i.e. fp32).",
        f"- **Inputs**: {results['padding']}. fastbert validates inputs: {s['fastbert_validate_inputs']}.",
        f"- **Memory**: {results['memory']}",
        "- **Length distributions**: " + "; ".join(f"`{k}`: {v}" for k, v in results["length_distributions"].items()),
    ]
    corpus = results.get("corpus")
    if corpus:
        stats = "; ".join(f"max {m}: {v['passages']} passages, mean {v['mean']} ({v['mean_over_max']:.0%} of max), "
                          f"p10/p50/p90 {v['p10']}/{v['p50']}/{v['p90']}" for m, v in corpus["lengths"].items())
        out.append(f"- **Real-text corpus**: {corpus['files']} files, {corpus['paragraphs']} prose paragraphs "
                   f"({corpus['sources']}); {corpus['packing']}. {stats}")
    out.append("")

    for sec in results["models"]:
        rows = [r for r in results["rows"] if r["model"] == sec["model"] and r["dtype"] == sec["dtype"]]
        rows.sort(key=lambda r: (r["max_length"], _dist_rank(r["dist"]), r["batch"], _impl_rank(r["impl"])))
        compile_note = f"; torch.compile first call {sec['compile_s']:.1f} s" if sec.get("compile_s") else ""
        out += [f"{h}# {sec['model']} · {sec['dtype']}" + (" · CPU" if cpu else ""), "",
                f"hidden {sec['hidden']}, {sec['layers']} layers, {sec['heads']} heads, FFN {sec['intermediate']}; "
                f"weights: {sec['weights']}; fastbert backend: `{sec['fastbert_backend']}`{compile_note}.", ""]
        header = ["max len", "dist", "batch", "impl", "mean len", "p50 ms", "p99 ms", "seq/s", "real tok/s",
                  "× HF SDPA", "TFLOP/s", "MFU", "peak MiB", "warm-up s", "max err", "err / HF", "ok"]
        body = []
        for r in rows:
            if r.get("status") != "ok":
                body.append([r["max_length"], r["dist"], r["batch"], r["impl"], r["mean_length"]]
                            + [r.get("status", "?").upper()] + ["–"] * 10 + [_failure(r)])
                continue
            body.append([
                r["max_length"], r["dist"], r["batch"], r["impl"], r["mean_length"], _num(r["p50_ms"]),
                _num(r["p99_ms"]), _num(r["seq_per_s"]), _num(r["real_tok_per_s"]),
                _num(r.get("speedup_vs_hf_sdpa"), 3), _num(r["tflops"]), _pct(r["mfu"]),
                _num(r.get("peak_mem_mib")), _num(r["warmup_s"]), _err(r.get("max_abs_err")),
                _num(r.get("err_ratio"), 2), "yes" if r.get("correct") else "**NO**",
            ])
        out += [table(header, body), ""]
        for m in sorted({r["max_length"] for r in rows}):
            name = plot_name(sec["model"], sec["dtype"], m)
            out += [f"![{sec['model']} {sec['dtype']} max length {m}]({name})", ""]
    return "\n".join(out)


def _failure(r: dict) -> str:
    return "**" + (r.get("error") or r.get("status", "failed")).replace("|", "\\|").replace("\n", " ")[:120] + "**"


def _dist_rank(dist: str) -> int:
    order = ("full", "uniform", "real")
    return order.index(dist) if dist in order else len(order)


def encoder_summary(results: dict, level: int = 2) -> str:
    """The README's short version: real tokens/s at the largest batch and batch-1 latency, per implementation."""
    h = "#" * level
    rows = [r for r in results["rows"] if r.get("status") == "ok"]
    impls = sorted({r["impl"] for r in results["rows"]}, key=_impl_rank)
    wrong = [r for r in results["rows"] if r.get("status") != "ok" or not r.get("correct")]
    out = [f"{h} Encoder (end to end) — {results['label']}", ""]
    if _is_cpu(results):
        out += ["> **CPU run**: wall-clock numbers on a CPU smoke-test grid; not GPU performance.", ""]
    out += [f"Full tables, settings and plots: [encoder.md](encoder.md) (raw: `encoder.json`). "
            f"{len(results['rows'])} rows; " + (f"**{len(wrong)} failed or gave a wrong answer**." if wrong
                                                else "every row passed its correctness check."), ""]
    if not rows:
        return "\n".join(out)
    big = max(r["batch"] for r in rows)
    head = ["model", "dtype", "max len", "dist"] + [f"{i} tok/s" for i in impls] + ["fastbert × HF SDPA"]
    body = []
    for key in sorted({(r["model"], r["dtype"], r["max_length"], r["dist"]) for r in rows},
                      key=lambda k: (k[0], k[1], k[2], _dist_rank(k[3]))):
        at = {r["impl"]: r for r in rows if (r["model"], r["dtype"], r["max_length"], r["dist"]) == key
              and r["batch"] == big}
        if not at:
            continue
        fb = at.get("fastbert", {})
        body.append(list(key) + [_num(at[i]["real_tok_per_s"]) if i in at else "–" for i in impls]
                    + [_num(fb.get("speedup_vs_hf_sdpa"))])
    out += [f"Real (non-padding) tokens/s at batch {big}:", "", table(head, body), ""]
    lat = [r for r in rows if r["batch"] == 1]
    if lat:
        head = ["model", "dtype", "max len", "dist"] + [f"{i} p50 / p99 ms" for i in impls]
        body = []
        for key in sorted({(r["model"], r["dtype"], r["max_length"], r["dist"]) for r in lat},
                          key=lambda k: (k[0], k[1], k[2], _dist_rank(k[3]))):
            at = {r["impl"]: r for r in lat if (r["model"], r["dtype"], r["max_length"], r["dist"]) == key}
            body.append(list(key) + [f"{_num(at[i]['p50_ms'])} / {_num(at[i]['p99_ms'])}" if i in at else "–"
                                     for i in impls])
        out += ["Batch-1 latency:", "", table(head, body), ""]
    return "\n".join(out)


def plot_name(model: str, dtype: str, max_length: int) -> str:
    return f"encoder_{model}_{dtype}_L{max_length}.png"


def plot_encoder(results: dict, out_dir: Path) -> list[Path]:
    """One PNG per model/dtype/max length: real tokens/s against batch, a panel per length distribution, a line
    per implementation. Uses matplotlib's Agg canvas directly (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in results["rows"] if r.get("status") == "ok"]
    paths = []
    for key in sorted({(r["model"], r["dtype"], r["max_length"]) for r in rows}):
        sel = [r for r in rows if (r["model"], r["dtype"], r["max_length"]) == key]
        dists = sorted({r["dist"] for r in sel}, key=_dist_rank)
        fig = Figure(figsize=(4.2 * len(dists), 3.8), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(dists), squeeze=False, sharey=True)[0]
        for ax, dist in zip(axes, dists):
            for impl in sorted({r["impl"] for r in sel}, key=_impl_rank):
                pts = sorted((r["batch"], r["real_tok_per_s"]) for r in sel if r["dist"] == dist and r["impl"] == impl)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
            batches = sorted({r["batch"] for r in sel})
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_title(f"{dist} lengths")
            ax.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("real tokens / s")
        axes[0].legend(fontsize="small")
        model, dtype, max_length = key
        fig.suptitle(f"{results['label']}\n{model} {dtype}, max length {max_length}", fontsize="medium")
        path = Path(out_dir) / plot_name(model, dtype, max_length)
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------------------
# Other benchmarks' JSON (kernels, tokenizer): rendered from their own markdown when present, else generically
# ----------------------------------------------------------------------------------------------------------------

def _demote(markdown: str, by: int) -> str:
    """Push every heading down ``by`` levels (outside code fences)."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        out.append("#" * by + line if not fenced and line.startswith("#") else line)
    return "\n".join(out)


def _generic_rows(data) -> list[dict] | None:
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return data
    if isinstance(data, dict):
        for key in ("rows", "results", "benchmarks", "records"):
            if key in data:
                return _generic_rows(data[key])
    return None


def generic_section(title: str, json_path: Path, folder: Path, level: int = 2) -> str:
    """A section of ``folder``'s README for another benchmark's results: its markdown (headings demoted) if it
    wrote one, else a table of the scalar fields of its JSON rows, else a pointer to the file."""
    h = "#" * level
    md_path = json_path.with_suffix(".md")
    rel = lambda p: p.name if p.parent == Path(folder) else f"../{p.parent.name}/{p.name}"  # noqa: E731
    out = [f"{h} {title}", ""]
    if md_path.is_file():
        out += [f"From [{rel(md_path)}]({rel(md_path)}) (raw: `{rel(json_path)}`).", "",
                _demote(md_path.read_text(encoding="utf-8").strip(), level), ""]
        return "\n".join(out)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return "\n".join(out + [f"`{rel(json_path)}` could not be read: {e}", ""])
    rows = _generic_rows(data)
    if not rows:
        return "\n".join(out + [f"Results in `{rel(json_path)}` (no row list to tabulate).", ""])
    cols = [k for k in dict.fromkeys(k for r in rows for k in r) if all(
        isinstance(r.get(k), (str, int, float, bool, type(None))) for r in rows)][:14]
    body = [[_num(r.get(c)) if isinstance(r.get(c), float) else r.get(c, "–") for c in cols] for r in rows]
    return "\n".join(out + [f"From `{rel(json_path)}`.", "", table(cols, body), ""])


# ----------------------------------------------------------------------------------------------------------------
# README
# ----------------------------------------------------------------------------------------------------------------

def readme_markdown(folder: Path) -> str:
    folder = Path(folder)
    encoder = folder / "encoder.json"
    results = json.loads(encoder.read_text(encoding="utf-8")) if encoder.is_file() else None
    label = results["label"] if results else folder.name
    out = [f"# fastbert benchmark results — {label}", "",
           "Generated by `python -m benchmarks.report` from the JSON files in this folder; do not edit by hand.", ""]
    if results:
        out += environment_lines(results) + [""]
        out.append(encoder_summary(results))
    else:
        out += ["## Encoder (end to end)", "", "not run (`python -m benchmarks.encoder`)", ""]
    kernels = folder / "kernels.json"
    out.append(generic_section("Triton kernels", kernels, folder) if kernels.is_file() else
               "## Triton kernels\n\nnot run (`python -m benchmarks.bench_kernels`, CUDA only)\n")
    padding_free = folder / "padding_free.json"
    out.append(generic_section("Padding-free execution and overheads", padding_free, folder)
               if padding_free.is_file() else
               "## Padding-free execution and overheads\n\nnot run (`python -m benchmarks.padding_free`)\n")
    tokenizer = next((p for p in (folder / "tokenizer.json", folder.parent / "cpu" / "tokenizer.json")
                      if p.is_file()), None)
    out.append(generic_section("Tokenizer (CPU)", tokenizer, folder) if tokenizer else
               "## Tokenizer (CPU)\n\nnot run (`python -m benchmarks.bench_tokenizer`)\n")
    return "\n".join(out).rstrip() + "\n"


def write_readme(folder: Path) -> Path:
    path = Path(folder) / "README.md"
    path.write_text(readme_markdown(folder), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                     description="Rebuild README.md (and encoder.md) of benchmark results folders.")
    parser.add_argument("folders", nargs="*", type=Path, help="default: every folder under benchmarks/results/")
    parser.add_argument("--plots", action="store_true", help="also redraw the encoder plots from encoder.json")
    args = parser.parse_args(argv)
    folders = args.folders or sorted(p for p in RESULTS.glob("*") if p.is_dir())
    if not folders:
        print(f"benchmarks.report: no results folders under {RESULTS}", file=sys.stderr)
        return 1
    for folder in folders:
        if not folder.is_dir():
            print(f"benchmarks.report: {folder} is not a folder", file=sys.stderr)
            return 2
        encoder = folder / "encoder.json"
        if encoder.is_file():
            results = json.loads(encoder.read_text(encoding="utf-8"))
            (folder / "encoder.md").write_text(encoder_markdown(results), encoding="utf-8")
            if args.plots:
                plot_encoder(results, folder)
        print(f"wrote {write_readme(folder)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
