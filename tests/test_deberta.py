"""DeBERTa-v2/v3 against transformers in float32: the disentangled attention at awkward lengths.

``tests/test_families.py`` runs DeBERTa's task heads, gradients, low precision and loading with the other families;
here: sequence lengths 1, 7 and 129 (129 reaches past the log buckets' range and the relative embeddings' clamp),
right padding, left padding and holes, on the padding-free (length buckets) and padded paths; every ``pos_att_type``
subset; v3's real bucket sizes; the packed API; the bucket function itself; and the refusals (every config setting
fastbert does not implement); and the same on the Triton backend (``fastbert.kernels.disentangled``, through the
interpreter without a GPU). Bound 2e-5 x max(1, |ref|) on real positions.
"""
import contextlib
import copy
import json

import pytest
import torch
import transformers
from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position
from utils import max_err, parity_bound, patterned_batch

import fastbert
from fastbert.encoder.position_bias import deberta_bucket

VOCAB = 211
V3 = dict(relative_attention=True, position_buckets=16, max_relative_positions=64, pos_att_type="p2c|c2p",
          share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0)


def _model(name="DebertaV2Model", **overrides):
    config = transformers.DebertaV2Config(**{
        **dict(vocab_size=VOCAB, hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
               max_position_embeddings=140, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
        **V3, **overrides})
    model = getattr(transformers, name)(config).eval()
    base = model if name == "DebertaV2Model" else model.deberta
    with torch.no_grad():  # relative embeddings large enough that a wrong bucket or distance shows
        base.encoder.rel_embeddings.weight.normal_(0.0, 1.0)
    return model


def _batch(seqlen, pattern):
    """:func:`utils.patterned_batch` with the pad token 0."""
    return patterned_batch(seqlen, pattern, VOCAB, 0)


def _check(model, ref, ids, mask, seed):
    with torch.no_grad():
        expected, got = ref(ids, attention_mask=mask)[0], model(ids, attention_mask=mask)[0]
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()]), seed


def test_token_type_ids_ignored_without_token_types(seed):
    """DeBERTa-v3 has no token types but its tokenizer returns token_type_ids: transformers ignores them, so does
    fastbert (the other families refuse them)."""
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask = _batch(7, "holes")
    types = torch.randint(0, 2, ids.shape)
    with torch.no_grad():
        expected, got = ref(ids, mask, types)[0], model(ids, mask, types)[0]
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()]), seed


def test_bucket_is_transformers_bucket():
    relative = torch.arange(-700, 701)
    for buckets, max_position in ((256, 512), (16, 64), (32, 140), (2, 10)):
        assert torch.equal(deberta_bucket(relative, buckets, max_position),
                           make_log_bucket_position(relative, buckets, max_position).long()), (buckets, max_position)


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize("pattern", ["right", "left", "holes"])
@pytest.mark.parametrize("seqlen", [1, 7, 129])
def test_matches_transformers(padding_free, pattern, seqlen, seed):
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref), padding_free=padding_free)
    _check(model, ref, *_batch(seqlen, pattern), seed)


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize("pattern", ["right", "left", "holes"])
@pytest.mark.parametrize("pos_att_type", ["p2c|c2p", "c2p", "p2c"])
def test_one_sequence_per_sdpa_call(monkeypatch, padding_free, pattern, pos_att_type, seed):
    """The PyTorch backend splits a group's sequences into SDPA calls of at most ``_MASK_BUDGET`` mask elements;
    a budget of 1 makes every call one sequence (each slicing its own index, key mask and rows)."""
    from fastbert.encoder.backends import torch_ops

    monkeypatch.setattr(torch_ops, "_MASK_BUDGET", 1)
    ref = _model(pos_att_type=pos_att_type)
    model = fastbert.optimize(copy.deepcopy(ref), padding_free=padding_free, backend="torch")
    _check(model, ref, *_batch(129, pattern), seed)


@pytest.mark.parametrize("overrides", [
    dict(pos_att_type="c2p"), dict(pos_att_type="p2c"), dict(pos_att_type=None),
    dict(norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2),  # v2's older layout
    dict(position_buckets=-1, max_relative_positions=-1),  # no buckets: one embedding per distance up to 140
    dict(position_buckets=-1, max_relative_positions=40),  # no buckets, distances clamped at 40
    dict(position_buckets=256, max_relative_positions=512),  # v3's sizes
], ids=["c2p", "p2c", "none", "v2-layout", "unbucketed", "unbucketed-clamped", "v3-sizes"])
def test_config_variants(overrides, seed):
    ref = _model(**overrides)
    model = fastbert.optimize(copy.deepcopy(ref))
    for pattern in ("left", "holes"):
        _check(model, ref, *_batch(129, pattern), seed)


def test_own_model_packed_api_and_padding_free(tmp_path, seed):
    """fastbert's own DeBERTa from save_pretrained (no pooler, no position table): padding-free and padded, and the
    packed API (distances counted within each sequence) against transformers on each sequence alone."""
    ref = _model("DebertaV2ForMaskedLM")
    ref.save_pretrained(tmp_path)
    model = fastbert.AutoModel.from_pretrained(tmp_path)
    assert model.pooler is None and model.embeddings.position is None and model.config.disentangled.span == 16
    ids, mask = _batch(129, "holes")
    with torch.no_grad():
        expected = ref.deberta(ids, attention_mask=mask)[0]
        for padding_free in (True, False):
            model.padding_free = padding_free
            got = model(ids, mask)[0]
            assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()]), (padding_free, seed)
        lengths = [129, 40, 1]
        seqs = [ids[0], ids[1, :40], ids[2, :1]]
        cu = torch.tensor([0, 129, 169, 170], dtype=torch.int32)
        packed = model(torch.cat(seqs), cu_seqlens=cu, max_seqlen=129)[0]
        alone = [ref.deberta(s[None])[0][0] for s in seqs]
    for (start, n), e in zip(zip(cu[:-1].tolist(), lengths), alone):
        assert max_err(packed[start:start + n], e) <= parity_bound(e), seed


@pytest.mark.parametrize("overrides, message", [
    (dict(relative_attention=False), "relative_attention=False"),
    (dict(share_att_key=False), "share_att_key=False"),
    (dict(pos_att_type="p2c|c2p|p2p"), "pos_att_type \\['p2p'\\]"),
    (dict(norm_rel_ebd="layer_norm|other"), "norm_rel_ebd \\['other'\\]"),
    (dict(conv_kernel_size=3), "conv_kernel_size=3 \\(the convolution layer"),
    (dict(embedding_size=48), "embedding_size=48 != hidden_size"),
    (dict(attention_head_size=8), "attention_head_size=8"),
    (dict(position_buckets="256"), "position_buckets='256'"),
])
def test_refusals(overrides, message, tmp_path):
    config = dict(_model().config.to_dict(), **overrides)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="unsupported deberta-v2 configuration: .*" + message):
        fastbert.BertConfig.from_pretrained(tmp_path)


def test_triton_covers_deberta_and_refuses_wide_heads():
    """The Triton backend runs DeBERTa (``auto`` may take it); only head dims past the kernel's 256 are refused, by
    name."""
    from fastbert.encoder import ops

    assert fastbert.BertConfig.from_hf(_model().config).triton_missing is None
    wide = transformers.DebertaV2Config(**{**V3, "hidden_size": 600, "num_attention_heads": 2})
    missing = fastbert.BertConfig.from_hf(wide).triton_missing
    assert "head dims up to 256, not 300" in missing
    with pytest.raises(ValueError, match="backend 'triton' requested but DeBERTa's disentangled attention kernel"):
        ops.resolve_backend("triton", torch.device("cuda"), triton_missing=missing)
    assert ops.resolve_backend("auto", torch.device("cuda"), triton_missing=missing) == "torch"


# ----------------------------------------------------------------------------------------------------------------
# The Triton backend (fastbert.kernels.disentangled; on CPU through the Triton interpreter)
# ----------------------------------------------------------------------------------------------------------------

@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the disentangled kernel's launches (padded, packed), so a test knows the kernel ran."""
    from fastbert.kernels import disentangled as dis

    calls = {"padded": 0, "packed": 0}
    for layout, name in (("padded", "disentangled_attention"), ("packed", "disentangled_attention_varlen")):
        def counted(*args, _fn=getattr(dis, name), _layout=layout, **kwargs):
            calls[_layout] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(dis, name, counted)
    return calls


def _triton(ref, **kwargs):
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return fastbert.optimize(copy.deepcopy(ref), backend="triton", **kwargs).to(device), device


def _check_triton(model, device, ref, ids, mask, seed, padding_too=False):
    """Real positions at the fp32 bound; ``padding_too``: every position (the padded path's padding queries)."""
    with torch.no_grad():
        expected, got = ref(ids, attention_mask=mask)[0], model(ids.to(device), attention_mask=mask.to(device))[0]
    got = got.cpu()
    assert torch.isfinite(got).all()
    assert max_err(got, expected, mask) <= parity_bound(expected[mask.bool()]), seed
    if padding_too:
        assert max_err(got, expected) <= parity_bound(expected), seed


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize("pattern", ["right", "left", "holes"])
@pytest.mark.parametrize("seqlen", [1, 7, 129])
def test_triton_matches_transformers(kernel_calls, padding_free, pattern, seqlen, seed):
    """Padded (key mask; left padding keeps it even padding-free) and packed, at the family's fp32 bound; on the
    padded path the padding positions match transformers too (their uniform attention)."""
    ref = _model()
    model, device = _triton(ref, padding_free=padding_free)
    ids, mask = _batch(seqlen, pattern)
    _check_triton(model, device, ref, ids, mask, seed, padding_too=not padding_free)
    assert sum(kernel_calls.values()) == ref.config.num_hidden_layers


@pytest.mark.parametrize("overrides", [
    dict(pos_att_type="c2p"), dict(pos_att_type="p2c"), dict(pos_att_type=None),
    dict(norm_rel_ebd="none", position_biased_input=True, type_vocab_size=2),
    dict(position_buckets=-1, max_relative_positions=-1),
    dict(position_buckets=-1, max_relative_positions=20),
    dict(position_buckets=256, max_relative_positions=512),
], ids=["c2p", "p2c", "none", "v2-layout", "unbucketed", "unbucketed-clamped", "v3-sizes"])
def test_triton_config_variants(kernel_calls, overrides, seed):
    """Every ``pos_att_type`` subset and bucket setting on the kernel: left padding (padded path) and holes
    (packed), 40 tokens (past the log buckets' exact range; the clamped case clamps at 20)."""
    ref = _model(**overrides)
    model, device = _triton(ref)
    for pattern in ("left", "holes"):
        _check_triton(model, device, ref, *_batch(40, pattern), seed)
    assert kernel_calls["padded"] and kernel_calls["packed"]


def test_triton_training_takes_pytorch(kernel_calls, seed):
    """The disentangled kernel is forward-only: with gradients, a model optimized with backend='triton' runs
    DeBERTa's attention on PyTorch (no kernel launch) and its gradients are the PyTorch backend's."""
    ref = _model()
    model, device = _triton(ref)
    model.train()  # the test model's dropout is 0: train mode alone does not force PyTorch
    reference = fastbert.optimize(copy.deepcopy(ref), backend="torch").to(device).train()
    ids, mask = _batch(20, "holes")
    grads = []
    for m in (model, reference):
        with pytest.warns(UserWarning, match="no Triton backward") if m is model else contextlib.nullcontext():
            m(ids.to(device), attention_mask=mask.to(device))[0][mask.bool().to(device)].square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert sum(kernel_calls.values()) == 0
    assert grads[0].numel() == grads[1].numel() and torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_triton_packed_api(kernel_calls, tmp_path, seed):
    """fastbert's own DeBERTa on the kernel through the packed API (columns counted within each sequence) against
    transformers on each sequence alone."""
    pytest.importorskip("triton")
    ref = _model()
    ref.save_pretrained(tmp_path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = fastbert.AutoModel.from_pretrained(tmp_path, backend="triton", device=device)
    ids, _ = _batch(129, "right")
    seqs = [ids[0], ids[1, :40], ids[2, :1]]
    cu = torch.tensor([0, 129, 169, 170], dtype=torch.int32)
    with torch.no_grad():
        packed = model(torch.cat(seqs).to(device), cu_seqlens=cu.to(device), max_seqlen=129)[0].cpu()
        alone = [ref(s[None])[0][0] for s in seqs]
    assert kernel_calls["packed"] == ref.config.num_hidden_layers
    for start, e in zip(cu[:-1].tolist(), alone):
        assert max_err(packed[start:start + len(e)], e) <= parity_bound(e), seed
