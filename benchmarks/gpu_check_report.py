"""The GPU check's markdown report (``gpu_check.md``, also printed at the end of a run) from its results dict.

Imports nothing heavy (no torch): the parent process writes it after every stage.
"""
from __future__ import annotations

from .report import _err, _num, table


def _stage(results: dict, name: str) -> dict:
    return next((s for s in results["stages"] if s["stage"] == name), {})


def title(results: dict) -> str:
    env = _stage(results, "env").get("result") or {}
    if results["dry_run"]:
        return f"# fastbert GPU check: dry run on CPU ({env.get('cpu', 'CPU')}), tiny shapes, not GPU numbers"
    return f"# fastbert GPU check: {env.get('device_name', 'GPU (the env stage did not finish)')}"


def environment_line(results: dict) -> str:
    env = _stage(results, "env").get("result")
    if not env:
        return "Environment: not recorded (the env stage did not finish)."
    keys = ("torch", "triton", "transformers", "sentence_transformers", "python", "cuda_runtime", "driver")
    parts = [f"{k.replace('_', '-')} {env.get(k)}" for k in keys if env.get(k)]
    commit = env.get("git_commit")
    parts.append(f"fastbert {env.get('fastbert')}" + (f" at {commit[:10]}{' (dirty)' if env.get('git_dirty') else ''}"
                                                       if commit else " (no git checkout)"))
    parts.append(f"fastbert tokenizer import: {env.get('fastbert_tokenizer')}")
    return f"{env.get('date', '')}: " + ", ".join(parts) + "."


def verdict_line(results: dict) -> str:
    problems = results.get("problems", [])
    head = f"Ran in {results.get('seconds', 0):.0f} s of a {results['total_budget_s']:g} s budget. "
    if not problems:
        return head + "**Every selected stage finished and every test and row passed.**"
    return head + "**Not passed:** " + "; ".join(problems[:8]) + (" ..." if len(problems) > 8 else "")


def stages_table(results: dict) -> str:
    rows = [[s["stage"], s["status"], f"{s['seconds']:.1f}", f"{s['budget_s']:g}", s.get("note", "")]
            for s in results["stages"]]
    return table(["stage", "status", "s", "budget s", "note"], rows)


def pytest_section(results: dict) -> str:
    res = _stage(results, "pytest").get("result")
    if not res:
        return "## pytest -m gpu\n\nnot run"
    counts = ", ".join(f"{res[k]} {k}" for k in ("passed", "failed", "error", "skipped"))
    lines = [f"## pytest -m gpu\n\n{res['selected']} selected: {counts}."]
    for p in res["problems"][:15]:
        lines.append(f"- {p['outcome']}: `{p['test']}` {p['reason']}")
    return "\n".join(lines)


def _speedups(rows: list[dict]) -> dict:
    """p50 of hf-sdpa over each row's p50, per (model, dtype, mix)."""
    sdpa = {(r["model"], r["dtype"], r["mix"]): r["p50_ms"] for r in rows
            if r.get("impl") == "hf-sdpa" and r.get("status") == "ok"}
    return {id(r): sdpa[(r["model"], r["dtype"], r["mix"])] / r["p50_ms"] for r in rows
            if r.get("status") == "ok" and (r["model"], r["dtype"], r["mix"]) in sdpa}


def _ok(r: dict) -> str:
    if r.get("status") != "ok":
        return f"{r.get('status')}: {r.get('reason') or r.get('error', '')}"[:120]
    return {True: "pass", False: "**FAIL**", None: "–"}[r.get("correct")]


def grid_section(results: dict) -> str:
    res = _stage(results, "grid").get("result")
    if not res or not res["rows"]:
        return "## Encoder grid\n\nnot run"
    rows = res["rows"]
    up = _speedups(rows)
    body = [[r["model"], r["dtype"], r["mix"], r["impl"], r["layout"], r.get("batch", "–"),
             r.get("real_tokens", "–"),
             "–" if r.get("pad_fraction") is None else f"{100 * r['pad_fraction']:.0f}%",
             _num(r.get("p50_ms")), _num(r.get("p99_ms")), _num(r.get("real_tok_per_s")),
             _num(up.get(id(r))), _num(r.get("peak_mem_mib")), _num(r.get("first_call_s")),
             _err(r.get("max_abs_err")), _num(r.get("err_ratio")), _ok(r)] for r in rows]
    head = ["model", "dtype", "mix", "impl", "layout", "B", "tokens", "pad", "p50 ms", "p99 ms", "tokens/s",
            "x SDPA", "peak MiB", "1st call s", "max err", "err / HF same dtype", "ok"]
    k = (res.get("settings") or {}).get("tolerance_k", "k")
    note = (f"tokens/s: real tokens per second at the p50; x SDPA: hf-sdpa's p50 over the row's; max err: vs "
            f"transformers eager float32 on real positions; ok: max err <= {k} x max(HF eager's own error in that "
            f"dtype, 2e-5 x max(1, |ref|)).")
    return f"## Encoder grid\n\n{note}\n\n" + table(head, body)


def sentence_section(results: dict) -> str:
    res = _stage(results, "sentence").get("result")
    if not res or not res["rows"]:
        return "## SentenceEncoder vs SentenceTransformer\n\nnot run"
    body = [[r["impl"], r["dtype"], r.get("texts", "–"), _num(r.get("seconds")), _num(r.get("texts_per_s")),
             _num(r.get("tokens_per_s")), _num(r.get("speedup_vs_st_same_dtype")), _num(r.get("peak_mem_mib")),
             "–" if r.get("min_cosine") is None else f"{r['min_cosine']:.6f}", _err(r.get("max_abs_err")),
             _num(r.get("err_ratio")), _ok(r)] for r in res["rows"]]
    head = ["impl", "dtype", "texts", "s", "texts/s", "tokens/s", "x ST same dtype", "peak MiB", "min cos",
            "max err", "err / ST same dtype", "ok"]
    k = (res.get("settings") or {}).get("tolerance_k", "k")
    note = ("Synthetic all-MiniLM-L6-v2-shaped folder (random weights, offline vocabulary); min cos and max err "
            f"against sentence-transformers float32; ok: max err <= {k} x max(sentence-transformers' own error in "
            "that dtype, 2e-5 x max(1, |ref|)).")
    return f"## SentenceEncoder vs SentenceTransformer\n\n{note}\n\n" + table(head, body)


def markdown(results: dict) -> str:
    parts = [title(results), environment_line(results), verdict_line(results), "## Stages\n\n" + stages_table(results),
             pytest_section(results), grid_section(results), sentence_section(results)]
    return "\n\n".join(parts) + "\n"
