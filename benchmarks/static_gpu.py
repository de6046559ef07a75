"""Static GPU check: compile every Triton kernel variant the encoder launches for A100 (sm_80) and H100 (sm_90a)
on a machine without a GPU, and read what the compiled code uses.

How: the real launchers (``gemm.linear``, ``attention.attention``/``attention_varlen``,
``layernorm.bias_residual_layernorm``, ``embedding.embed_layernorm``) are called with CPU tensors of real shapes,
strides and dtypes, laid out as :func:`fastbert.encoder.model.encoder_layer` lays them out. Each kernel's launch is
intercepted (the module's kernel object is swapped for a recorder), then replayed through Triton's own JIT path,
``JITFunction.run(..., warmup=True)``, under a stand-in driver whose target is ``GPUTarget("cuda", 80 | 90, 32)``
and whose device properties are that GPU's. So the autotuner's prune sees the target's shared-memory limit and
architecture, and the specialisation (``== 1`` integers, 16-divisible pointers and integers) is exactly what a
real launch gets. Every config the prune keeps for that target is compiled; identical binaries are compiled once.

Read from each binary: registers, spill stores/loads and stack (``ptxas -v``, the log of Triton's own ptxas run),
shared memory (Triton's kernel metadata -- the number the driver checks at launch), and the SASS instruction mix
(``cuobjdump -sass``): tensor-core forms (``HMMA.*`` on sm_80 and sm_90, ``HGMMA.*``, i.e. wgmma, on sm_90),
``FFMA`` and local-memory traffic (``LDL``/``STL``).

What it proves: that each variant compiles for the target with the bundled toolchain, how many registers and how
much shared memory it uses, that it does or does not spill, and which instructions the products are made of.
What it does not prove: anything about speed (no timing, no occupancy measurement, no memory bandwidth) or about
numerical results on hardware (nothing runs; correctness is tested through the Triton interpreter and, on a GPU,
``tests/test_kernels_gpu.py``).

Run (``TRITON_INTERPRET`` must be unset: the kernel modules shrink their config lists under the interpreter)::

    python -m benchmarks.static_gpu                       # full matrix, both targets -> benchmarks/results/static/
    python -m benchmarks.static_gpu --quick --json out.json   # the subset tests/test_static_gpu.py checks
    python -m benchmarks.static_gpu --first-call          # kernels a `fastbert encode` run compiles and autotunes
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

# Per target: compute capability -> (name, opt-in shared memory per block in bytes, SM count, registers per SM).
TARGETS = {
    80: ("A100 (sm_80)", 166_912, 108),
    90: ("H100 (sm_90a)", 232_448, 132),
}


@dataclass(frozen=True)
class Shape:
    """An encoder's sizes: hidden, heads, FFN intermediate (head dim = hidden / heads)."""

    name: str
    hidden: int
    heads: int
    intermediate: int


SHAPES = {
    "minilm": Shape("minilm", 384, 12, 1536),
    "bert-base": Shape("bert-base", 768, 12, 3072),
    "bert-large": Shape("bert-large", 1024, 16, 4096),
    "deberta-v3-base": Shape("deberta-v3-base", 768, 12, 3072),  # runs only the batches marked disentangled
}


@dataclass(frozen=True)
class Batch:
    """One forward's token layout. ``layout``: ``"dense"`` (padded path, no padding: no key mask), ``"left"``
    (padded path with a key mask; left padding keeps the padded path), ``"packed"`` (padding-free: ``lengths``
    packed back to back). ``pooler``: the pooler GEMM runs on ``len(lengths)`` rows. ``bias``: attention adds
    MPNet's relative-position bias (a ``[heads, 257]`` table; packed: per-token positions). ``train``: also one
    layer's training launches (:func:`train_launches`: the forward's LSE / pre-activation variants, every backward),
    with ``dropout`` the fused-dropout variants of the attention and bias + residual + LayerNorm kernels.
    ``disentangled``: DeBERTa-v3's attention (``kernels/disentangled.py``; 256 position buckets, so
    ``min(2S - 1, 512)`` relative rows) with the projection of those rows; no pooler."""

    name: str
    layout: str
    lengths: tuple[int, ...]
    pooler: bool = True
    bias: bool = False
    train: bool = False
    disentangled: bool = False
    dropout: bool = False

    @property
    def batch(self) -> int:
        return len(self.lengths)

    @property
    def seqlen(self) -> int:
        return max(self.lengths)


def _packed(n: int, longest: int, shortest: int) -> tuple[int, ...]:
    """``n`` lengths from ``longest`` down to ``shortest`` (what a length-sorted batch looks like)."""
    return tuple(longest - (longest - shortest) * i // max(1, n - 1) for i in range(n))


BATCHES = {
    "b1-s7": Batch("b1-s7", "dense", (7,)),  # one short query
    "b32-s16": Batch("b32-s16", "dense", (16,) * 32),  # short sentences, no padding
    "b8-s128-left": Batch("b8-s128-left", "left", _packed(8, 128, 40)),
    "b32-s128": Batch("b32-s128", "dense", (128,) * 32),
    "b4-s384-left": Batch("b4-s384-left", "left", (384, 300, 211, 97)),
    "b64-packed-s64": Batch("b64-packed-s64", "packed", _packed(64, 64, 17)),
    "b32-packed-s512": Batch("b32-packed-s512", "packed", _packed(32, 512, 200)),
    # MPNet (all-mpnet-base-v2): the relative-position bias, padded with left padding and packed
    "b8-s128-left-mpnet": Batch("b8-s128-left-mpnet", "left", _packed(8, 128, 40), bias=True),
    "b64-packed-s64-mpnet": Batch("b64-packed-s64-mpnet", "packed", _packed(64, 64, 17), bias=True),
    # training (the Triton backward kernels): a left-padded batch (key mask) and a packed one
    "b8-s128-left-train": Batch("b8-s128-left-train", "left", _packed(8, 128, 40), train=True),
    "b64-packed-s64-train": Batch("b64-packed-s64-train", "packed", _packed(64, 64, 17), train=True),
    # training with dropout (train mode): the dropout variants of the attention and LayerNorm kernels
    "b8-s128-left-dropout": Batch("b8-s128-left-dropout", "left", _packed(8, 128, 40), train=True, dropout=True),
    "b64-packed-s64-dropout": Batch("b64-packed-s64-dropout", "packed", _packed(64, 64, 17), train=True,
                                    dropout=True),
    # DeBERTa-v3 (deberta-v3-base's shape): the disentangled attention, dense short, left-padded (key mask), packed
    "b32-s16-deberta": Batch("b32-s16-deberta", "dense", (16,) * 32, False, disentangled=True),
    "b8-s128-left-deberta": Batch("b8-s128-left-deberta", "left", _packed(8, 128, 40), False, disentangled=True),
    "b64-packed-s64-deberta": Batch("b64-packed-s64-deberta", "packed", _packed(64, 64, 17), False,
                                    disentangled=True),
    "b32-packed-s512-deberta": Batch("b32-packed-s512-deberta", "packed", _packed(32, 512, 200), False,
                                     disentangled=True),
}
DTYPES = ("float32", "float16", "bfloat16")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")


@dataclass(frozen=True)
class Case:
    shape: str
    dtype: str
    batch: str
    activation: str = "gelu"

    def __str__(self):
        act = "" if self.activation == "gelu" else f" {self.activation}"
        return f"{self.shape} {self.dtype} {self.batch}{act}"


def full_matrix() -> list[Case]:
    """Every BERT shape x dtype x batch with the GELU the three models use, plus the other FFN activations on one
    batch; DeBERTa-v3-base x dtype x its (disentangled) batches."""
    bert = [s for s in SHAPES if s != "deberta-v3-base"]
    plain = [b for b in BATCHES if not BATCHES[b].disentangled]
    cases = [Case(s, d, b) for s in bert for d in DTYPES for b in plain]
    cases += [Case(s, d, "b64-packed-s64", a) for s in bert for d in DTYPES for a in ACTIVATIONS[1:]]
    cases += [Case("deberta-v3-base", d, b) for d in DTYPES for b in BATCHES if BATCHES[b].disentangled]
    return cases


def quick_matrix() -> list[Case]:
    """The subset the test suite compiles: every kernel and every constexpr variant at MiniLM's shape in fp16 (dense
    short, left-padded, packed), bf16 and fp32 packed, BERT-base's head dim 64 in fp16 packed and fp32 short
    (the fp32 short-sequence tiles at head dim 64 spilled under triton 3.6 before they were changed), and MPNet's
    relative-position bias at that head dim (fp16 and fp32 left-padded and packed), and DeBERTa's disentangled
    attention (fp16 left-padded and packed, fp32 packed), and training with dropout (MiniLM fp16 packed, BERT-base
    fp32 left-padded)."""
    return [
        Case("minilm", "float16", "b1-s7"),
        Case("minilm", "float16", "b8-s128-left"),
        Case("minilm", "float16", "b64-packed-s64"),
        Case("minilm", "bfloat16", "b64-packed-s64"),
        Case("minilm", "float32", "b64-packed-s64"),
        Case("bert-base", "float16", "b64-packed-s64"),
        Case("bert-base", "float32", "b32-s16"),
        Case("bert-base", "float16", "b8-s128-left-mpnet"),
        Case("bert-base", "float16", "b64-packed-s64-mpnet"),
        Case("bert-base", "float32", "b64-packed-s64-mpnet"),
        Case("minilm", "float16", "b64-packed-s64-train"),
        Case("bert-base", "float32", "b8-s128-left-train"),
        Case("minilm", "float16", "b64-packed-s64-dropout"),
        Case("bert-base", "float32", "b8-s128-left-dropout"),
        Case("bert-base", "float32", "b8-s128-left-mpnet"),  # fp32 bias + key mask: 32x32 on 4 warps spilled
        Case("deberta-v3-base", "float16", "b8-s128-left-deberta"),
        Case("deberta-v3-base", "float16", "b64-packed-s64-deberta"),
        Case("deberta-v3-base", "float32", "b64-packed-s64-deberta"),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Recording launches
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Launch:
    """One intercepted kernel launch: the kernel object (Autotuner / Heuristics / JITFunction), its arguments."""

    kernel_name: str
    kernel: object
    grid: object
    args: tuple
    kwargs: dict
    uses: list[str] = field(default_factory=list)  # "case: op" descriptions


class _Recorder:
    """Stands in for a kernel object in its module: ``kernel[grid](*args, **kwargs)`` records instead of running."""

    def __init__(self, name, kernel, sink, label):
        self.name, self.kernel, self.sink, self.label = name, kernel, sink, label

    def __getitem__(self, grid):
        def record(*args, **kwargs):
            self.sink.append(Launch(self.name, self.kernel, grid, args, kwargs, [self.label[0]]))

        return record


def _kernel_slots():
    """(module, attribute) of every kernel object the launchers look up at call time."""
    from fastbert.kernels import attention, disentangled, embedding, gemm, layernorm

    return [
        (gemm, "_linear_kernel"),
        (attention, "_attention_fwd_kernel"),
        (disentangled, "_disentangled_fwd_kernel"),
        (layernorm, "_bias_residual_layernorm_kernel"),
        (embedding, "_embed_layernorm_kernel"),
        (gemm, "_activation_bwd_kernel"),
        (attention, "_attention_bwd_dkdv_kernel"),
        (attention, "_attention_bwd_dq_kernel"),
        (layernorm, "_bias_residual_layernorm_bwd_kernel"),
    ]


@contextlib.contextmanager
def recording(sink: list[Launch], label: list[str]):
    """Swap every kernel for a recorder appending to ``sink``; ``label[0]`` names the op being launched."""
    saved = []
    for module, attr in _kernel_slots():
        kernel = getattr(module, attr)
        saved.append((module, attr, kernel))
        setattr(module, attr, _Recorder(attr.strip("_"), kernel, sink, label))
    try:
        yield
    finally:
        for module, attr, kernel in saved:
            setattr(module, attr, kernel)


def encoder_launches(case: Case) -> list[Launch]:
    """Call the launchers exactly as the embeddings, one encoder layer and the pooler do for ``case``."""
    return batch_launches(SHAPES[case.shape], case.dtype, BATCHES[case.batch], case.activation, str(case))


def batch_launches(shape: Shape, dtype: str, batch: Batch, activation: str, name: str) -> list[Launch]:
    """The launches of one forward of ``batch`` (one layer: every layer launches the same), labelled ``name: op``."""
    import torch

    from fastbert.kernels import attention, disentangled, embedding, gemm, layernorm

    dtype = getattr(torch, dtype)
    hidden, heads, inter = shape.hidden, shape.heads, shape.intermediate
    head_dim = hidden // heads
    packed = batch.layout == "packed"
    rows = sum(batch.lengths) if packed else batch.batch * batch.seqlen

    def w(*size):
        return torch.empty(size, dtype=dtype)

    sink, label = [], [""]
    with recording(sink, label):
        label[0] = f"{name}: embeddings"
        ids_shape = (1, rows) if packed else (batch.batch, batch.seqlen)
        ids = torch.zeros(ids_shape, dtype=torch.long)
        pos = torch.zeros(ids_shape, dtype=torch.long) if packed else torch.arange(batch.seqlen).expand(ids_shape)
        embedding.embed_layernorm(ids, torch.zeros_like(ids), pos, w(30522, hidden), w(512, hidden), w(2, hidden),
                                  w(hidden), w(hidden), 1e-12)
        x = w(rows, hidden)
        label[0] = f"{name}: qkv"
        qkv = gemm.linear(x, w(3 * hidden, hidden), w(3 * hidden))
        q, k, v = qkv.view(rows, 3, heads, head_dim).unbind(1)  # 3 x [N, heads, D] views, token stride 3H
        label[0] = f"{name}: attention"
        bias = torch.zeros(heads, 257) if batch.bias else None  # [heads, 2 * 128 + 1] fp32
        if batch.disentangled:
            width = batch.seqlen - 1
            reach = min(2 * width + 1, 512)  # the relative rows the batch's distances reach
            label[0] = f"{name}: rel-projection"
            gemm.linear(w(reach, hidden), w(2 * hidden, hidden), w(2 * hidden))  # [R, 2H]: Qr, Kr
            label[0] = f"{name}: attention"
            c2p, p2c = w(heads, rows, reach), w(heads, rows, reach)  # position_scores: torch.matmul (cuBLAS)
            rows_of = torch.zeros(2 * width + 1, dtype=torch.int32)
            scale = 1 / (3 * head_dim) ** 0.5
        if batch.disentangled and packed:
            cu = torch.tensor([0, *torch.tensor(batch.lengths).cumsum(0).tolist()], dtype=torch.int32)
            columns = torch.zeros(rows, dtype=torch.int32)
            ctx = disentangled.disentangled_attention_varlen(q, k, v, cu, batch.seqlen, columns, c2p, p2c, rows_of,
                                                             scale)
        elif batch.disentangled:
            b, s = batch.batch, batch.seqlen
            mask = None
            if batch.layout == "left":
                mask = torch.arange(s)[None, :] >= (s - torch.tensor(batch.lengths))[:, None]  # [B, S]
            ctx = disentangled.disentangled_attention(*(t.unflatten(0, (b, s)) for t in (q, k, v)), mask, c2p, p2c,
                                                      rows_of, scale).flatten(0, 1)
        elif packed:
            cu = torch.tensor([0, *torch.tensor(batch.lengths).cumsum(0).tolist()], dtype=torch.int32)
            positions = torch.zeros(rows, dtype=torch.int32) if batch.bias else None
            ctx = attention.attention_varlen(q, k, v, cu, batch.seqlen, bias, positions)
        else:
            b, s = batch.batch, batch.seqlen
            mask = None
            if batch.layout == "left":
                mask = torch.arange(s)[None, :] >= (s - torch.tensor(batch.lengths))[:, None]  # [B, S]
            ctx = attention.attention(*(t.unflatten(0, (b, s)) for t in (q, k, v)), mask, bias).flatten(0, 1)
        label[0] = f"{name}: attn-out"
        h = gemm.linear(ctx.reshape(rows, hidden), w(hidden, hidden), None)
        label[0] = f"{name}: layernorm"
        x = layernorm.bias_residual_layernorm(h, w(hidden), x, w(hidden), w(hidden), 1e-12)
        label[0] = f"{name}: ffn-up"
        up = gemm.linear(x, w(inter, hidden), w(inter), activation)
        label[0] = f"{name}: ffn-down"
        gemm.linear(up, w(hidden, inter), None)
        if batch.pooler:
            label[0] = f"{name}: pooler"
            gemm.linear(w(batch.batch, hidden), w(hidden, hidden), w(hidden))
    if batch.train:
        sink += train_launches(shape, dtype, batch, activation, name)
    return sink


def train_launches(shape: Shape, dtype, batch: Batch, activation: str, name: str) -> list[Launch]:
    """One layer's training launches (``triton_ops``' autograd Functions): the forward variants that save the
    attention LSE and the FFN pre-activation, then the backward of each op in reverse order; with
    ``batch.dropout``, the attention and bias + residual + LayerNorm ones with their fused dropout."""
    import torch

    from fastbert.kernels import attention, gemm, layernorm

    hidden, heads, inter = shape.hidden, shape.heads, shape.intermediate
    packed = batch.layout == "packed"
    rows = sum(batch.lengths) if packed else batch.batch * batch.seqlen

    def w(*size):
        return torch.empty(size, dtype=dtype)

    drop = dict(dropout=0.1, seed=1234) if batch.dropout else {}
    sink, label = [], [""]
    with recording(sink, label):
        x, dy = w(rows, hidden), w(rows, hidden)
        if batch.dropout:
            label[0] = f"{name}: layernorm fwd (dropout)"
            layernorm.bias_residual_layernorm(w(rows, hidden), w(hidden), x, w(hidden), w(hidden), 1e-12, **drop)
        label[0] = f"{name}: ffn-up fwd (save_pre)"
        up, pre = gemm.linear(x, w(inter, hidden), w(inter), activation, save_pre=True)
        label[0] = f"{name}: ffn layernorm bwd"
        dh = layernorm.bias_dropout_residual_layernorm_backward(dy, w(rows, hidden), w(hidden), x, w(hidden), 1e-12,
                                                                **drop)[0]
        label[0] = f"{name}: ffn-down bwd"
        dup = gemm.linear_backward(dh, up, w(hidden, inter), None)[0]
        label[0] = f"{name}: ffn-up bwd"
        gemm.linear_backward(dup, x, w(inter, hidden), pre, activation)
        label[0] = f"{name}: attn-out bwd"
        dctx = gemm.linear_backward(dh, w(rows, hidden), w(hidden, hidden), None, None, (True, True, False))[0]
        q, k, v = w(rows, 3, heads, hidden // heads).unbind(1)  # 3 x [N, heads, D] views, token stride 3H
        dctx = dctx.view(rows, heads, hidden // heads)
        if packed:
            cu = torch.tensor([0, *torch.tensor(batch.lengths).cumsum(0).tolist()], dtype=torch.int32)
            label[0] = f"{name}: attention fwd (lse)"
            out, lse = attention.attention_varlen(q, k, v, cu, batch.seqlen, return_lse=True, **drop)
            label[0] = f"{name}: attention bwd"
            attention.attention_varlen_backward(dctx, q, k, v, out, lse, cu, batch.seqlen, **drop)
        else:
            b, s = batch.batch, batch.seqlen
            mask = torch.arange(s)[None, :] >= (s - torch.tensor(batch.lengths))[:, None]  # [B, S] left padding
            q, k, v, dctx = (t.unflatten(0, (b, s)) for t in (q, k, v, dctx))
            label[0] = f"{name}: attention fwd (lse)"
            out, lse = attention.attention(q, k, v, mask, return_lse=True, **drop)
            label[0] = f"{name}: attention bwd"
            attention.attention_backward(dctx, q, k, v, out, lse, mask, **drop)
        label[0] = f"{name}: qkv bwd"
        gemm.linear_backward(w(rows, 3 * hidden), x, w(3 * hidden, hidden), None)
    return sink


# ----------------------------------------------------------------------------------------------------------------
# Compiling for a target without a GPU
# ----------------------------------------------------------------------------------------------------------------

class _TargetUtils:
    def __init__(self, arch):
        self.arch = arch

    def get_device_properties(self, device):
        _, smem, sms = TARGETS[self.arch]
        return {"max_shared_mem": smem, "multiprocessor_count": sms, "max_num_regs": 65536, "warpSize": 32}


class TargetDriver:
    """The part of Triton's driver interface that compiling (not launching) needs, for a GPU that is not here.
    The device id is the compute capability, so each target gets its own JIT cache."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.arch = arch
        self.target = GPUTarget("cuda", arch, 32)
        self.utils = _TargetUtils(arch)

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return self.arch

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        import torch

        return torch.device("cpu")

    def get_benchmarker(self):
        raise RuntimeError(f"nothing can run on the stand-in {self.target}")


@contextlib.contextmanager
def target(arch: int):
    """Make Triton compile for ``arch`` (80 or 90) while the block runs."""
    from triton.runtime.driver import driver

    previous = driver._active  # reset_active() would create the real (CUDA) driver, which fails without a GPU
    driver.set_active(TargetDriver(arch))
    try:
        yield
    finally:
        driver.set_active(previous)


def _unwrap(kernel):
    """Autotuner -> (autotuner or None, Heuristics chain, JITFunction)."""
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    tuner = kernel if isinstance(kernel, Autotuner) else None
    inner = kernel.fn if tuner else kernel
    jit = inner
    while not isinstance(jit, JITFunction):
        jit = jit.fn
    return tuner, inner, jit


def kept_configs(launch: Launch) -> list:
    """The autotune configs the kernel's prune keeps for this launch on the active target ([None] if untuned)."""
    tuner, _, _ = _unwrap(launch.kernel)
    if tuner is None:
        return [None]
    if len(tuner.configs) == 1:
        return list(tuner.configs)
    tuner.nargs = dict(zip(tuner.arg_names, launch.args))
    try:
        return tuner.prune_configs(dict(launch.kwargs))
    finally:
        tuner.nargs = None


def _meta(launch: Launch, config) -> dict:
    """Every constexpr this launch compiles with: the launcher's, the config's, the heuristics' (e.g. EVEN_K)."""
    from triton.runtime.autotuner import Heuristics

    meta = dict(launch.kwargs)
    if config is not None:
        meta.update(config.all_kwargs())
    _, inner, _ = _unwrap(launch.kernel)
    node = inner
    while isinstance(node, Heuristics):
        for name, heur in node.values.items():
            meta[name] = heur({**dict(zip(node.arg_names, launch.args)), **meta})
        node = node.fn
    return meta


def _source_hash(jit) -> str:
    """A hash of the kernel's source and of every ``@triton.jit`` function its module can call (line numbers
    excluded, unlike Triton's ``cache_key``, so editing a config table does not invalidate the kernel)."""
    from triton.runtime.jit import JITFunction

    sources = [jit.src] + sorted(f.src for f in jit.__globals__.values() if isinstance(f, JITFunction))
    return hashlib.sha256("\n".join(sources).encode()).hexdigest()[:16]


def variant_key(launch: Launch, config) -> str:
    """Triton's own JIT cache key for this launch + config on the active target, found without compiling, prefixed
    with :func:`_source_hash` (the JIT key alone does not change when the kernel's source does)."""
    from triton import knobs

    _, inner, _ = _unwrap(launch.kernel)
    seen = []

    def hook(*, key, **_):
        seen.append(str(key))
        return True  # skip compiling

    old, knobs.runtime.jit_cache_hook = knobs.runtime.jit_cache_hook, hook
    try:
        extra = config.all_kwargs() if config is not None else {}
        inner.run(*launch.args, grid=launch.grid, warmup=True, **launch.kwargs, **extra)
    finally:
        knobs.runtime.jit_cache_hook = old
    if not seen:
        raise RuntimeError(f"{launch.kernel_name}: JIT cache already held the variant; cannot key it")
    return f"{_source_hash(_unwrap(launch.kernel)[2])}:{seen[0]}"


_PTXAS_USED = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SASS_OP = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*)", re.M)


def sass_opcodes(cubin: bytes) -> dict[str, int]:
    """Opcode (with modifiers) -> count in the cubin's SASS, via the bundled ``cuobjdump -sass``."""
    from triton import knobs

    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        sass = subprocess.run([knobs.nvidia.cuobjdump.path, "-sass", f.name], check=True, capture_output=True,
                              text=True).stdout
    counts: dict[str, int] = {}
    for op in _SASS_OP.findall(sass):
        counts[op] = counts.get(op, 0) + 1
    return counts


def summarize_sass(ops: dict[str, int]) -> dict:
    """Tensor-core forms (``HMMA``/``HGMMA``/``IMMA`` with modifiers) and a few counts worth reading."""
    def total(prefix):
        return sum(n for op, n in ops.items() if op.split(".")[0] == prefix)

    return {
        "mma": {op: n for op, n in sorted(ops.items()) if op.split(".")[0] in ("HMMA", "HGMMA", "IMMA")},
        "ffma": total("FFMA"),
        "local_loads": total("LDL"),
        "local_stores": total("STL"),
        "instructions": sum(ops.values()),
    }


def compile_variant(launch: Launch, config, arch: int) -> dict:
    """Compile one launch + config for ``arch`` through ``JITFunction.run(warmup=True)``; read its resources."""
    from triton import knobs

    _, inner, _ = _unwrap(launch.kernel)
    extra = config.all_kwargs() if config is not None else {}
    log = io.StringIO()
    start = time.perf_counter()
    old, knobs.nvidia.dump_ptxas_log = knobs.nvidia.dump_ptxas_log, True
    try:
        with contextlib.redirect_stdout(log):
            kernel = inner.run(*launch.args, grid=launch.grid, warmup=True, **launch.kwargs, **extra)
    finally:
        knobs.nvidia.dump_ptxas_log = old
    seconds = time.perf_counter() - start
    text = log.getvalue()
    regs = _PTXAS_USED.findall(text)
    spill = _PTXAS_SPILL.findall(text)
    if not regs or not spill:
        raise RuntimeError(f"no ptxas -v log for {launch.kernel_name} (was it a Triton cache hit?)\n{text}")
    stack, spill_stores, spill_loads = (int(v) for v in spill[-1])
    return {
        "registers": int(regs[-1]),
        "stack": stack,
        "spill_stores": spill_stores,
        "spill_loads": spill_loads,
        "shared": int(kernel.metadata.shared),
        "num_warps": int(kernel.metadata.num_warps),
        "num_stages": int(kernel.metadata.num_stages),
        "compile_s": round(seconds, 2),
        **summarize_sass(sass_opcodes(kernel.asm["cubin"])),
    }


def _describe(launch: Launch, config) -> dict:
    """The variant's identity for the report: kernel, dtype, constexprs and config."""
    import torch

    meta = _meta(launch, config)
    dtype = next(str(a.dtype).replace("torch.", "") for a in launch.args if isinstance(a, torch.Tensor)
                 and a.dtype.is_floating_point)
    skip = {"num_ctas", "maxnreg", "ir_override"}
    _, _, jit = _unwrap(launch.kernel)
    spec = []  # what the JIT specialises on besides the constexprs: integers == 1 or not 16-divisible, pointers
    for name, arg in zip(jit.arg_names, launch.args):  # not 16-byte aligned
        if isinstance(arg, bool) or name in meta:
            continue
        if isinstance(arg, int) and (arg == 1 or arg % 16):
            spec.append(f"{name}=1" if arg == 1 else f"{name}%16")
        elif isinstance(arg, torch.Tensor) and arg.data_ptr() % 16:
            spec.append(f"{name}:unaligned")
    return {"kernel": launch.kernel_name, "dtype": dtype, "spec": spec,
            "meta": {k: v for k, v in meta.items() if k not in skip}}


# Work shared with forked workers: set before the pool starts, read by index.
_TASKS: list[tuple[Launch, object, int]] = []


def _compile_task(index: int) -> dict:
    launch, config, arch = _TASKS[index]
    with target(arch):
        try:
            return {"ok": True, **compile_variant(launch, config, arch)}
        except Exception as e:  # noqa: BLE001 -- a failed compile is a finding, reported per variant
            return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:2000]}"}


_TILE_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_K", "num_warps", "num_stages")


def _cover(tasks: list, variants: dict) -> list:
    """A subset of ``tasks`` in which every (target, kernel, dtype, tile) appears once for fp16 and fp32 (bf16 tiles
    are fp16's: same sizes), and every (target, kernel, dtype, constexprs without the tile, specialisation) once."""
    seen, out = set(), []
    for task in tasks:
        v = variants[task[3]]
        tile = tuple((k, v["meta"].get(k)) for k in _TILE_KEYS)
        rest = tuple(sorted((k, str(x)) for k, x in v["meta"].items() if k not in _TILE_KEYS)) + tuple(v["spec"])
        tags = {("rest", v["arch"], v["kernel"], v["dtype"], rest)}
        if v["dtype"] != "bfloat16":
            tags.add(("tile", v["arch"], v["kernel"], v["dtype"], tile))
        if tags - seen:
            seen |= tags
            out.append(task)
    return out


def run_matrix(cases: list[Case], archs=(80, 90), workers: int | None = None, cover: bool = False,
               reuse: dict | None = None) -> dict:
    """Record, prune, dedupe and compile (with ``cover``, only :func:`_cover`'s subset of the variants); returns
    the report dict (see :func:`write_report`). ``reuse``: an earlier report of the same Triton version whose
    variants with the same id (target, kernel source hash, JIT key) are taken instead of compiled again."""
    import multiprocessing

    import torch
    import triton

    launches = [launch for case in cases for launch in encoder_launches(case)]
    variants: dict[tuple[int, str], dict] = {}
    tasks = []
    per_launch = []
    for arch in archs:
        with target(arch):
            for launch in launches:
                configs = kept_configs(launch)
                keys = []
                for config in configs:
                    key = variant_key(launch, config)
                    keys.append(key)
                    if (arch, key) not in variants:
                        variants[(arch, key)] = {"id": f"{arch}:{key}", "arch": arch, **_describe(launch, config),
                                                 "uses": []}
                        tasks.append((launch, config, arch, (arch, key)))
                    variants[(arch, key)]["uses"].extend(launch.uses)
                per_launch.append({"arch": arch, "use": launch.uses[0], "kernel": launch.kernel_name,
                                   "configs_kept": len(configs)})
    if cover:
        tasks = _cover(tasks, variants)
        variants = {task[3]: variants[task[3]] for task in tasks}
    previous = {}
    if reuse and reuse["triton"] == triton.__version__:
        previous = {v["id"]: v for v in reuse["variants"] if v.get("ok") and "id" in v}
    reused = 0
    for task in list(tasks):
        old = previous.get(variants[task[3]]["id"])
        if old is not None:
            keep = ("ok", "registers", "stack", "spill_stores", "spill_loads", "shared", "num_warps", "num_stages",
                    "compile_s", "mma", "ffma", "local_loads", "local_stores", "instructions")
            variants[task[3]].update({k: old[k] for k in keep})
            tasks = [t for t in tasks if t is not task]  # by identity: Launch equality compares tensors
            reused += 1
    _TASKS[:] = [(launch, config, arch) for launch, config, arch, _ in tasks]
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TRITON_CACHE_DIR"] = cache  # a fresh cache: every variant runs ptxas, so every log is read
        start = time.perf_counter()
        if workers > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(_compile_task, range(len(tasks))))
        else:
            results = [_compile_task(i) for i in range(len(tasks))]
        wall = time.perf_counter() - start
    for (_, _, _, vkey), result in zip(tasks, results):
        variants[vkey].update(result)
    out = list(variants.values())
    for v in out:
        v["uses"] = sorted(set(v["uses"]))
        v["smem_limit"] = TARGETS[v["arch"]][1]
    return {
        "triton": triton.__version__,
        "torch": torch.__version__,
        "targets": {str(a): TARGETS[a][0] for a in archs},
        "cases": [str(c) for c in cases],
        "subset": "cover" if cover else "all",
        "launches": per_launch,
        "variants": out,
        "compile_wall_s": round(wall, 1),
        "compiled": len(tasks),
        "reused": reused,
        "workers": workers,
    }


# ----------------------------------------------------------------------------------------------------------------
# First-call cost of `fastbert encode`
# ----------------------------------------------------------------------------------------------------------------

def autotune_key(launch: Launch) -> tuple | None:
    """The key Triton's ``Autotuner.run`` caches the chosen config under (its ``key`` arguments, then the dtype of
    every tensor argument); None for kernels that are not tuned (one config or no autotuner)."""
    tuner, _, _ = _unwrap(launch.kernel)
    if tuner is None or len(tuner.configs) == 1:
        return None
    args = {**dict(zip(tuner.arg_names, launch.args)), **launch.kwargs}
    args = {k: v for k, v in args.items() if k in tuner.arg_names}
    return (launch.kernel_name, *[args[k] for k in tuner.keys if k in args],
            *[str(v.dtype) for v in args.values() if hasattr(v, "dtype")])


def encode_batches(batch_size: int = 64, max_length: int = 512) -> list[Batch]:
    """The batches ``fastbert encode`` forms from the benchmark corpus' paragraphs (one text per paragraph):
    sorted by length, cut every ``batch_size``; a batch with padding runs packed, one without runs dense."""
    from benchmarks.corpus import _paragraph_token_counts
    from fastbert.embeddings.batching import token_budget_batches

    per_file, _, _ = _paragraph_token_counts()
    lengths = [min(n + 2, max_length) for counts in per_file for n in counts]  # + [CLS], [SEP]
    out = []
    for i, rows in enumerate(token_budget_batches(lengths, batch_size, None)):
        lens = tuple(lengths[r] for r in rows)
        out.append(Batch(f"batch{i}", "dense" if len(set(lens)) == 1 else "packed", lens, pooler=False))
    return out


def first_call(arch: int = 90, dtype: str = "float16", shape: str = "minilm", batch_size: int = 64) -> dict:
    """What one ``fastbert encode`` process on a GPU of ``arch`` would autotune and compile for the corpus' batches
    (every layer launches the same kernels, so one layer is counted). Autotuning compiles and times every config
    the prune keeps, once per new autotune key; later launches with a known key compile the chosen config only if
    their specialisation is new (counted with the first kept config, as the choice needs a GPU)."""
    batches = encode_batches(batch_size)
    chosen: dict[tuple, object] = {}
    per_kernel: dict[str, dict] = {}
    binaries = set()
    with target(arch):
        for batch in batches:
            for launch in batch_launches(SHAPES[shape], dtype, batch, "gelu", batch.name):
                stats = per_kernel.setdefault(launch.kernel_name, {
                    "launches": 0, "autotune_keys": 0, "configs_timed": 0, "binaries": 0})
                stats["launches"] += 1
                key = autotune_key(launch)
                if key is None:
                    configs = kept_configs(launch)[:1]
                elif key in chosen:
                    configs = [chosen[key]]
                else:
                    configs = kept_configs(launch)
                    chosen[key] = configs[0]
                    stats["autotune_keys"] += 1
                    stats["configs_timed"] += len(configs) if len(configs) > 1 else 0
                for config in configs:
                    vkey = (launch.kernel_name, variant_key(launch, config))
                    if vkey not in binaries:
                        binaries.add(vkey)
                        stats["binaries"] += 1
    total = {k: sum(s[k] for s in per_kernel.values()) for k in ("launches", "autotune_keys", "configs_timed",
                                                                   "binaries")}
    return {"arch": arch, "dtype": dtype, "shape": shape, "batches": len(batches),
            "tokens": sum(sum(b.lengths) for b in batches), "per_kernel": per_kernel, "total": total}


# ----------------------------------------------------------------------------------------------------------------
# fp32 on tensor cores: tf32x3 error, emulated
# ----------------------------------------------------------------------------------------------------------------

def _tf32_rna(x):
    """``cvt.rna.tf32.f32``: round an fp32 tensor to TF32 (10 mantissa bits), ties away from zero."""
    return ((x.view(dtype=_torch().int32) + 0x1000) & ~0x1FFF).view(dtype=_torch().float32)


def _tf32_trunc(x):
    """What a TF32 tensor-core MMA reads of an fp32 register: the low 13 mantissa bits are ignored."""
    return (x.view(dtype=_torch().int32) & ~0x1FFF).view(dtype=_torch().float32)


def _torch():
    import torch

    return torch


def emulated_matmul(a, b, precision: str):
    """``a @ b`` in fp32 as a GPU dot of ``input_precision`` computes it: ``ieee`` (fp32 products), ``tf32`` (both
    operands rounded to TF32), ``tf32x3`` (Triton's decomposition: ``big = rna(x)``, ``small = x - big``, then
    ``small_a big_b + big_a small_b + big_a big_b`` as three TF32 products). Accumulation is the CPU's fp32 matmul,
    not the tensor core's, so this measures operand rounding, not hardware accumulation order."""
    if precision == "ieee":
        return a @ b
    if precision == "tf32":
        return _tf32_trunc(_tf32_rna(a)) @ _tf32_trunc(_tf32_rna(b))
    a_big, b_big = _tf32_rna(a), _tf32_rna(b)
    a_small, b_small = _tf32_trunc(a - a_big), _tf32_trunc(b - b_big)
    return a_small @ b_big + a_big @ b_small + a_big @ b_big


def tf32x3_errors(seed: int = 0) -> list[dict]:
    """Max error / max |reference| against fp64 for fp32 GEMMs and attention at encoder sizes, per precision."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for m, k, n in ((4096, 768, 3072), (128, 384, 1536), (32, 1024, 1024)):
        x = torch.randn(m, k, generator=gen)
        w = torch.randn(k, n, generator=gen) / k ** 0.5
        ref = x.double() @ w.double()
        rows.append({"op": f"linear {m}x{k} @ {k}x{n}", **{
            p: float((emulated_matmul(x, w, p).double() - ref).abs().max() / ref.abs().max())
            for p in ("ieee", "tf32", "tf32x3")}})
    for seqlen, head_dim in ((128, 32), (512, 64)):
        q, k, v = (2 * torch.randn(seqlen, head_dim, generator=gen) for _ in range(3))
        ref = torch.softmax(q.double() @ k.double().T / head_dim ** 0.5, -1) @ v.double()
        errs = {}
        for p in ("ieee", "tf32", "tf32x3"):
            probs = torch.softmax(emulated_matmul(q, k.T, p) / head_dim ** 0.5, -1)
            errs[p] = float((emulated_matmul(probs, v, p).double() - ref).abs().max() / ref.abs().max())
        rows.append({"op": f"attention S={seqlen} D={head_dim}", **errs})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Checks and report
# ----------------------------------------------------------------------------------------------------------------

def _has_dot(variant: dict) -> bool:
    return variant["kernel"] in ("linear_kernel", "attention_fwd_kernel", "disentangled_fwd_kernel",
                                 "attention_bwd_dkdv_kernel", "attention_bwd_dq_kernel")


def problems(variant: dict) -> list[str]:
    """What is wrong with one compiled variant (empty when it is clean)."""
    if not variant.get("ok"):
        return [f"does not compile: {variant.get('error', '?')}"]
    out = []
    if variant["shared"] > variant["smem_limit"]:
        out.append(f"shared memory {variant['shared']} B > {variant['smem_limit']} B")
    if variant["spill_stores"] or variant["spill_loads"]:
        out.append(f"spills {variant['spill_stores']} B stores / {variant['spill_loads']} B loads "
                   f"at {variant['registers']} registers")
    if _has_dot(variant) and not variant["mma"]:
        out.append("no tensor-core instruction (HMMA/HGMMA) in the SASS")
    return out


def mma_forms(variant: dict) -> str:
    return ", ".join(sorted({op.split(".")[0] + "." + op.split(".")[1] if "." in op else op
                             for op in variant.get("mma", {})})) or "-"


def _variant_label(v: dict) -> str:
    m = v["meta"]
    if v["kernel"] == "linear_kernel":
        tile = f"{m['BLOCK_M']}x{m['BLOCK_N']}x{m['BLOCK_K']}"
        extra = f"bias={int(m['HAS_BIAS'])} act={m['ACTIVATION']} even_k={int(m['EVEN_K'])}"
        extra += " pre=1" if m.get("SAVE_PRE") else ""
    elif v["kernel"].startswith("attention_") or v["kernel"] == "disentangled_fwd_kernel":
        tile = f"{m['BLOCK_M']}x{m['BLOCK_N']}"
        extra = f"D={m['HEAD_DIM']} mask={int(m['HAS_MASK'])} varlen={int(m['VARLEN'])}"
        extra += " lse=1" if m.get("SAVE_LSE") else ""
        extra += " dropout=1" if m.get("HAS_DROPOUT") else ""
        if "C2P" in m:
            extra += f" c2p={int(m['C2P'])} p2c={int(m['P2C'])}"
    elif v["kernel"] == "activation_bwd_kernel":
        tile, extra = f"block={m['BLOCK']}", f"act={m['ACTIVATION']}"
    else:
        tile = f"rows={m['BLOCK_ROWS']}x{m['BLOCK_H']}"
        extra = f"bias={int(m['HAS_BIAS'])}" if "HAS_BIAS" in m else ""
        extra += " dropout=1" if m.get("HAS_DROPOUT") else ""
    spec = f" [{' '.join(v['spec'])}]" if v.get("spec") else ""
    return f"{tile} w{m.get('num_warps', 4)} s{m.get('num_stages', '-')} {extra}{spec}".strip()


def to_markdown(report: dict, command: str) -> str:
    variants = sorted(report["variants"], key=lambda v: (v["arch"], v["kernel"], v["dtype"], _variant_label(v)))
    bad = [(v, p) for v in variants if (p := problems(v))]
    lines = [
        f"# Static GPU report -- triton {report['triton']}",
        "",
        f"Generated by `{command}` on a machine without a GPU (torch {report['torch']}); do not edit by hand.",
        "",
        "Every Triton kernel variant the encoder launches for the cases below was compiled through Triton's own JIT "
        "path for each target (`GPUTarget(\"cuda\", arch, 32)`, every autotune config the prune keeps for that "
        "target); registers and spills are from Triton's `ptxas -v` run, shared memory from the kernel metadata "
        "(what the driver checks at launch), instruction forms from `cuobjdump -sass`.",
        "",
        "**What this proves**: each variant compiles for A100 / H100 with the bundled toolchain; its register, spill "
        "and shared-memory use; whether its products run on tensor cores (HMMA on sm_80; HGMMA, i.e. wgmma, or HMMA "
        "on sm_90). **What it does not prove**: speed (nothing runs: no timing, no achieved occupancy or bandwidth) or "
        "numerical correctness on hardware (tested through the Triton interpreter and, on a GPU, "
        "`tests/test_kernels_gpu.py`).",
        "",
        f"Targets: {', '.join(f'{a}: {n}' for a, n in report['targets'].items())}. "
        f"{len(report['cases'])} cases, {len(report['launches'])} launches, {len(variants)} distinct compiled "
        f"variants: {report.get('compiled', len(variants))} compiled in {report['compile_wall_s']} s on "
        f"{report['workers']} processes, {report.get('reused', 0)} taken from an earlier report of the same "
        "Triton version and kernel sources (`--reuse`).",
        "",
        f"**Problems: {len(bad)}**" + ("" if bad else " -- every variant compiles, fits the target's shared "
                                       "memory, does not spill, and fp16/bf16/fp32 dots use tensor cores."),
        "",
    ]
    for v, p in bad:
        lines.append(f"- sm_{v['arch']} {v['kernel']} {v['dtype']} {_variant_label(v)}: {'; '.join(p)}")
    lines += ["", "## Summary per kernel, target and dtype", "",
              "| target | kernel | dtype | variants | registers (max) | spill B (max) | smem B (max) | MMA forms |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    groups: dict[tuple, list] = {}
    for v in variants:
        groups.setdefault((v["arch"], v["kernel"], v["dtype"]), []).append(v)
    for (arch, kernel, dtype), vs in groups.items():
        ok = [v for v in vs if v.get("ok")]
        forms = sorted({f for v in ok for f in mma_forms(v).split(", ") if f != "-"})
        lines.append(
            f"| sm_{arch} | {kernel} | {dtype} | {len(vs)} | {max((v['registers'] for v in ok), default=0)} | "
            f"{max((v['spill_stores'] for v in ok), default=0)} | {max((v['shared'] for v in ok), default=0)} | "
            f"{', '.join(forms) or '-'} |"
        )
    lines += ["", "## Every variant", "",
              "`uses`: the launches (case: op) that compile this variant. Cases are `shape dtype batch [activation]`.",
              "", "| target | kernel | dtype | variant | regs | spill st/ld B | stack B | smem B | MMA | FFMA | uses |",
              "|---|---|---|---|---:|---:|---:|---:|---|---:|---|"]
    for v in variants:
        uses = sorted({u.split(": ")[1] for u in v["uses"]})
        n_cases = len({u.split(": ")[0] for u in v["uses"]})
        if not v.get("ok"):
            lines.append(f"| sm_{v['arch']} | {v['kernel']} | {v['dtype']} | {_variant_label(v)} | "
                         f"FAILED | | | | | | {', '.join(uses)} ({n_cases} cases) |")
            continue
        mma = ", ".join(f"{op} x{n}" for op, n in v["mma"].items()) or "-"
        lines.append(
            f"| sm_{v['arch']} | {v['kernel']} | {v['dtype']} | {_variant_label(v)} | {v['registers']} | "
            f"{v['spill_stores']}/{v['spill_loads']} | {v['stack']} | {v['shared']} | {mma} | {v['ffma']} | "
            f"{', '.join(uses)} ({n_cases} cases) |"
        )
    return "\n".join(lines) + "\n"


def _tile_summary(report: dict) -> dict[tuple, dict]:
    """Per (kernel, operands, epilogue or head dim, target, tile): the worst registers / spill / smem over every
    variant of that tile, and its MMA forms. Row kernels are left out (one deterministic config each)."""
    out: dict[tuple, dict] = {}
    for v in report["variants"]:
        if not _has_dot(v) or not v.get("ok"):
            continue
        m = v["meta"]
        if v["kernel"] == "linear_kernel":
            kernel, tile = "gemm", f"{m['BLOCK_M']}x{m['BLOCK_N']}x{m['BLOCK_K']} w{m['num_warps']} s{m['num_stages']}"
            kind = "exact GELU" if m["ACTIVATION"] == "gelu" else "other epilogues"
        else:
            kernel = v["kernel"].replace("_fwd_kernel", "")
            tile = f"{m['BLOCK_M']}x{m['BLOCK_N']} w{m['num_warps']} s{m['num_stages']}"
            kind = f"D={m['HEAD_DIM']}"
        operands = "fp32" if v["dtype"] == "float32" else "fp16/bf16"
        agg = out.setdefault((kernel, operands, kind, v["arch"], tile),
                             {"registers": 0, "spill": 0, "shared": 0, "mma": set()})
        agg["registers"] = max(agg["registers"], v["registers"])
        agg["spill"] = max(agg["spill"], v["spill_stores"])
        agg["shared"] = max(agg["shared"], v["shared"])
        agg["mma"] |= {f for f in mma_forms(v).split(", ") if f != "-"}
    return out


def compare(before: dict, after: dict) -> str:
    """Markdown: every tile of the dot kernels before and after, with registers, spill stores and shared memory
    (worst over its variants) and MMA forms; "--" where a side does not keep the tile."""
    old, new = _tile_summary(before), _tile_summary(after)

    def cell(agg, arch):
        if agg is None:
            return "--"
        over = " **> limit**" if agg["shared"] > TARGETS[arch][1] else ""
        return (f"{agg['registers']} / {agg['spill']} / {agg['shared']}{over} / "
                f"{', '.join(sorted(agg['mma'])) or 'FFMA only'}")

    lines = ["| kernel | operands | variant | target | tile | before: regs / spill B / smem B / MMA | after |",
             "|---|---|---|---|---|---|---|"]
    for key in sorted(set(old) | set(new), key=lambda k: (k[0], k[1], k[2], k[3], k[4])):
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | sm_{key[3]} | {key[4]} | {cell(old.get(key), key[3])} | "
                     f"{cell(new.get(key), key[3])} |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str, command: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    quick = "_quick" if report.get("subset") == "cover" else ""
    only = f"_{report['only']}" if report.get("only") else ""  # --only: a partial matrix, its own file
    stem = os.path.join(out_dir, f"static_triton{report['triton']}{quick}{only}")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    with open(stem + ".md", "w") as f:
        f.write(to_markdown(report, command))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.static_gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test suite's subset instead of the full matrix")
    parser.add_argument("--only", help="compile only the cases whose name contains this (e.g. mpnet)")
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=sorted(TARGETS))
    parser.add_argument("--workers", type=int, default=None, help="compile processes (default: all cores)")
    parser.add_argument("--json", help="write the raw report here (and no Markdown)")
    parser.add_argument("--reuse", help="an earlier report JSON: its unchanged variants are not compiled again")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="Markdown table of every dot tile in two report JSONs (e.g. before/after a change)")
    parser.add_argument("--tf32x3", action="store_true", help="emulated fp32 error of ieee / tf32 / tf32x3 dots")
    parser.add_argument("--first-call", action="store_true",
                        help="count what a `fastbert encode` run (MiniLM, fp16) autotunes and compiles; no compiling")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "static"),
                        help="folder for the Markdown + JSON report (full matrix)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("error: unset TRITON_INTERPRET (the kernels shrink their config lists under the interpreter)",
              file=sys.stderr)
        return 2
    if args.compare:
        reports = []
        for path in args.compare:
            with open(path) as f:
                reports.append(json.load(f))
        print(compare(*reports), end="")
        return 0
    if args.tf32x3:
        for row in tf32x3_errors():
            print(json.dumps(row))
        return 0
    if args.first_call:
        for arch in args.arch:
            print(json.dumps(first_call(arch)))
        return 0
    cases = quick_matrix() if args.quick else full_matrix()
    if args.only:
        cases = [c for c in cases if args.only in str(c)]
    reuse = None
    if args.reuse:
        with open(args.reuse) as f:
            reuse = json.load(f)
    report = run_matrix(cases, tuple(args.arch), args.workers, cover=args.quick, reuse=reuse)
    if args.only:
        report["only"] = args.only
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    else:
        write_report(report, args.out, "python -m benchmarks.static_gpu" + (" --quick" if args.quick else "")
                     + (f" --only {args.only}" if args.only else ""))
    bad = [v for v in report["variants"] if problems(v)]
    print(f"triton {report['triton']}: {len(report['variants'])} variants, {len(bad)} with problems, "
          f"{report['compile_wall_s']} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
