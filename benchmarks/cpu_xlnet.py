"""CPU float32 XLNet-base (random weights): fastbert against transformers (eager: XLNet's only attention).

    python -m benchmarks.cpu_xlnet                          # batch 16 of real lengths (max 512), 3 rounds, 1 thread
    python -m benchmarks.cpu_xlnet --batch 32 --max-length 256 --rounds 5 --threads 2

The model is xlnet-base-cased's shape (d_model 768, 12 layers, 12 heads, FFN 3072, vocabulary 32000, gelu, no
clamp, ``use_mems_eval`` on as released: both rows return the new memories).
The batch: ``--batch`` passage lengths drawn from the bundled corpus (:func:`benchmarks.corpus.sample_lengths`),
left-padded random ids (XLNet's tokenizer pads on the left) with a pair's segment ids (0, 1, and 2 on the last
token). Each row runs once as warm-up (its output gives the max error against transformers eager
on real positions), then the rows take turns for ``--rounds`` rounds; reported is each row's median wall time and
its ratio to transformers eager. The load average is recorded before and after, since other processes' load moves
the numbers. Results: ``benchmarks/results/cpu/cpu_xlnet.json`` and ``.md``.
"""
from __future__ import annotations

import copy
import os
from typing import Sequence

import numpy as np

from benchmarks import cpu_family

XLNET_BASE = dict(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072, ff_activation="gelu",
                  dropout=0.0)


def build_rows(seed: int) -> dict:
    """row name -> callable (ids, mask) -> last_hidden_state."""
    import torch
    import transformers

    import fastbert

    torch.manual_seed(seed)
    base = transformers.XLNetModel(transformers.XLNetConfig(**XLNET_BASE)).eval()
    # transformers' XLNet has one attention (its own einsum/softmax code), so there is no hf-sdpa row to time
    rows = {"hf-eager": base, "fastbert": fastbert.optimize(copy.deepcopy(base), backend="torch")}
    return {name: (lambda m: lambda ids, mask, types: m(input_ids=ids, attention_mask=mask,
                                                        token_type_ids=types).last_hidden_state)(model)
            for name, model in rows.items()}


def run(args) -> dict:
    import torch

    from benchmarks.corpus import sample_lengths

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    lengths = sample_lengths(args.max_length, args.batch, rng)
    seqlen = int(lengths.max())
    ids = torch.from_numpy(rng.integers(10, 32000, size=(args.batch, seqlen)))
    mask = torch.from_numpy((np.arange(seqlen)[None, ::-1] < lengths[:, None]).astype(np.int64))  # left padding
    ids[mask == 0] = 5
    second = torch.from_numpy(np.arange(seqlen)[None, :] >= seqlen - lengths[:, None] // 3)  # a pair: last third
    types = second.long()
    types[:, -1] = 2
    rows = build_rows(args.seed)
    load_before = os.getloadavg()
    timed = cpu_family.time_rows(rows, (ids, mask, types), mask.bool(), args.rounds)
    return cpu_family.result(args, "XLNet-base shape, random weights, float32", lengths, seqlen, load_before, timed)


TITLE = "XLNet-base shape, left padded"


def main(argv: Sequence[str] | None = None) -> int:
    return cpu_family.main_for(run, "cpu_xlnet", TITLE, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
