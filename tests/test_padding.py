"""Padding-free execution: unpad/pad, the packed encoder path and the public packed API."""
import pytest
import torch
from conftest import SENTENCES
from utils import left_pad, max_err, parity_bound

import fastbert
from fastbert.encoder.packing import pad_input, positions_in_sequence, unpad_input

BACKENDS = ["torch", "triton"]


def _mask(kind, b=4, s=13):
    mask = torch.ones(b, s, dtype=torch.long)
    if kind == "right":
        for row, n in enumerate([13, 1, 7, 10][:b]):
            mask[row, n:] = 0
    elif kind == "holes":
        mask = (torch.rand(b, s) > 0.4).long()
        mask[:, 0] = 1
    elif kind == "left":
        mask[1, :6] = 0
    return mask


@pytest.mark.parametrize("kind", ["right", "holes", "left", "none"])
def test_unpad_pad_round_trip(kind, seed):
    mask = _mask(kind)
    x = torch.randn(*mask.shape, 5, 3)
    packed, indices, cu, max_seqlen = unpad_input(x, mask)
    assert packed.shape == (int(mask.sum()), 5, 3) and max_seqlen >= int(mask.sum(1).max())
    assert cu.dtype == torch.int32 and cu.tolist() == [0, *torch.cumsum(mask.sum(1), 0).tolist()]
    back = pad_input(packed, indices, *mask.shape)
    valid = mask.bool()
    assert torch.equal(back[valid], x[valid]), seed
    assert (back[~valid] == 0).all()
    # Row i's tokens are packed in order, in rows cu[i]:cu[i+1].
    for i in range(mask.shape[0]):
        assert torch.equal(packed[cu[i]:cu[i + 1]], x[i][valid[i]])


def test_positions_in_sequence():
    cu = torch.tensor([0, 3, 3, 4, 8], dtype=torch.int32)
    assert positions_in_sequence(cu, 8).tolist() == [0, 1, 2, 0, 0, 1, 2, 3]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return fastbert.BertModel.from_pretrained(minilm_path)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", ["right", "left", "holes"])
def test_padding_free_matches_reference(minilm, hf_minilm, hf_tokenizer, backend, padding, seed):
    enc = dict(hf_tokenizer(SENTENCES[:4], padding=True, return_tensors="pt"))
    if padding == "left":
        enc = left_pad(enc)
    elif padding == "holes":
        holes = (torch.rand(enc["attention_mask"].shape) > 0.2).long()
        holes[:, 0] = 1
        enc["attention_mask"] = enc["attention_mask"] * holes
    minilm.backend, minilm.padding_free = backend, True
    try:
        with torch.no_grad():
            out = minilm(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
            ref = hf_minilm(**enc)
    finally:
        minilm.backend, minilm.padding_free = None, None
    valid = enc["attention_mask"].bool()
    assert max_err(out[0], ref[0], valid) <= parity_bound(ref[0]), seed
    assert max_err(out[1], ref[1]) <= parity_bound(ref[1]), seed
    if padding != "left":  # packed: padding positions are zeros
        assert (out[0][~valid] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_api_matches_padded(minilm, backend, seed):
    lengths = [5, 1, 0, 9]  # a length-1 and a zero-length sequence
    cu = torch.tensor([0, *torch.cumsum(torch.tensor(lengths), 0).tolist()], dtype=torch.int32)
    total = int(cu[-1])
    ids = torch.randint(1, 30522, (total,))
    types = torch.randint(0, 2, (total,))
    minilm.backend = backend
    try:
        with torch.no_grad():
            packed = minilm(ids, token_type_ids=types, cu_seqlens=cu, max_seqlen=max(lengths))
            singles = [minilm(ids[None, cu[i]:cu[i + 1]], token_type_ids=types[None, cu[i]:cu[i + 1]])
                       for i in range(len(lengths)) if lengths[i]]
    finally:
        minilm.backend = None
    assert packed.last_hidden_state.shape == (total, 384) and packed.pooler_output.shape == (4, 384)
    expected = torch.cat([s.last_hidden_state[0] for s in singles])
    assert max_err(packed.last_hidden_state, expected) <= parity_bound(expected), seed
    pooled = torch.cat([s.pooler_output for s in singles])
    nonempty = torch.tensor(lengths) > 0
    assert max_err(packed.pooler_output[nonempty], pooled) <= parity_bound(pooled), seed
    assert (packed.pooler_output[~nonempty] == 0).all()


def test_packed_api_validation(minilm):
    ids = torch.randint(0, 30522, (6,))
    with pytest.raises(ValueError, match="cu_seqlens must run from 0 to the number of tokens 6"):
        minilm(ids, cu_seqlens=torch.tensor([0, 2, 5], dtype=torch.int32), max_seqlen=3)
    with pytest.raises(ValueError, match="non-decreasing"):
        minilm(ids, cu_seqlens=torch.tensor([0, 4, 2, 6], dtype=torch.int32), max_seqlen=4)
    with pytest.raises(ValueError, match="more than max_seqlen=3"):
        minilm(ids, cu_seqlens=torch.tensor([0, 2, 6], dtype=torch.int32), max_seqlen=3)
    with pytest.raises(ValueError, match="packed input_ids must be 1-D"):
        minilm(ids[None], cu_seqlens=torch.tensor([0, 6], dtype=torch.int32), max_seqlen=6)
    with pytest.raises(ValueError, match="takes no attention_mask"):
        minilm(ids, torch.ones(6), cu_seqlens=torch.tensor([0, 6], dtype=torch.int32), max_seqlen=6)
    with pytest.raises(ValueError, match="max_seqlen is only for packed input"):
        minilm(ids[None], max_seqlen=6)
    bad = ids.clone()
    bad[3] = 30522
    with pytest.raises(ValueError, match="input_ids contains 30522"):
        minilm(bad, cu_seqlens=torch.tensor([0, 6], dtype=torch.int32), max_seqlen=6)
