"""CPU float32 DeBERTa-v3-base (random weights): fastbert against transformers (eager: its only attention).

    python -m benchmarks.cpu_deberta                        # batch 16 of real lengths (max 512), 3 rounds, 1 thread
    python -m benchmarks.cpu_deberta --batch 32 --max-length 256 --rounds 5 --threads 2

The model is DeBERTa-v3-base's shape (hidden 768, 12 layers, 12 heads, FFN 3072, vocabulary 128100, 256 position
buckets over 512 relative positions, shared attention keys, LayerNormed relative embeddings, no absolute positions).
The batch: ``--batch`` passage lengths drawn from the bundled corpus (:func:`benchmarks.corpus.sample_lengths`),
right-padded random ids. Each row runs once as warm-up (its output gives the max error against transformers eager
on real positions), then the rows take turns for ``--rounds`` rounds; reported is each row's median wall time and
its ratio to transformers eager. The load average is recorded before and after, since other processes' load moves
the numbers. Results: ``benchmarks/results/cpu/cpu_deberta.json`` and ``.md``.
"""
from __future__ import annotations

import copy
import os
from typing import Sequence

import numpy as np

from benchmarks import cpu_family

V3_BASE = dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072, max_position_embeddings=512, relative_attention=True, position_buckets=256,
               max_relative_positions=512, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
               position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)


def build_rows(seed: int) -> dict:
    """row name -> callable (ids, mask) -> last_hidden_state."""
    import torch
    import transformers

    import fastbert

    torch.manual_seed(seed)
    base = transformers.DebertaV2Model(transformers.DebertaV2Config(**V3_BASE)).eval()
    # transformers' DeBERTa has one attention (its own bmm/softmax code): attn_implementation="sdpa" only logs that
    # it cannot be set, so there is no hf-sdpa row to time
    rows = {"hf-eager": base, "fastbert": fastbert.optimize(copy.deepcopy(base), backend="torch")}
    return {name: (lambda m: lambda ids, mask: m(input_ids=ids, attention_mask=mask).last_hidden_state)(model)
            for name, model in rows.items()}


def run(args) -> dict:
    import torch

    from benchmarks.corpus import sample_lengths

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    lengths = sample_lengths(args.max_length, args.batch, rng)
    seqlen = int(lengths.max())
    ids = torch.from_numpy(rng.integers(1000, 128000, size=(args.batch, seqlen)))
    mask = torch.from_numpy((np.arange(seqlen)[None, :] < lengths[:, None]).astype(np.int64))
    ids[mask == 0] = 0
    rows = build_rows(args.seed)
    load_before = os.getloadavg()
    timed = cpu_family.time_rows(rows, (ids, mask), mask.bool(), args.rounds)
    return cpu_family.result(args, "DeBERTa-v3-base shape, random weights, float32", lengths, seqlen, load_before, timed)


TITLE = "DeBERTa-v3-base shape"


def main(argv: Sequence[str] | None = None) -> int:
    return cpu_family.main_for(run, "cpu_deberta", TITLE, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(main())
