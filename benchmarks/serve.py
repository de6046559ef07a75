"""``fastbert serve`` under concurrent load, against a plain sentence-transformers HTTP server.

    python -m benchmarks.serve [--clients 16] [--requests 25] [--rounds 3] [--check-requests 10000]

Servers, each a child process on a free loopback port, each with uvicorn (same loop and HTTP parser) and
``OMP_WAIT_POLICY=PASSIVE``:

* ``fastbert`` -- ``fastbert serve`` (exact float32), and ``fastbert-bf16`` with ``--quantize bfloat16``;
* ``st-threadpool`` -- a minimal Starlette app (in this file) that answers each ``POST /embed`` with one
  ``SentenceTransformer.encode`` of the request's texts in Starlette's thread pool: the plain way to serve a model;
* ``st-serial`` -- the same with one ``encode`` at a time (a lock): plain too;
* ``infinity`` -- infinity-emb (``--infinity PATH`` to its ``infinity_emb``; it needs transformers 4.x and
  sentence-transformers 3.x, so it lives in a virtual environment of its own), torch engine on CPU, asked through
  its OpenAI-style ``POST /embeddings``; without ``--infinity`` it is left out and the results say so.

Load: ``--clients`` concurrent clients (asyncio + httpx), each sending ``--requests`` requests one after the other,
each request 1-16 texts drawn at random from real prose paragraphs (``benchmarks/corpus.py``), as TEI's
``{"inputs": [...]}``; answers are JSON float arrays on both sides. Every round runs every server once, in turn, so
background load hits them alike; throughput (texts/s) and latency percentiles are medians over rounds, and the
speed-up is the median of per-round ratios to the faster sentence-transformers server.

Fidelity: the fastbert server's rows against ``SentenceEncoder.encode`` of the same texts (max |difference|), and
sentence-transformers' against fastbert's (min cosine). Correctness: ``--check-requests`` requests (default
10,000) with ``--disconnect-rate`` of them abandoned by their client at a random moment: every other answer must
hold exactly its own rows, in its own order (compared to ``SentenceEncoder.encode`` within 2e-6), and none may be
lost. Writes ``serve.json`` and ``serve.md`` to ``benchmarks/results/cpu/``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "cpu"
MAX_TEXTS = 16
ATOL = 2e-6  # float32 noise of a different batch composition (tests/test_sentence_encoder.py)
_LISTENING = re.compile(r"(?:listening on|Uvicorn running on) (http://[^\s/]+)")


@dataclass(frozen=True)
class Api:
    """How a server is asked for embeddings: TEI's ``/embed`` or an OpenAI-style path with ``model``."""

    path: str = "/embed"
    model: str | None = None  # set: OpenAI's body and answer

    def body(self, texts: list[str]) -> dict:
        if self.model is None:
            return {"inputs": texts, "normalize": False}
        return {"input": texts, "model": self.model, "encoding_format": "float"}

    def rows(self, answer: dict | list) -> np.ndarray:
        """[k, D] float32 from the answer's JSON."""
        if self.model is None:
            return np.asarray(answer, dtype=np.float32)
        return np.asarray([d["embedding"] for d in sorted(answer["data"], key=lambda d: d["index"])],
                          dtype=np.float32)


TEI = Api()


# ---------------------------------------------------------------------------------------------------------------
# Servers in child processes
# ---------------------------------------------------------------------------------------------------------------

class ServerProcess:
    """A server started as ``argv`` (it must log ``listening on http://HOST:PORT`` and answer ``GET /health``
    with 200 once ready); its log lines are kept in ``log``. A context manager: stops it with SIGTERM."""

    def __init__(self, argv: Sequence[str], ready_timeout: float = 180.0, api: Api = TEI):
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
                   DO_NOT_TRACK="1", INFINITY_ANONYMOUS_USAGE_STATS="0")
        self.argv, self.log, self.url, self.api = list(argv), [], None, api
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_ready(ready_timeout)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv} exited with {self.proc.returncode}:\n" + "\n".join(self.log[-20:]))
            if self.url is None:
                found = [m.group(1) for m in map(_LISTENING.search, list(self.log)) if m]
                self.url = found[0] if found else None
            else:
                try:
                    if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                        return
                except httpx.TransportError:  # not accepting yet, or gone (the next poll() says)
                    pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.argv} not ready after {timeout} s:\n" + "\n".join(self.log[-20:]))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout`` s)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def fastbert_server(*options: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "fastbert", "serve", "--port", "0", *options])


def baseline_server(mode: str) -> ServerProcess:
    return ServerProcess([sys.executable, "-m", "benchmarks.serve", "--baseline-server", mode])


def infinity_server(executable: str) -> ServerProcess:
    """infinity-emb's CLI (installed in a virtual environment of its own) on the bundled model, CPU, torch engine,
    on a free loopback port; asked through its OpenAI-style ``POST /embeddings``."""
    import socket

    import fastbert

    with socket.create_server(("127.0.0.1", 0)) as probe:  # a free port (infinity takes a number, not a socket)
        port = probe.getsockname()[1]
    model = fastbert.default_model_path()
    return ServerProcess([executable, "v2", "--model-id", model, "--host", "127.0.0.1", "--port", str(port),
                          "--device", "cpu", "--engine", "torch"], api=Api("/embeddings", model))


def baseline_app(mode: str):
    """The plain sentence-transformers server: ``POST /embed`` {"inputs", "normalize"} -> one
    ``SentenceTransformer.encode`` per request (``threadpool``: concurrently in Starlette's thread pool; ``serial``:
    one at a time), answered as a JSON array of rows; ``GET /health``."""
    import contextlib

    from sentence_transformers import SentenceTransformer
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    import fastbert

    model = SentenceTransformer(fastbert.default_model_path(), device="cpu")
    lock = threading.Lock() if mode == "serial" else contextlib.nullcontext()

    def encode(texts: list[str], normalize: bool) -> np.ndarray:
        with lock:
            return model.encode(texts, normalize_embeddings=normalize)

    async def embed(request):
        body = await request.json()
        texts = [body["inputs"]] if isinstance(body["inputs"], str) else body["inputs"]
        rows = await run_in_threadpool(encode, texts, body.get("normalize", True))
        return Response(json.dumps(rows.tolist()).encode(), media_type="application/json")

    async def health(request):
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/embed", embed, methods=["POST"]), Route("/health", health)])


def run_baseline_server(mode: str) -> int:
    import socket

    import uvicorn

    app = baseline_app(mode)
    sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
    print(f"baseline ({mode}): listening on http://127.0.0.1:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------------------------

async def _one_client(http, url: str, api: Api, texts: Sequence[str], rng: random.Random, n: int, out: dict,
                      reference: np.ndarray | None, disconnect_rate: float, deadline: float) -> None:
    for _ in range(n):
        if time.monotonic() > deadline:
            out["unsent"] += 1
            continue
        picks = [rng.randrange(len(texts)) for _ in range(rng.randint(1, MAX_TEXTS))]
        body = api.body([texts[i] for i in picks])
        abandon = rng.uniform(0.0, 0.1) if rng.random() < disconnect_rate else None
        start = time.perf_counter()
        try:
            answer = await asyncio.wait_for(http.post(url + api.path, json=body), abandon)
        except asyncio.TimeoutError:
            out["disconnected"] += 1
            continue
        except Exception as error:  # a lost request: counted, never hidden
            out["errors"][type(error).__name__] = out["errors"].get(type(error).__name__, 0) + 1
            continue
        if answer.status_code != 200:
            out["errors"][str(answer.status_code)] = out["errors"].get(str(answer.status_code), 0) + 1
            continue
        out["latencies"].append(time.perf_counter() - start)
        out["texts"] += len(picks)
        if reference is not None:
            rows = api.rows(answer.json())  # [k, D]
            diff = np.abs(rows - reference[picks]).max() if rows.shape == reference[picks].shape else np.inf
            out["max_abs_diff"] = max(out["max_abs_diff"], float(diff))
            out["wrong"] += int(diff > ATOL)


def run_load(url: str, texts: Sequence[str], *, clients: int, requests: int, seed: int, api: Api = TEI,
             reference: np.ndarray | None = None, disconnect_rate: float = 0.0, time_limit: float = 600.0) -> dict:
    """``clients`` concurrent clients, ``requests`` each, on ``url`` through ``api``. Returns counts (answered,
    disconnected, errors by status or exception, wrong answers, unsent past ``time_limit``), texts/s, latency
    percentiles (s) and, with ``reference`` [len(texts), D], the largest |difference| of any answered row."""
    import httpx

    out = {"latencies": [], "texts": 0, "disconnected": 0, "errors": {}, "wrong": 0, "unsent": 0,
           "max_abs_diff": 0.0}

    async def main() -> float:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(limits=limits, timeout=120.0) as http:
            deadline = time.monotonic() + time_limit
            start = time.perf_counter()
            await asyncio.gather(*(
                _one_client(http, url, api, texts, random.Random(seed * 1000 + c), requests, out, reference,
                            disconnect_rate, deadline) for c in range(clients)))
            return time.perf_counter() - start

    seconds = asyncio.run(main())
    latencies = np.asarray(out.pop("latencies"))
    answered = len(latencies)
    result = {"requests": clients * requests, "answered": answered, **out, "seconds": round(seconds, 3),
              "texts_per_s": out["texts"] / seconds, "requests_per_s": answered / seconds}
    for q in (50, 95, 99):
        result[f"p{q}_ms"] = float(np.percentile(latencies, q) * 1000) if answered else None
    return result


# ---------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------

def _fetch_rows(server: ServerProcess, texts: Sequence[str]) -> np.ndarray:
    """Rows for ``texts`` from a server, 16 at a time, [N, D]."""
    import httpx

    rows = []
    with httpx.Client(timeout=120) as http:
        for start in range(0, len(texts), MAX_TEXTS):
            answer = http.post(server.url + server.api.path, json=server.api.body(list(texts[start:start + MAX_TEXTS])))
            answer.raise_for_status()
            rows.append(server.api.rows(answer.json()))
    return np.concatenate(rows)


def fidelity(servers: dict, texts: Sequence[str], reference: np.ndarray) -> dict:
    """fastbert's answers vs ``SentenceEncoder.encode``; sentence-transformers' vs fastbert's (cosine)."""
    out = {}
    for name, server in servers.items():
        rows = _fetch_rows(server, texts)
        cos = (rows * reference).sum(1) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(reference, axis=1))
        out[name] = {"max_abs_diff_vs_encode": float(np.abs(rows - reference).max()),
                     "min_cosine_vs_encode": float(cos.min()), "mean_cosine_vs_encode": float(cos.mean())}
    return out


def measure(servers: dict, texts: Sequence[str], args) -> dict:
    """Every round: each server under the same load (seeded per round), in turn."""
    rounds: dict[str, list[dict]] = {name: [] for name in servers}
    for r in range(args.rounds):
        for name, server in servers.items():
            run_load(server.url, texts, clients=args.clients, requests=2, seed=10_000 + r, api=server.api)  # warm-up
            result = run_load(server.url, texts, clients=args.clients, requests=args.requests, seed=r, api=server.api)
            print(f"round {r} {name}: {result['texts_per_s']:.1f} texts/s, p95 {result['p95_ms']:.0f} ms, "
                  f"errors {result['errors']}", file=sys.stderr, flush=True)
            rounds[name].append(result)
    return rounds


def summarise(rounds: dict) -> dict:
    baselines = [n for n in rounds if n.startswith("st-")]  # plain sentence-transformers servers
    best = max(baselines, key=lambda n: statistics.median(r["texts_per_s"] for r in rounds[n]))
    out = {"baseline": best, "servers": {}}
    for name, runs in rounds.items():
        ratios = [run["texts_per_s"] / base["texts_per_s"] for run, base in zip(runs, rounds[best])]
        out["servers"][name] = {
            "texts_per_s": statistics.median(r["texts_per_s"] for r in runs),
            "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
            **{f"p{q}_ms": statistics.median(r[f"p{q}_ms"] for r in runs) for q in (50, 95, 99)},
            "speedup_vs_baseline": statistics.median(ratios),
            "errors": sum(sum(r["errors"].values()) for r in runs),
        }
    return out


def markdown(results: dict) -> str:
    from .report import table

    s, env = results["settings"], results["environment"]
    summary = results["summary"]
    lines = [
        f"# fastbert serve under concurrent load — CPU: {env['cpu']}",
        "",
        f"`{results['command']}`; model all-MiniLM-L6-v2; {s['clients']} concurrent clients x {s['requests']} "
        f"requests per round, 1-{MAX_TEXTS} real paragraphs per request ({s['pool']} paragraphs, mean "
        f"{s['mean_tokens']} tokens); {s['rounds']} rounds; {env['date']}, commit `{env['git_commit']}`.",
        "",
        f"> Shared, noisy machine ({s['cores']} cores). Medians over rounds; `x baseline` is the median of per-round "
        f"ratios to the faster plain sentence-transformers server (`{summary['baseline']}`). Latency: from "
        "sending a request to its whole answer, on the client (same machine).",
        "",
    ]
    rows = []
    for name, r in summary["servers"].items():
        rows.append([name, f"{r['texts_per_s']:.1f}", f"{r['requests_per_s']:.1f}", f"{r['p50_ms']:.0f}",
                     f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['speedup_vs_baseline']:.2f}", r["errors"]])
    lines += [table(["server", "texts/s", "requests/s", "p50 ms", "p95 ms", "p99 ms", "x baseline", "errors"], rows),
              ""]
    fid = results["fidelity"]
    lines += ["Fidelity on the first paragraphs of the pool, against `SentenceEncoder.encode` (float32):", "",
              table(["server", "max abs diff", "min cosine", "mean cosine"],
                    [[n, f"{f['max_abs_diff_vs_encode']:.1e}", f"{f['min_cosine_vs_encode']:.7f}",
                      f"{f['mean_cosine_vs_encode']:.7f}"] for n, f in fid.items()]), ""]
    check = results.get("check")
    if check:
        lines += [f"Correctness run on `fastbert`: {check['requests']} requests from {s['clients']} clients, "
                  f"{check['disconnected']} abandoned by their client at a random moment (rate "
                  f"{s['disconnect_rate']}); answered {check['answered']}, wrong or out of order {check['wrong']}, "
                  f"lost (errors) {check['errors'] or 0}, largest |difference| from `SentenceEncoder.encode` "
                  f"{check['max_abs_diff']:.1e}; {check['seconds']:.0f} s.", ""]
    if results.get("infinity"):
        lines += [f"`infinity`: {results['infinity']}, `--engine torch --device cpu`, in its own virtual "
                  "environment.", ""]
    if results.get("skipped"):
        lines += [f"Not measured: {results['skipped']}", ""]
    load = results["load_average_1min"]
    lines += [f"Machine load (1-minute load average) before / after: {load['before']} / {load['after']}.", ""]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=25, help="requests per client per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pool", type=int, default=2000, help="paragraphs requests draw from")
    p.add_argument("--check-requests", type=int, default=10_000, help="requests of the correctness run (0: none)")
    p.add_argument("--disconnect-rate", type=float, default=0.05)
    p.add_argument("--servers", default="fastbert,fastbert-bf16,st-threadpool,st-serial")
    p.add_argument("--infinity", metavar="PATH", help="infinity-emb's infinity_emb executable (in a virtual "
                   "environment of its own: it needs transformers 4.x); adds the server 'infinity'")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--baseline-server", choices=["threadpool", "serial"], help=argparse.SUPPRESS)
    return p


def _start(name: str, args) -> ServerProcess:
    if name == "infinity":
        return infinity_server(args.infinity)
    if name == "fastbert":
        return fastbert_server()
    if name == "fastbert-bf16":
        return fastbert_server("--quantize", "bfloat16")
    return baseline_server(name.removeprefix("st-"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.baseline_server:
        return run_baseline_server(args.baseline_server)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    import fastbert

    from . import corpus
    from .encoder import environment

    load_before = os.getloadavg()[0]
    texts = corpus.first_paragraphs(args.pool)
    encoder = fastbert.SentenceEncoder(device="cpu")
    reference = encoder.encode(texts)  # [pool, D]
    names = args.servers.split(",") + (["infinity"] if args.infinity else [])
    servers = {}
    try:
        for name in names:
            servers[name] = _start(name, args)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    try:
        results = {"rounds": measure(servers, texts, args)}
        results["summary"] = summarise(results["rounds"])
        results["fidelity"] = fidelity(servers, texts[:256], reference[:256])
        if args.check_requests and "fastbert" in servers:
            per_client = -(-args.check_requests // args.clients)
            results["check"] = run_load(servers["fastbert"].url, texts, clients=args.clients, requests=per_client,
                                        seed=99, reference=reference, disconnect_rate=args.disconnect_rate,
                                        time_limit=3600)
    finally:
        for server in servers.values():
            server.stop()
    results["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    results["environment"] = environment(torch.device("cpu"))
    results["command"] = "python -m benchmarks.serve " + " ".join(argv if argv is not None else sys.argv[1:])
    results["skipped"] = None if args.infinity else "infinity-emb (no --infinity PATH given)"
    results["infinity"] = _infinity_version(args.infinity) if args.infinity else None
    results["settings"] = {
        "clients": args.clients, "requests": args.requests, "rounds": args.rounds, "pool": len(texts),
        "mean_tokens": round(float(encoder.tokenize_texts(texts).lengths.mean()), 1),
        "disconnect_rate": args.disconnect_rate, "cores": len(os.sched_getaffinity(0)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "serve.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


def _infinity_version(executable: str) -> str | None:
    python = Path(executable).with_name("python")
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('infinity_emb'), "
                            "m.version('sentence-transformers'), m.version('torch'))"], capture_output=True, text=True)
    return "infinity-emb {} (sentence-transformers {}, torch {})".format(*found.stdout.split()) \
        if found.returncode == 0 else None

if __name__ == "__main__":
    sys.exit(main())
