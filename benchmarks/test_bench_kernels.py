"""pytest-benchmark versions of the kernel microbenchmarks (``pytest benchmarks --benchmark-only``; CUDA only).

The full table with TFLOP/s and GB/s against measured ceilings is ``python -m benchmarks.bench_kernels``; these
are the points worth tracking across commits with ``--benchmark-compare``. The ``benchmark`` fixture in
``benchmarks/conftest.py`` synchronises CUDA around its clock. Each benchmark stores FLOPs or bytes in
``extra_info``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _run(benchmark, fn, **info):
    benchmark.extra_info.update(info)
    fn()  # compile / autotune outside the timings
    torch.cuda.synchronize()
    benchmark(fn)


@pytest.mark.parametrize("impl", ["triton", "triton-packed", "sdpa"])
def test_attention_seq512_40pct_padding(benchmark, impl):
    from fastbert.kernels import attention as attn

    batch, seqlen, heads, head_dim, length = 32, 512, 12, 64, 307
    qkv = torch.randn(batch, seqlen, 3, heads, head_dim, device="cuda", dtype=torch.float16)
    q, k, v = qkv.unbind(2)
    key_mask = (torch.arange(seqlen, device="cuda") < length).expand(batch, seqlen).contiguous()
    if impl == "triton":
        fn = lambda: attn.attention(q, k, v, key_mask)  # noqa: E731
    elif impl == "triton-packed":
        pq, pk, pv = qkv[key_mask].unbind(1)
        cu = torch.arange(0, (batch + 1) * length, length, device="cuda", dtype=torch.int32)
        fn = lambda: attn.attention_varlen(pq, pk, pv, cu, seqlen)  # noqa: E731
    else:
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, attn_mask=key_mask[:, None, None, :])  # noqa: E731
    _run(benchmark, fn, flops=4 * heads * head_dim * batch * length**2, impl=impl)


@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_bias_residual_layernorm_base(benchmark, impl):
    from fastbert.kernels import layernorm as ln

    tokens, hidden = 64 * 128, 768
    x, r = (torch.randn(tokens, hidden, device="cuda", dtype=torch.float16) for _ in range(2))
    b, w, lb = (torch.randn(hidden, device="cuda", dtype=torch.float16) for _ in range(3))
    if impl == "triton":
        fn = lambda: ln.bias_residual_layernorm(x, b, r, w, lb, 1e-12)  # noqa: E731
    else:
        fn = lambda: F.layer_norm(x + b + r, (hidden,), w, lb, 1e-12)  # noqa: E731
    _run(benchmark, fn, bytes=3 * tokens * hidden * 2, impl=impl)


@pytest.mark.parametrize("impl", ["triton", "addmm+gelu", "mm"])
def test_ffn_up_gelu_base(benchmark, impl):
    from fastbert.kernels import gemm

    tokens, k, n = 64 * 128, 768, 3072
    x = torch.randn(tokens, k, device="cuda", dtype=torch.float16)
    w = torch.randn(n, k, device="cuda", dtype=torch.float16) / math.sqrt(k)
    b = torch.randn(n, device="cuda", dtype=torch.float16)
    if impl == "triton":
        fn = lambda: gemm.linear(x, w, b, "gelu")  # noqa: E731
    elif impl == "addmm+gelu":
        fn = lambda: F.gelu(torch.addmm(b, x, w.t()))  # noqa: E731
    else:
        fn = lambda: torch.mm(x, w.t())  # noqa: E731
    _run(benchmark, fn, flops=2 * tokens * n * k, impl=impl)
