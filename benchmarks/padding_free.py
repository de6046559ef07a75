"""Padding-free execution and per-call overheads, measured.

    python -m benchmarks.padding_free [--models bert-base] [--dtypes fp16] [--batch 32] [--length 512]

Three timings of fastbert on the same model (issue goal in brackets, H100 fp16 BERT-base):

* ``packed``  -- a right-padded batch whose real tokens are 60% of its slots, padding-free path (the default on GPU);
* ``padded``  -- the same batch on the padded path (``padding_free=False``)        [packed >= 1.5x faster];
* ``dense``   -- a full batch of as many real tokens (60% of the rows, no padding)  [packed <= 1.10x its time].

And two overheads: the input validation (forward with ``validate_inputs`` on vs off, batch 1, the check alone), and
one device-to-host sync (a tiny reduction read back with ``.item()`` vs only enqueued). Without CUDA a tiny CPU
grid runs instead, labelled CPU. Writes ``padding_free.json`` and ``padding_free.md`` to
``benchmarks/results/<device>/``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .encoder import DTYPES, RESULTS, device_slug, environment, hf_base_model, make_batch, sync, time_calls


def _median_ms(fn, device, rep_ms) -> float:
    fn()
    return statistics.median(time_calls(fn, device, warmup_ms=rep_ms / 4, rep_ms=rep_ms))


def _fastbert(base, device, dtype):
    import fastbert
    from fastbert.encoder.weights import remap_state_dict

    model = fastbert.BertModel(fastbert.BertConfig.from_hf(base.config), add_pooling_layer=False)
    sd = {k: v for k, v in remap_state_dict(base.state_dict(), model.config).items() if not k.startswith("pooler.")}
    model.load_state_dict(sd, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def padding_rows(model, device, batch, length, rep_ms) -> dict:
    """packed / padded / dense timings for a 60%-real batch."""
    rng = np.random.default_rng(0)
    lengths = np.linspace(0.2 * length, length, batch).round().astype(np.int64)  # mean 0.6 x length
    dense_rows = max(1, int(round(lengths.sum() / length)))
    ragged = make_batch(lengths, model.config.vocab_size, rng, device)
    dense = make_batch(np.full(dense_rows, length), model.config.vocab_size, rng, device)
    times = {}
    with torch.inference_mode():
        for name, inputs, padding_free in (("packed", ragged, True), ("padded", ragged, False),
                                           ("dense", dense, None)):
            model.padding_free = padding_free
            times[name] = _median_ms(lambda: model(*inputs), device, rep_ms)
    model.padding_free = None
    real = int(lengths.sum())
    return dict(batch=batch, max_length=length, real_fraction=real / (batch * length), real_tokens=real,
                dense_rows=dense_rows, dense_tokens=dense_rows * length,
                packed_ms=times["packed"], padded_ms=times["padded"], dense_ms=times["dense"],
                packed_over_dense=times["packed"] / times["dense"], padded_over_packed=times["padded"] / times["packed"])


def overheads(model, device, rep_ms) -> dict:
    """Validation cost at batch 1 (seq 128 or the model max) and one host sync."""
    from fastbert.encoder.inputs import check_inputs

    length = min(128, model.config.max_position_embeddings)
    ids, mask, types = make_batch(np.array([length]), model.config.vocab_size, np.random.default_rng(1), device)
    out = {}
    with torch.inference_mode():
        for validate in (True, False):
            model.validate_inputs = validate
            out[f"forward_b1_validate_{'on' if validate else 'off'}_ms"] = _median_ms(
                lambda: model(ids, mask, types), device, rep_ms)
        model.validate_inputs = True
        out["check_inputs_ms"] = _median_ms(lambda: check_inputs(model.config, ids, mask, types, None),
                                            device, rep_ms)
    out["validation_share"] = out["check_inputs_ms"] / out["forward_b1_validate_on_ms"]
    if device.type == "cuda":
        x = torch.ones(1024, device=device)

        def wall_us(fn, n=2000):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            return (time.perf_counter() - t0) / n * 1e6

        enqueue = wall_us(lambda: x.sum())
        read_back = wall_us(lambda: x.sum().item())
        out.update(sum_enqueue_us=enqueue, sum_item_us=read_back, sync_cost_us=read_back - enqueue)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.padding_free", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=None, help="default: bert-base on GPU, tiny on CPU")
    parser.add_argument("--dtypes", nargs="+", default=None, choices=list(DTYPES))
    parser.add_argument("--batch", type=int, default=None, help="default 32 on GPU, 8 on CPU")
    parser.add_argument("--length", type=int, default=None, help="default 512 on GPU, 32 on CPU")
    parser.add_argument("--rep-ms", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    models = args.models or (["bert-base"] if gpu else ["tiny"])
    dtypes = args.dtypes or (["fp16"] if gpu else ["fp32"])
    batch, length = args.batch or (32 if gpu else 8), args.length or (512 if gpu else 32)
    rep_ms = args.rep_ms or (500.0 if gpu else 200.0)
    out_dir = args.out or RESULTS / device_slug(device)
    out_dir.mkdir(parents=True, exist_ok=True)

    rows = []
    for name in models:
        base = hf_base_model(name, seed=0)
        for dtype_name in dtypes:
            model = _fastbert(base, device, DTYPES[dtype_name])
            row = dict(model=name, dtype=dtype_name)
            row.update(padding_rows(model, device, batch, min(length, model.config.max_position_embeddings), rep_ms))
            row.update(overheads(model, device, rep_ms))
            rows.append(row)
            del model
            if gpu:
                torch.cuda.empty_cache()
    env = environment(device)
    label = env["device_name"] if gpu else f"CPU: {env['cpu']} (not GPU numbers)"
    (out_dir / "padding_free.json").write_text(json.dumps(dict(label=label, environment=env, rows=rows), indent=2))
    lines = [f"# Padding-free execution and overheads — {label}", "",
             f"torch {env['torch']}, triton {env['triton']}, commit {env['git_commit']}, {env['date']}", "",
             "| model | dtype | batch x len | real | packed ms | padded ms | dense ms (same real tokens) | "
             "packed/dense (goal <= 1.10) | padded/packed (goal >= 1.5) | validation share of b1 forward | sync us |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        sync_us = f"{r['sync_cost_us']:.1f}" if "sync_cost_us" in r else "n/a (CPU)"
        lines.append(f"| {r['model']} | {r['dtype']} | {r['batch']} x {r['max_length']} | {r['real_fraction']:.0%} | "
                     f"{r['packed_ms']:.3f} | {r['padded_ms']:.3f} | {r['dense_ms']:.3f} | "
                     f"{r['packed_over_dense']:.2f} | {r['padded_over_packed']:.2f} | "
                     f"{r['validation_share']:.1%} | {sync_us} |")
    (out_dir / "padding_free.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
