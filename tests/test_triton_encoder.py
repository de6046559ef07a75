"""The whole encoder on the Triton backend vs transformers' eager BertModel (all-MiniLM-L6-v2).

Without a GPU the kernels run on CPU through the Triton interpreter, so batches are small (3 x 16). Both Triton
paths are covered: padded (attention with a key mask) and padding-free (packed, ``cu_seqlens`` attention).
"""
import os

import torch

if not torch.cuda.is_available():  # must precede the first triton.jit; tests/conftest.py does the same
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from utils import max_err, parity_bound  # noqa: E402

import fastbert  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCH, SEQLEN = 3, 16


def _inputs(pattern: str):
    """ids/types/mask [3, 16]: row 0 right-padded, row 1 left-padded ("mixed") or full ("no_left"), row 2 holes."""
    ids = torch.randint(1000, 30000, (BATCH, SEQLEN))
    ids[:, 0] = 101  # [CLS]
    types = torch.randint(0, 2, (BATCH, SEQLEN))
    mask = torch.ones(BATCH, SEQLEN, dtype=torch.long)
    mask[0, 9:] = 0
    if pattern == "mixed":
        mask[1, :5] = 0
    mask[2, [3, 7, 8, 15]] = 0
    return ids, types, mask


@pytest.fixture(scope="module")
def triton_minilm(minilm_path):
    return fastbert.BertModel.from_pretrained(minilm_path, backend="triton", device=DEVICE)


@pytest.mark.parametrize(
    "pattern,padding_free",
    [("mixed", False), ("no_left", True)],
    ids=["padded-right-left-holes", "packed-right-holes"],
)
def test_fp32_parity(triton_minilm, hf_minilm, seed, pattern, padding_free):
    ids, types, mask = _inputs(pattern)
    triton_minilm.padding_free = padding_free
    with torch.no_grad():
        ref = hf_minilm(ids, attention_mask=mask, token_type_ids=types)
        out = triton_minilm(ids.to(DEVICE), mask.to(DEVICE), types.to(DEVICE))
    last, pooled = out.last_hidden_state.cpu(), out.pooler_output.cpu()
    assert torch.isfinite(last).all()
    err = max_err(last, ref.last_hidden_state, mask)
    assert err <= parity_bound(ref.last_hidden_state[mask.bool()]), (err, seed)
    err = max_err(pooled, ref.pooler_output)
    assert err <= parity_bound(ref.pooler_output), (err, seed)


def test_fp32_no_mask(triton_minilm, hf_minilm, seed):
    ids = torch.randint(1000, 30000, (2, 7))
    with torch.no_grad():
        ref = hf_minilm(ids)
        out = triton_minilm(ids.to(DEVICE))
    assert max_err(out[0].cpu(), ref[0]) <= parity_bound(ref[0]), seed
    assert max_err(out[1].cpu(), ref[1]) <= parity_bound(ref[1]), seed


def test_fp16_relative_to_hf_fp16(minilm_path, hf_minilm, seed):
    """err(fastbert-triton fp16 vs HF fp32) <= 1.5 x err(HF fp16 vs HF fp32), on valid positions (padded path)."""
    from transformers import BertModel as HFBertModel

    k = 1.5
    ids, types, mask = _inputs("mixed")
    hf_low = HFBertModel.from_pretrained(minilm_path, attn_implementation="eager", dtype=torch.float16).eval()
    fb_low = fastbert.BertModel.from_pretrained(minilm_path, dtype=torch.float16, backend="triton", device=DEVICE)
    with torch.no_grad():
        ref = hf_minilm(ids, attention_mask=mask, token_type_ids=types)
        ref_low = hf_low(ids, attention_mask=mask, token_type_ids=types)
        out = fb_low(ids.to(DEVICE), mask.to(DEVICE), types.to(DEVICE))
    assert out.last_hidden_state.dtype == torch.float16
    for name in ("last_hidden_state", "pooler_output"):
        where = mask if name == "last_hidden_state" else None
        ours = max_err(getattr(out, name).cpu(), getattr(ref, name), where)
        theirs = max_err(getattr(ref_low, name), getattr(ref, name), where)
        assert ours <= k * theirs, (name, ours, theirs, seed)
