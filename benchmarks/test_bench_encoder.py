"""pytest-benchmark versions of a few encoder rows (``pytest benchmarks --benchmark-only``).

The full grid, with latency percentiles, memory, FLOP utilisation and correctness checks, is
``python -m benchmarks.encoder``; these are the points worth tracking across commits with ``--benchmark-compare``.
Each benchmark records real tokens per batch and FLOPs in ``extra_info`` (tokens/s = real_tokens / time).
CUDA benchmarks are skipped without a GPU; the tiny CPU one runs everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.encoder import build_impl, hf_base_model, make_batch, model_flops, sample_lengths

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _bench(benchmark, model_name, impl, device, dtype, batch, max_length, dist):
    base = hf_base_model(model_name, seed=0).eval()
    fn, _ = build_impl(impl, base, device, dtype, validate=True)
    rng = np.random.default_rng([0, batch, max_length])
    lengths = sample_lengths(dist, batch, max_length, rng)
    inputs = make_batch(lengths, base.config.vocab_size, rng, device)
    cfg = base.config
    benchmark.extra_info.update(
        model=model_name, impl=impl, dtype=str(dtype).removeprefix("torch."), batch=batch, max_length=max_length,
        dist=dist, device=str(device), real_tokens=int(lengths.sum()),
        flops=model_flops(lengths, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers),
    )
    with torch.inference_mode():
        fn(*inputs)  # first call (compilation, autotuning) outside the timings
        benchmark(fn, *inputs)


@pytest.mark.parametrize("impl", ["fastbert", "hf-sdpa"])
def test_encoder_tiny_cpu(benchmark, impl):
    _bench(benchmark, "tiny", impl, torch.device("cpu"), torch.float32, batch=4, max_length=16, dist="uniform")


@cuda
@pytest.mark.parametrize("impl", ["fastbert", "hf-sdpa", "hf-sdpa-compile"])
@pytest.mark.parametrize("model_name,batch,max_length,dist", [
    ("bert-base", 32, 128, "real"),  # throughput, typical passage lengths
    ("bert-base", 8, 512, "full"),  # long sequences: attention-heavy
    ("minilm", 1, 128, "real"),  # sentence-embedding latency
])
def test_encoder_cuda(benchmark, model_name, impl, batch, max_length, dist):
    _bench(benchmark, model_name, impl, torch.device("cuda"), torch.float16, batch, max_length, dist)
