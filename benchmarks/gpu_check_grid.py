"""The GPU check's encoder grid: fastbert against transformers on realistic ragged batches.

Models, random weights (seeded; :func:`benchmarks.encoder.random_bert`: BERT's vocabulary, 512 positions):
``bert-base`` (768 hidden, 12 layers, 12 heads, 3072 FFN) and ``minilm`` (all-MiniLM-L6-v2's shape: 384, 6, 12,
1536); the dry run has ``tiny`` (64, 2, 4, 256). Dtypes float16 and bfloat16, run in the order fp16 bert-base,
fp16 minilm, bf16 bert-base, bf16 minilm, so that a cut loses the least wanted rows.

Length mixes, drawn (seeded) from the token counts of real prose (the ``corpus`` stage's offline vocabulary):

* ``paragraphs`` -- one paragraph per sequence plus ``[CLS]``/``[SEP]``, truncated at 256 tokens (what sentence
  embedding sees: all-MiniLM-L6-v2's ``max_seq_length``), 128 per batch (dry run: 32 tokens, 8 per batch);
* ``passages``   -- paragraphs packed greedily into passages of at most 512 tokens (document chunks,
  :func:`benchmarks.corpus.pack`), 32 per batch (dry run: 64 tokens, 4 per batch).

Rows of each model, dtype and mix (``impl`` / ``layout``):

* ``fastbert`` / ``padded`` -- ``fastbert.AutoModel.from_pretrained`` of the random model's ``save_pretrained``
  folder (backend ``triton`` on the GPU, ``torch`` in the dry run) on the right-padded ``[B, S]`` batch and its
  mask; fastbert drops the padding itself;
* ``fastbert`` / ``ragged`` -- the same model on the packed tokens ``[T]`` with ``cu_seqlens`` ``[B + 1]`` and
  ``max_seqlen`` (no padding anywhere; transformers has no such input);
* ``hf-sdpa`` / ``padded``, ``hf-eager`` / ``padded`` -- ``transformers.BertModel`` with that attention.

Each row: the first call's wall time (Triton compilation and autotuning included), then the timed calls of
:func:`benchmarks.encoder.time_calls` (CUDA events around each call on the GPU, ``time.perf_counter`` on CPU,
after warm-up): p50 and p99 per batch, real (non-padding) tokens/s from the p50; peak memory (CUDA): the
model's weights plus the most one call allocated beyond what was allocated before it; and correctness:
:func:`benchmarks.encoder.check_output` of ``last_hidden_state`` on real positions against transformers eager
float32 (TF32 off), judged against transformers eager's own error in the row's dtype.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

GPU_MODELS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
}
DRY_MODELS = {"tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)}
DTYPES = ("fp16", "bf16")
ROWS = (("fastbert", "padded"), ("fastbert", "ragged"), ("hf-sdpa", "padded"), ("hf-eager", "padded"))


@dataclass(frozen=True)
class Mix:
    source: str  # "paragraphs" (one per sequence, truncated) or "passages" (packed up to max_length)
    max_length: int
    batch: int


GPU_MIXES = {"paragraphs": Mix("paragraphs", 256, 128), "passages": Mix("passages", 512, 32)}
DRY_MIXES = {"paragraphs": Mix("paragraphs", 32, 8), "passages": Mix("passages", 64, 4)}


@dataclass(frozen=True)
class Timing:
    warmup_ms: float
    rep_ms: float
    min_iters: int


GPU_TIMING = Timing(warmup_ms=50, rep_ms=250, min_iters=20)
DRY_TIMING = Timing(warmup_ms=2, rep_ms=10, min_iters=3)


def plan(dry_run: bool) -> list[tuple[str, str, str, str, str]]:
    """Every row's key ``(model, dtype, mix, impl, layout)``, in run order."""
    models, mixes = (DRY_MODELS, DRY_MIXES) if dry_run else (GPU_MODELS, GPU_MIXES)
    return [(m, d, x, impl, layout) for d in DTYPES for m in models for x in mixes for impl, layout in ROWS]


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------

def length_pool(mix: Mix, counts: list[list[int]]) -> np.ndarray:
    """Every sequence length (``[CLS]``/``[SEP]`` included) the mix can draw, from per-file paragraph counts."""
    from . import corpus

    if mix.source == "paragraphs":
        return np.minimum(np.asarray([n for c in counts for n in c]) + 2, mix.max_length)
    return np.asarray([n for c in counts for n in corpus.pack(tuple(c), mix.max_length)])


def packed(ids, mask, types):
    """The padded batch ``[B, S]`` as fastbert's packed input: ids and types ``[T]``, ``cu_seqlens`` ``[B + 1]``
    (int32), ``max_seqlen``."""
    import torch

    keep = mask.bool()
    lengths = keep.sum(1)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=ids.device)
    cu[1:] = torch.cumsum(lengths, 0)
    return ids[keep], types[keep], cu, int(lengths.max())


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------

def build_models(base, folder, dtype, device: str, backend: str) -> dict:
    """The row implementations of one model and dtype (``fastbert``, ``hf-sdpa``, ``hf-eager``) plus ``ref``:
    transformers eager float32. All in eval mode on ``device`` with ``base``'s weights."""
    import torch

    import fastbert

    def hf(attn, dt):
        model = copy.deepcopy(base).to(device=device, dtype=dt).eval()
        model.set_attn_implementation(attn)
        return model

    return {"fastbert": fastbert.AutoModel.from_pretrained(folder, dtype=dtype, device=device, backend=backend),
            "hf-sdpa": hf("sdpa", dtype), "hf-eager": hf("eager", dtype), "ref": hf("eager", torch.float32)}


def row_callable(impl: str, layout: str, model, inputs):
    """``() -> last_hidden_state``: ``[B, S, H]`` padded, ``[T, H]`` ragged."""
    ids, mask, types = inputs
    if impl == "fastbert" and layout == "ragged":
        pids, ptypes, cu, longest = packed(ids, mask, types)
        return lambda: model(pids, token_type_ids=ptypes, cu_seqlens=cu, max_seqlen=longest).last_hidden_state
    if impl == "fastbert":
        return lambda: model(ids, mask, types).last_hidden_state
    return lambda: model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state


def weight_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# One row
# ----------------------------------------------------------------------------------------------------------------

def measure(fn, device: str, timing: Timing) -> tuple[object, dict]:
    """The first call's output and time, one call's peak extra memory (CUDA), then the timed calls."""
    import torch

    from .encoder import sync, time_calls

    dev = torch.device(device)
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    result = {"first_call_s": round(time.perf_counter() - t0, 4)}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        fn()
        sync(dev)
        result["peak_extra_bytes"] = torch.cuda.max_memory_allocated(dev) - before
    times = np.asarray(time_calls(fn, dev, warmup_ms=timing.warmup_ms, rep_ms=timing.rep_ms,
                                  min_iters=timing.min_iters))
    result.update(iters=int(times.size), p50_ms=float(np.percentile(times, 50)),
                  p99_ms=float(np.percentile(times, 99)))
    return out, result


def run_row(key, model, inputs, reference, device: str, timing: Timing) -> dict:
    """Time one row and check its output; ``reference``: (HF eager fp32 output, HF eager same-dtype error)."""
    import torch

    from .encoder import check_output

    impl, layout = key[3], key[4]
    ids, mask, _ = inputs
    real = int(mask.sum())
    row = {"batch": int(ids.shape[0]), "padded_length": int(ids.shape[1]), "real_tokens": real,
           "pad_fraction": round(1 - real / mask.numel(), 3)}
    with torch.inference_mode():
        out, m = measure(row_callable(impl, layout, model, inputs), device, timing)
    ref, ref_err = reference
    row.update(check_output(_err(out, ref, mask, layout), ref_err, ref, mask))
    row.update(m, status="ok", real_tok_per_s=real / (m["p50_ms"] * 1e-3), weights_mib=_mib(weight_bytes(model)))
    extra = row.pop("peak_extra_bytes", None)
    row["peak_mem_mib"] = None if extra is None else _mib(weight_bytes(model) + extra)
    return row


def _err(out, ref, mask, layout: str) -> float:
    """Max |out - ref| over real positions (``inf`` if any is not finite); a ragged output is already packed."""
    import math

    from .encoder import max_abs_err

    if layout == "padded":
        return max_abs_err(out, ref, mask)
    d = (out.float() - ref.float()[mask.bool()]).abs()
    return float(d.max()) if bool(d.isfinite().all()) else math.inf


def _mib(nbytes: float) -> float:
    return round(nbytes / 2**20, 1)


# ----------------------------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------------------------

def stage_grid(ctx) -> None:
    """Run :func:`plan` within ``ctx.deadline``, recording each row as it finishes (the plan first, before torch is
    imported, so that even a stage cut early says which rows it lost)."""
    rows = plan(ctx.dry_run)
    ctx.record({"plan": rows})
    from .encoder import TOLERANCE_K
    from .gpu_check_stages import load_corpus

    timing = DRY_TIMING if ctx.dry_run else GPU_TIMING
    models, mixes = (DRY_MODELS, DRY_MIXES) if ctx.dry_run else (GPU_MODELS, GPU_MIXES)
    ctx.record({"settings": {"device": ctx.device, "backend": ctx.backend, "timing": timing.__dict__,
                             "mixes": {k: v.__dict__ for k, v in mixes.items()}, "models": models,
                             "seed": ctx.seed, "tolerance_k": TOLERANCE_K}})
    counts = load_corpus(ctx.work)["counts"]
    run = GridRun(ctx, timing, mixes, {name: length_pool(mix, counts) for name, mix in mixes.items()})
    for model_name, dtype_name in dict.fromkeys((k[0], k[1]) for k in rows):
        run.group(model_name, models[model_name], dtype_name, [k for k in rows if k[:2] == (model_name, dtype_name)])


class GridRun:
    """The grid stage's state: the models made so far, the time estimates that decide whether the next piece of
    work fits in the budget, and the rows recorded."""

    def __init__(self, ctx, timing: Timing, mixes: dict, pools: dict):
        self.ctx, self.timing, self.mixes, self.pools = ctx, timing, mixes, pools
        self.bases: dict = {}  # model name -> (random fp32 CPU transformers model, its save_pretrained folder)
        self.setup_s = self.row_s = 0.0  # the last model/dtype set-up and the last row, in seconds
        self.done: set = set()

    def record(self, key, **fields) -> None:
        from .gpu_check_stages import row_id

        self.done.add(key)
        self.ctx.record({**row_id(key), **fields})

    def skip(self, keys) -> None:
        for key in keys:
            self.record(key, status="skipped", reason=f"over budget: {max(0.0, self.ctx.deadline.left()):.1f} s "
                                                      f"left, the last row took {self.row_s:.1f} s")

    def group(self, model_name: str, shape: dict, dtype_name: str, keys: list) -> None:
        """The rows of one model and dtype; a failure to build or run its references fails only these rows."""
        from .encoder import DTYPES as TORCH_DTYPES
        from .gpu_check_stages import free_memory

        if not self.ctx.deadline.allows(self.setup_s + self.row_s):
            return self.skip(keys)
        try:
            t0 = time.monotonic()
            base, folder = self.base(model_name, shape)
            built = build_models(base, folder, TORCH_DTYPES[dtype_name], self.ctx.device, self.ctx.backend)
            self.setup_s = time.monotonic() - t0
            for mix_name in dict.fromkeys(k[2] for k in keys):
                self.mix(built, mix_name, [k for k in keys if k[2] == mix_name])
        except Exception as e:  # noqa: BLE001 -- recorded on every row it stopped
            for key in keys:
                if key not in self.done:
                    self.record(key, status="error", error=f"{type(e).__name__}: {e}"[:500], correct=None)
        finally:
            built = None
            free_memory(self.ctx.device)

    def base(self, name: str, shape: dict):
        """The random fp32 CPU transformers model of ``name`` and its ``save_pretrained`` folder (made once)."""
        from .encoder import random_bert

        if name not in self.bases:
            base = random_bert(shape, self.ctx.seed).eval()
            folder = self.ctx.work / "models" / name
            base.save_pretrained(folder)
            self.bases[name] = (base, folder)
        return self.bases[name]

    def mix(self, built: dict, mix_name: str, keys: list) -> None:
        """One batch of the mix (the same for every dtype), its float32 reference, then its rows."""
        import torch

        from .encoder import _no_tf32, make_batch, max_abs_err

        if not self.ctx.deadline.allows(self.row_s):
            return self.skip(keys)
        mix = self.mixes[mix_name]
        rng = np.random.default_rng([self.ctx.seed, mix.max_length, mix.batch])
        lengths = rng.choice(self.pools[mix_name], size=mix.batch)
        inputs = make_batch(lengths, built["ref"].config.vocab_size, rng, torch.device(self.ctx.device))
        ids, mask, types = inputs
        with torch.inference_mode(), _no_tf32():
            ref = built["ref"](input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            same = built["hf-eager"](input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            ref_err = max_abs_err(same, ref, mask)
        for key in keys:
            self.row(key, built[key[3]], inputs, (ref, ref_err), mix)

    def row(self, key, model, inputs, reference, mix: Mix) -> None:
        import torch

        from .gpu_check_stages import free_memory

        where = dict(max_length=mix.max_length, backend=self.ctx.backend if key[3] == "fastbert" else "transformers")
        if not self.ctx.deadline.allows(self.row_s):
            return self.skip([key])
        t0 = time.monotonic()
        try:
            row = run_row(key, model, inputs, reference, self.ctx.device, self.timing)
        except torch.cuda.OutOfMemoryError:
            row = {"status": "oom", "correct": None}
            free_memory(self.ctx.device)
        except Exception as e:  # noqa: BLE001 -- a broken implementation is a row, not the end of the grid
            row = {"status": "error", "error": f"{type(e).__name__}: {e}"[:500], "correct": None}
        self.row_s = time.monotonic() - t0
        self.record(key, **where, **row, row_s=round(self.row_s, 3))
