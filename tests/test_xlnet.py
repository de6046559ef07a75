"""XLNet against transformers in float32: the relative attention with segments at awkward lengths, its heads, and the
refusals.

Sequence lengths 1, 7 and 129; right padding, left padding (XLNet's tokenizer pads on the left) and holes; segment
ids 0/1 with the ``<cls>`` id 2 at the end, as XLNet's tokenizer gives them, and none; on the padding-free path
(length buckets) and the padded one. XLNet's heads read the LAST position, so a batch whose rows all end on a real
token runs padding-free and one with right padding stays padded (where fastbert gives transformers' values at padding
positions too: a padding query attends to the real keys and to itself). Bound 2e-5 x max(1, |ref|) on real
positions (on every position where the padded path runs). The random ``r_w_bias``/``r_r_bias``/``r_s_bias``,
``seg_embed`` and ``r`` are drawn large enough that a wrong distance, segment or bias shows.
"""
import copy
import json

import pytest
import torch
import transformers
from utils import max_err, parity_bound, patterned_batch

import fastbert

VOCAB = 211
PAD = 5  # XLNet's <pad>


def _config(**overrides):
    return transformers.XLNetConfig(**{**dict(vocab_size=VOCAB, d_model=96, n_head=6, d_inner=160, n_layer=2,
                                              dropout=0.0, pad_token_id=PAD), **overrides})


def _model(name="XLNetModel", **overrides):
    model = getattr(transformers, name)(_config(**overrides)).eval()
    base = model if name == "XLNetModel" else model.transformer
    with torch.no_grad():
        for layer in base.layer:
            a = layer.rel_attn
            for p in (a.r_w_bias, a.r_r_bias, a.r_s_bias, a.seg_embed):
                p.normal_(0.0, 0.5)
            a.r.normal_(0.0, 0.2)
    return model


def _batch(seqlen, pattern, left=False):
    """:func:`utils.patterned_batch` with XLNet's pad id (row 2 a single token); ``left``: every row flipped, so
    the padding comes first and every row ends on a real token (the padding-free path). Segment ids as XLNet's
    tokenizer gives a pair: 0, then 1, then 2 on the last real token (``<cls>``), 3 on padding."""
    ids, mask = patterned_batch(seqlen, pattern, VOCAB, PAD)
    if left:
        ids, mask = ids.flip(1), mask.flip(1)
    types = (torch.arange(seqlen)[None] >= torch.randint(0, seqlen + 1, (3, 1))).long()  # [3, S]: 0 then 1
    types[:, -1] = 2
    types[mask == 0] = 3
    return ids, mask, types


def _check(got, expected, where, seed):
    assert max_err(got, expected, where) <= parity_bound(expected[where.bool()]), seed


@pytest.mark.parametrize("padding_free", [None, False])
@pytest.mark.parametrize("left", [True, False], ids=["ends-real", "ends-padded"])
@pytest.mark.parametrize("pattern", ["right", "left", "holes"])
@pytest.mark.parametrize("seqlen", [1, 7, 129])
def test_matches_transformers(padding_free, left, pattern, seqlen, seed):
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref), padding_free=padding_free)
    ids, mask, types = _batch(seqlen, pattern, left)
    with torch.no_grad():
        expected, got = ref(ids, mask, token_type_ids=types), model(ids, mask, token_type_ids=types)
    packed = padding_free is None and bool(mask[:, -1].all()) and not bool(mask.all())
    where = mask if packed else torch.ones_like(mask)  # the padded path: transformers' values everywhere
    _check(got.last_hidden_state, expected.last_hidden_state, where, seed)
    if packed:  # the padding-free path ran: zeros at padding positions
        assert not got.last_hidden_state[mask == 0].any()
    assert len(got.mems) == len(expected.mems) == 2
    for g, e in zip(got.mems, expected.mems):  # the new memories: each layer's input, [S, B, H]
        _check(g.transpose(0, 1), e.transpose(0, 1), where, seed)


@pytest.mark.parametrize("overrides", [dict(clamp_len=5), dict(ff_activation="relu", layer_norm_eps=1e-5),
                                       dict(ff_activation="gelu_new", d_model=64, n_head=2)],
                         ids=["clamp_len", "relu", "gelu_new-wide-heads"])
def test_config_variants(overrides, seed):
    ref = _model(**overrides)
    model = fastbert.optimize(copy.deepcopy(ref))
    for left in (True, False):
        ids, mask, types = _batch(129, "holes", left)
        with torch.no_grad():
            expected, got = ref(ids, mask, token_type_ids=types)[0], model(ids, mask, token_type_ids=types)[0]
        _check(got, expected, mask, seed)


def test_without_segments_and_mask_and_with_inputs_embeds(seed):
    """No token_type_ids (transformers adds no segment term), no attention_mask; inputs_embeds for the ids."""
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref))
    ids = torch.randint(0, VOCAB, (2, 33))
    with torch.no_grad():
        expected, got = ref(ids)[0], model(ids)[0]
        _check(got, expected, torch.ones_like(ids), seed)
        ids, mask, types = _batch(33, "holes", left=True)
        embeds = torch.randn(3, 33, 96)
        expected = ref(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types)[0]
        got = model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types)[0]
    _check(got, expected, mask, seed)


def test_memories_and_outputs_as_transformers(seed):
    """``mem_len``/``reuse_len`` cut the new memories as transformers does; ``use_mems=False`` and train mode (with
    ``use_mems_train`` off) return none; hidden states and the ``return_dict=False`` tuple line up with HF's."""
    ref = _model(mem_len=5, reuse_len=11)
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, types = _batch(17, "left", left=True)
    with torch.no_grad():
        expected = ref(ids, mask, token_type_ids=types, output_hidden_states=True, return_dict=False)
        got = model(ids, mask, token_type_ids=types, output_hidden_states=True, return_dict=False)
        assert len(got) == len(expected) == 3  # output, mems, hidden states
        assert [m.shape for m in got[1]] == [m.shape for m in expected[1]] == [(5, 3, 96)] * 2
        real = mask.T[6:11].T  # the memories' positions: 11 reused, the last 5 kept
        for g, e in zip(got[1], expected[1]):
            _check(g.transpose(0, 1), e.transpose(0, 1), real, seed)
        assert len(got[2]) == len(expected[2]) == 3
        for g, e in zip(got[2], expected[2]):
            _check(g, e, mask, seed)
        assert model(ids, mask, use_mems=False).mems is None
        model.train()
        assert model(ids, mask).mems is None  # use_mems_train is False


HEADS = ["XLNetForSequenceClassification", "XLNetForTokenClassification", "XLNetForQuestionAnsweringSimple",
         "XLNetLMHeadModel", "XLNetForQuestionAnswering"]


@pytest.mark.parametrize("left", [True, False], ids=["ends-real", "ends-padded"])
@pytest.mark.parametrize("name", HEADS)
def test_heads(name, left, seed):
    ref = _model(name)
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, types = _batch(23, "holes", left)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask, token_type_ids=types)
        got = model(ids, attention_mask=mask, token_type_ids=types)
    if name == "XLNetForQuestionAnswering":  # beam search over every position: indices equal, log probs close
        for key in ("start_top_index", "end_top_index"):
            assert torch.equal(got[key], expected[key]), (key, seed)
        for key in ("start_top_log_probs", "end_top_log_probs", "cls_logits"):
            _check(got[key], expected[key], torch.ones_like(got[key]), seed)
        return
    for key, e in expected.items():
        if key in ("mems", "hidden_states"):
            continue
        g = got[key]
        where = mask if e.dim() >= 2 and e.shape[:2] == mask.shape and name in ("XLNetForTokenClassification",
                                                                             "XLNetLMHeadModel") else None
        _check(g, e, where if where is not None else torch.ones(e.shape[:2] if e.dim() >= 2 else e.shape), seed)


def test_multiple_choice(seed):
    ref = _model("XLNetForMultipleChoice")
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, types = _batch(19, "left", left=True)
    with torch.no_grad():
        expected = ref(ids[None], attention_mask=mask[None], token_type_ids=types[None], labels=torch.tensor([1]))
        got = model(ids[None], attention_mask=mask[None], token_type_ids=types[None], labels=torch.tensor([1]))
    _check(got.logits, expected.logits, torch.ones_like(got.logits), seed)
    _check(got.loss[None], expected.loss[None], torch.ones(1), seed)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_error_within_transformers_own(dtype, seed):
    """fastbert in fp16/bf16 against transformers fp32, relative to transformers' own error in that dtype (the
    other families' bounds: RMS <= 1.25x, max <= 2x), on real positions of both paths."""
    ref = _model()
    low_ref = copy.deepcopy(ref).to(dtype)
    model = fastbert.optimize(copy.deepcopy(ref).to(dtype))
    for left in (True, False):
        ids, mask, types = _batch(33, "holes", left)
        with torch.no_grad():
            exact = ref(ids, mask, token_type_ids=types)[0][mask.bool()]
            theirs = low_ref(ids, mask, token_type_ids=types)[0][mask.bool()].float() - exact
            ours = model(ids, mask, token_type_ids=types)[0][mask.bool()].float() - exact
        assert ours.pow(2).mean().sqrt() <= 1.25 * theirs.pow(2).mean().sqrt(), (dtype, left, seed)
        assert ours.abs().max() <= 2 * theirs.abs().max(), (dtype, left, seed)


def test_gradients_match_transformers(seed):
    """Eval mode with autograd: the PyTorch path is differentiable and its gradients are transformers'."""
    ref = _model("XLNetForSequenceClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, types = _batch(21, "holes", left=True)
    labels = torch.tensor([0, 1, 1])
    ref(ids, mask, token_type_ids=types, labels=labels).loss.backward()
    model(ids, mask, token_type_ids=types, labels=labels).loss.backward()
    got = dict(model.named_parameters())
    for name, p in ref.named_parameters():  # every parameter but mask_emb (the query stream's) gets transformers'
        e, g = p.grad, got[name].grad
        assert (g is None) == (e is None) == (name == "transformer.mask_emb"), name
        if e is not None:
            assert max_err(g, e) <= parity_bound(e), (name, seed)


def test_family_defaults_are_transformers_defaults():
    """A config.json that leaves keys out means transformers' XLNetConfig defaults."""
    assert fastbert.BertConfig.from_dict({"model_type": "xlnet"}) == \
        fastbert.BertConfig.from_hf(transformers.XLNetConfig())


def test_no_weight_copies_and_save_pretrained_unchanged(tmp_path):
    ref = _model("XLNetForTokenClassification")
    model = copy.deepcopy(ref)
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    fastbert.optimize(model)
    model(*_batch(7, "holes", left=True)[:2])
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == before
    model.save_pretrained(tmp_path)
    loaded = type(ref).from_pretrained(tmp_path)
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert fastbert.restore(model) is model and not fastbert.is_optimized(model)


def test_train_mode_dropout_refused_without_dropout_runs(seed):
    ref = _model(dropout=0.1)
    model = fastbert.optimize(copy.deepcopy(ref)).train()
    ids, mask, _ = _batch(7, "left", left=True)
    with pytest.raises(ValueError, match="XLNet's train-mode dropout .* is not implemented"):
        model(ids, mask)
    ref, model = _model(), fastbert.optimize(_model()).train()  # dropout 0: train mode is eval's math
    model.load_state_dict(ref.state_dict())
    _check(model(ids, mask)[0].detach(), ref.train()(ids, mask)[0].detach(), mask, seed)


@pytest.mark.parametrize("argument", ["mems", "perm_mask", "target_mapping", "input_mask"])
def test_arguments_refused_by_name(argument):
    model = fastbert.optimize(_model())
    ids, mask, _ = _batch(7, "left", left=True)
    values = dict(mems=[torch.zeros(2, 3, 96)] * 2, perm_mask=torch.zeros(3, 7, 7),
                  target_mapping=torch.zeros(3, 1, 7), input_mask=1 - mask)
    with pytest.raises(ValueError, match=f"does not support the argument\\(s\\) \\['{argument}'\\]"):
        model(ids, **({} if argument == "input_mask" else {"attention_mask": mask}), **{argument: values[argument]})


def test_masks_other_than_0_1_refused():
    """transformers' XLNet masks every value below 1 (``1 - attention_mask > 0``) where the other families attend
    wherever the mask is nonzero: fastbert takes 0/1 only for XLNet, and a 0/1 float or bool mask works."""
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, _ = _batch(7, "holes", left=True)
    with torch.no_grad():
        expected = ref(ids, mask)[0]
        for m in (mask.float(), mask.bool()):
            _check(model(ids, m)[0], expected, mask, "0/1 mask")
        with pytest.raises(ValueError, match="attention_mask must contain only 0 and 1"):
            model(ids, mask * 0.5)
        with pytest.raises(ValueError, match="attention_mask has shape"):
            model(ids, mask[:, None, None, :].bool())


def test_generate_refused_by_name():
    """XLNet's generation feeds the two-stream query (perm_mask, target_mapping): refused, naming them."""
    model = fastbert.optimize(_model("XLNetLMHeadModel"))
    with pytest.raises(ValueError, match="\\['perm_mask', 'target_mapping'\\]; call fastbert.restore"):
        model.generate(torch.randint(10, VOCAB, (1, 5)), max_new_tokens=2, do_sample=False)


def test_output_attentions_runs_transformers(seed):
    ref = _model()
    model = fastbert.optimize(copy.deepcopy(ref))
    ids, mask, types = _batch(7, "holes", left=True)
    with torch.no_grad():
        expected, got = ref(ids, mask, output_attentions=True), model(ids, mask, output_attentions=True)
    assert torch.equal(got.last_hidden_state, expected.last_hidden_state)
    assert len(got.attentions) == 2


@pytest.mark.parametrize("overrides, message", [
    (dict(attn_type="uni"), "attn_type='uni'"),
    (dict(bi_data=True), "bi_data=True"),
    (dict(summary_type="mean"), "summary_type='mean'"),
    (dict(clamp_len=2.5), "clamp_len=2.5"),
    (dict(ff_activation="swish"), None),
])
def test_refusals(overrides, message, tmp_path):
    config = dict(_config().to_dict(), **overrides)
    (tmp_path / "config.json").write_text(json.dumps(config))
    match = "unsupported xlnet configuration: .*" + message if message else "unsupported hidden_act 'swish'"
    with pytest.raises(ValueError, match=match):
        fastbert.BertConfig.from_pretrained(tmp_path)
    if "clamp_len" not in overrides:  # transformers' config class refuses a float clamp_len itself
        with pytest.raises(ValueError, match=match.split(": ")[-1]):
            fastbert.optimize(transformers.XLNetModel(_config(**overrides)))


def test_triton_backend_refused_and_auto_takes_torch():
    from fastbert.encoder import ops

    missing = fastbert.BertConfig.from_hf(_config()).triton_missing
    assert "XLNet's relative attention has no Triton kernel" in missing
    with pytest.raises(ValueError, match="backend 'triton' requested but XLNet's relative attention"):
        ops.resolve_backend("triton", torch.device("cuda"), triton_missing=missing)
    assert ops.resolve_backend("auto", torch.device("cuda"), triton_missing=missing) == "torch"
    if ops.triton_available():
        model = fastbert.optimize(_model(), backend="triton")
        with pytest.raises(ValueError, match="no Triton kernel"):
            model(*_batch(7, "right")[:2])


def test_own_model_from_save_pretrained_and_packed_api(tmp_path, seed):
    """fastbert's own XLNet from an LM-head folder (no pooler, no position table, no embedding LayerNorm):
    padding-free and padded; the packed API (distances counted within each sequence, segment ids packed too) against
    transformers on each sequence alone; restore() gives the HF forward back."""
    ref = _model("XLNetLMHeadModel")
    ref.save_pretrained(tmp_path)
    model = fastbert.AutoModel.from_pretrained(tmp_path)
    assert model.pooler is None and model.embeddings.position is None and model.embeddings.norm is None
    ids, mask, types = _batch(129, "holes", left=True)
    with torch.no_grad():
        expected = ref.transformer(ids, mask, token_type_ids=types)[0]
        for padding_free in (True, False):
            model.padding_free = padding_free
            _check(model(ids, mask, types)[0], expected, mask, (padding_free, seed))
        lengths = [129, 40, 1]
        seqs = [ids[0], ids[1, -40:], ids[2, -1:]]
        segs = [types[0], types[1, -40:], types[2, -1:]]
        cu = torch.tensor([0, 129, 169, 170], dtype=torch.int32)
        packed = model(torch.cat(seqs), token_type_ids=torch.cat(segs), cu_seqlens=cu, max_seqlen=129)[0]
        alone = [ref.transformer(s[None], token_type_ids=t[None])[0][0] for s, t in zip(seqs, segs)]
    for (start, n), e in zip(zip(cu[:-1].tolist(), lengths), alone):
        assert max_err(packed[start:start + n], e) <= parity_bound(e), seed
    optimized = fastbert.optimize(ref)
    fastbert.restore(optimized)
    assert not fastbert.is_optimized(optimized)
