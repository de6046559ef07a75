"""MPNet against transformers in float32: the relative-position bias at awkward lengths, on both backends.

``tests/test_families.py`` runs MPNet's task heads, gradients, low precision and loading with the other families;
here: sequence lengths 1, 7 and 129 (129 reaches the bias' clamp at distance 128), right padding, left padding and
holes (whose packed tokens keep their distances), the packed API, the bucket function itself, and refusals.
Bound 2e-5 x max(1, |ref|) on real positions.
"""
import copy

import pytest
import torch
import transformers
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder
from utils import max_err, parity_bound, patterned_batch

import fastbert
from fastbert.encoder.position_bias import distance_bias, relative_position_bucket

VOCAB = 211


def _model(name="MPNetModel", **overrides):
    config = transformers.MPNetConfig(**dict(
        vocab_size=VOCAB, hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
        max_position_embeddings=140, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **overrides))
    model = getattr(transformers, name)(config).eval()
    base = model if name == "MPNetModel" else model.mpnet
    with torch.no_grad():  # a bias large enough that a wrong bucket or distance shows
        base.encoder.relative_attention_bias.weight.normal_(0.0, 1.0)
    return model


def _batch(seqlen, pattern):
    """:func:`utils.patterned_batch` with the pad token 1, as the tokenizer pads."""
    return patterned_batch(seqlen, pattern, VOCAB, 1)


def test_bucket_is_transformers_bucket():
    relative = torch.arange(-400, 401)
    assert torch.equal(relative_position_bucket(relative), MPNetEncoder.relative_position_bucket(relative))
    table = torch.randn(32, 5)
    by_distance = distance_bias(table)  # [heads, 257]
    expected = table[MPNetEncoder.relative_position_bucket(relative.clamp(-128, 128))].t()
    assert torch.equal(by_distance[:, relative.clamp(-128, 128) + 128], expected)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("pattern", ["right", "left", "holes"])
@pytest.mark.parametrize("seqlen", [1, 7, 129])
def test_matches_transformers(backend, pattern, seqlen, seed):
    if backend == "triton" and seqlen == 129 and pattern != "holes":
        pytest.skip("interpreter time: 129 runs once on Triton (holes: packed positions that skip)")
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref), backend=backend)
    ids, mask = _batch(seqlen, pattern)
    with torch.no_grad():
        expected, got = ref(ids, attention_mask=mask), model(ids, attention_mask=mask)
    assert max_err(got[0], expected[0], mask) <= parity_bound(expected[0][mask.bool()]), seed
    assert max_err(got[1], expected[1]) <= parity_bound(expected[1]), seed


def test_own_model_packed_api_and_padding_free(tmp_path, seed):
    """fastbert's own MPNet from save_pretrained: padding-free on the PyTorch backend, and the packed API (positions
    and bias distances counted within each sequence) against transformers on each sequence alone."""
    ref = _model("MPNetForMaskedLM")
    ref.save_pretrained(tmp_path)
    model = fastbert.AutoModel.from_pretrained(tmp_path, backend="torch")
    assert model.config.relative_attention_buckets == 32 and model.pooler is None
    ids, mask = _batch(129, "holes")
    with torch.no_grad():
        expected = ref.mpnet(ids, attention_mask=mask)[0]
        model.padding_free = True
        got = model(ids, mask)[0]
        lengths = [129, 40, 1]
        seqs = [ids[0], ids[1, :40], ids[2, :1]]
        cu = torch.tensor([0, 129, 169, 170], dtype=torch.int32)
        packed = model(torch.cat(seqs), cu_seqlens=cu, max_seqlen=129)[0]
        alone = [ref.mpnet(s[None])[0][0] for s in seqs]
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()]), seed
    for (start, n), e in zip(zip(cu[:-1].tolist(), lengths), alone):
        assert max_err(packed[start:start + n], e) <= parity_bound(e), seed


def test_refusals(tmp_path):
    import json

    config = _model().config.to_dict()
    (tmp_path / "config.json").write_text(json.dumps(dict(config, relative_attention_num_buckets=16)))
    with pytest.raises(ValueError, match="relative_attention_num_buckets=16 \\(transformers' MPNet always computes "
                                         "32 buckets"):
        fastbert.BertConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="relative_attention_buckets must be an integer >= 32"):
        fastbert.BertConfig(model_type="mpnet", relative_attention_buckets=8)


@pytest.mark.parametrize("name", ["MPNetModel", "MPNetForMaskedLM", "MPNetForTokenClassification"])
def test_return_dict_false_tuples(name, seed):
    """MPNet's forward builds its tuple by hand, keeping a None pooler_output in second place; its heads read hidden
    states at index 2. fastbert's tuple has the same places and values."""
    ref = _model(name)
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask = _batch(7, "right")
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, return_dict=False, output_hidden_states=True)
        got = model(ids, attention_mask=mask, return_dict=False, output_hidden_states=True)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if isinstance(e, tuple):
            assert len(g) == len(e)
            for gh, eh in zip(g, e):
                assert max_err(gh, eh, mask) <= parity_bound(eh[mask.bool()]), seed
        else:
            where = mask if e.dim() == 3 else None
            assert max_err(g, e, where) <= parity_bound(e if where is None else e[mask.bool()]), seed
