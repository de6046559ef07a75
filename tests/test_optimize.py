"""fastbert.optimize / restore on transformers BERT models with every task head."""
import copy

import pytest
import torch
import transformers
from conftest import SENTENCES
from utils import float_outputs, max_err, parity_bound, tiny_hf_config

import fastbert

HEADS = ["BertModel", "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering",
         "BertForMaskedLM", "BertForPreTraining", "BertForMultipleChoice", "BertForNextSentencePrediction"]


def _inputs(name, batch=3, seqlen=13, vocab=211):
    shape = (batch, 2, seqlen) if name == "BertForMultipleChoice" else (batch, seqlen)
    ids = torch.randint(0, vocab, shape)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., 0, 9:] = 0  # right padding in the first row
    mask[..., -1, :4] = 0  # left padding in the last row
    ids[mask == 0] = 0  # the pad token, as a tokenizer pads (its embedding row gets no gradient in transformers)
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.randint(0, 2, shape))


def _model(name, **config):
    model = getattr(transformers, name)(tiny_hf_config(**config)).eval()
    model.set_attn_implementation("eager")
    return model


@pytest.mark.parametrize("name", HEADS)
def test_heads_match_unmodified_model(name, seed):
    ref = _model(name)
    model = fastbert.optimize(copy.deepcopy(ref))
    assert fastbert.is_optimized(model)
    inputs = _inputs(name)
    valid = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected, got = float_outputs(ref(**inputs)), float_outputs(model(**inputs))
    assert expected.keys() == got.keys()
    for key in expected:
        e, g = expected[key], got[key]
        # Per-token outputs are compared on real tokens; padding positions carry no meaning.
        where = valid if e.shape[:valid.dim()] == valid.shape else None
        assert max_err(g, e, where) <= parity_bound(e), (key, seed)


def test_minilm_optimize(hf_minilm, hf_tokenizer):
    enc = dict(hf_tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    model = fastbert.optimize(copy.deepcopy(hf_minilm))
    with torch.no_grad():
        ref, out = hf_minilm(**enc), model(**enc)
    valid = enc["attention_mask"].bool()
    assert type(out) is type(ref)
    assert max_err(out.last_hidden_state, ref.last_hidden_state, valid) <= parity_bound(ref.last_hidden_state)
    assert max_err(out.pooler_output, ref.pooler_output) <= parity_bound(ref.pooler_output)


def test_no_second_copy_of_weights():
    model = _model("BertForSequenceClassification")
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    count = sum(p.numel() for p in model.parameters())
    fastbert.optimize(model)
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == before
    assert sum(p.numel() for p in model.parameters()) == count
    assert sum(b.numel() for b in model.buffers()) == sum(b.numel() for b in _model("BertModel").buffers())


def test_output_hidden_states_and_tuple_return(seed):
    ref = _model("BertForTokenClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    inputs = _inputs("BertForTokenClassification")
    valid = inputs["attention_mask"].bool()
    with torch.no_grad():
        r = ref(**inputs, output_hidden_states=True)
        o = model(**inputs, output_hidden_states=True)
        t = model.bert(**inputs, return_dict=False)
        t_ref = ref.bert(**inputs, return_dict=False)
    assert len(o.hidden_states) == len(r.hidden_states) == 3  # embeddings + 2 layers, never an empty tuple
    for mine, theirs in zip(o.hidden_states, r.hidden_states):
        assert max_err(mine, theirs, valid) <= parity_bound(theirs), seed
    assert isinstance(t, tuple) and len(t) == len(t_ref) == 1  # this head's BertModel has no pooler


def test_output_attentions_falls_back_to_hf_and_train_mode_does_not(seed):
    ref = _model("BertModel")
    model = fastbert.optimize(copy.deepcopy(ref))
    inputs = _inputs("BertModel")
    with torch.no_grad():
        r = ref(**inputs, output_attentions=True)
        o = model(**inputs, output_attentions=True)
    assert len(o.attentions) == 2
    for mine, theirs in zip(o.attentions, r.attentions):
        assert torch.equal(mine, theirs)
    model.train()  # fastbert's path (tests/test_training.py); with dropout 0 it computes what HF computes
    ref.train()
    o, r = model(**inputs), ref(**inputs)
    valid = inputs["attention_mask"].bool()
    assert max_err(o.last_hidden_state, r.last_hidden_state, valid) <= parity_bound(r.last_hidden_state), seed


def test_unsupported_arguments_raise():
    model = fastbert.optimize(_model("BertModel"))
    ids = torch.randint(0, 211, (1, 4))
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(ids, encoder_hidden_states=torch.zeros(1, 4, 64))


def test_inputs_embeds(seed):
    ref = _model("BertModel")
    model = fastbert.optimize(copy.deepcopy(ref))
    embeds = torch.randn(2, 6, 64)
    with torch.no_grad():
        r, o = ref(inputs_embeds=embeds), model(inputs_embeds=embeds)
    assert max_err(o[0], r[0]) <= parity_bound(r[0]), seed


def test_save_pretrained_round_trip(tmp_path, seed):
    ref = _model("BertForSequenceClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    model.save_pretrained(tmp_path)
    loaded = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.state_dict().keys() == ref.state_dict().keys()
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # The saved checkpoint also loads into fastbert.
    fb = fastbert.BertModel.from_pretrained(tmp_path, backend="torch")
    inputs = _inputs("BertModel")
    with torch.no_grad():
        r = ref.bert(**inputs)
        o = fb(**inputs)
    assert max_err(o[1], r[1]) <= parity_bound(r[1]), seed


def test_restore_gives_back_original(seed):
    ref = _model("BertForMaskedLM")
    model = fastbert.optimize(copy.deepcopy(ref))
    assert fastbert.restore(model) is model
    assert not fastbert.is_optimized(model)
    assert "forward" not in vars(model.bert)  # the class's own forward again
    inputs = _inputs("BertForMaskedLM")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, ref(**inputs).logits)


def test_gradients_reach_hf_parameters(seed):
    ref = _model("BertForSequenceClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    inputs = _inputs("BertForSequenceClassification")
    labels = torch.tensor([0, 1, 1])
    ref(**inputs, labels=labels).loss.backward()
    model.eval()
    model(**inputs, labels=labels).loss.backward()
    assert not model.bert.embeddings.word_embeddings.weight.grad[0].any()  # padding_idx row, as in transformers
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        if q.grad is None:
            continue
        assert p.grad is not None, name
        assert max_err(p.grad, q.grad) <= parity_bound(q.grad), (name, seed)


def test_refuses_non_bert_and_unsupported_configs():
    with pytest.raises(TypeError, match="BertModel"):
        fastbert.optimize(torch.nn.Linear(2, 2))
    model = transformers.BertModel(tiny_hf_config(position_embedding_type="relative_key"))
    with pytest.raises(ValueError, match="position_embedding_type"):
        fastbert.optimize(model)


# ------------------------------------------------------------------------------------------------------------------
# attention_mask forms transformers accepts (issue 15 item 6)
# ------------------------------------------------------------------------------------------------------------------

def _random_key_mask(batch=3, seqlen=11):
    """[B, S] long: row 0 right padding, row 1 left padding, row 2 holes; lengths drawn fresh."""
    mask = torch.ones(batch, seqlen, dtype=torch.long)
    mask[0, torch.randint(2, seqlen, ()):] = 0
    mask[1, :torch.randint(1, seqlen - 1, ())] = 0
    mask[2, torch.randperm(seqlen)[:3]] = 0
    return mask


_MIN = torch.finfo(torch.float32).min
MASK_FORMS = {
    "2-D float 0/0.5": lambda k: k * 0.5,
    "2-D int 0/7": lambda k: k.long() * 7,
    "2-D uint8": lambda k: k.to(torch.uint8),
    "4-D bool [B,1,1,S]": lambda k: k.bool()[:, None, None, :],
    "4-D bool [B,1,S,S]": lambda k: k.bool()[:, None, None, :].expand(-1, 1, k.shape[1], -1),
    "4-D bool [B,heads,1,S]": lambda k: k.bool()[:, None, None, :].expand(-1, 4, 1, -1),
    "4-D additive finfo.min": lambda k: (1 - k.float())[:, None, None, :] * _MIN,
    "4-D additive -10000": lambda k: (1 - k.float())[:, None, None, :] * -10000.0,
    "4-D additive -inf [B,1,S,S]": lambda k: torch.zeros(k.shape[0], 1, k.shape[1], k.shape[1]).masked_fill(
        ~k.bool()[:, None, None, :], -float("inf")),
}


@pytest.mark.parametrize("form", MASK_FORMS)
def test_masks_transformers_accepts(form, seed):
    """Each form against transformers' default (SDPA) BertModel given the same mask, on real positions."""
    ref = transformers.BertModel(tiny_hf_config()).eval()  # attn_implementation: sdpa, transformers' default
    assert ref.config._attn_implementation == "sdpa"
    model = fastbert.optimize(copy.deepcopy(ref))
    key = _random_key_mask().float()
    mask = MASK_FORMS[form](key)
    ids = torch.randint(0, 211, key.shape)
    with torch.no_grad():
        expected, got = ref(ids, attention_mask=mask), model(ids, attention_mask=mask)
        plain = ref(ids, attention_mask=key.long())
    real = key.bool()
    assert max_err(expected[0], plain[0], real) <= parity_bound(plain[0])  # the form means the key mask
    assert max_err(got[0], expected[0], real) <= parity_bound(expected[0]), (form, seed)
    assert max_err(got[1], expected[1]) <= parity_bound(expected[1]), (form, seed)


def test_additive_4d_mask_on_eager_model(seed):
    ref = _model("BertModel")
    model = fastbert.optimize(copy.deepcopy(ref))
    key = _random_key_mask()
    mask = (1 - key[:, None, None, :].float()) * _MIN
    ids = torch.randint(0, 211, key.shape)
    with torch.no_grad():
        expected, got = ref(ids, attention_mask=mask), model(ids, attention_mask=mask)
    assert max_err(got[0], expected[0], key) <= parity_bound(expected[0]), seed


@pytest.mark.parametrize("make, message", [
    (lambda k: k.float()[:, None, None, :], r"float 4-D attention_mask is additive in transformers.*a 0/1 mask\?"),
    (lambda k: (1 - k.float())[:, None, None, :] * -5, "holds other values"),
    (lambda k: (1 - k.float()).masked_fill(k == 0, float("nan"))[:, None, None, :], "holds other values"),
    (lambda k: k[:, None, None, :], "4-D of dtype torch.int64; a 4-D mask must be boolean"),
    (lambda k: (k[:, None, :, None] * k[:, None, None, :]).bool(), "differs between heads or query positions"),
    (lambda k: torch.ones(k.shape[1], k.shape[1], dtype=torch.bool).tril()[None, None].expand(k.shape[0], 1, -1, -1),
     "a per-query mask"),
    (lambda k: k[:, None, :].expand(-1, k.shape[1], -1), r"attention_mask has shape \[3, 11, 11\]; fastbert takes"),
    (lambda k: k[0], r"attention_mask has shape \[11\]"),
    (lambda k: k.bool()[:, None, None, :5], r"attention_mask has shape \[3, 1, 1, 5\]"),
], ids=["4d-float-01", "4d-bias", "4d-nan", "4d-int", "4d-outer-product", "4d-causal", "3d", "1d", "4d-short"])
def test_masks_fastbert_cannot_reproduce_are_refused(make, message):
    model = fastbert.optimize(transformers.BertModel(tiny_hf_config()).eval())
    key = _random_key_mask()
    with pytest.raises(ValueError, match=message) as info:
        model(torch.randint(0, 211, key.shape), attention_mask=make(key))
    assert "\n" not in str(info.value)


def test_boolean_4d_mask_refused_on_eager_model():
    """transformers' eager attention adds a boolean 4-D mask to the scores (True as +1): refused, not reproduced."""
    model = fastbert.optimize(_model("BertModel"))
    key = _random_key_mask()
    with pytest.raises(ValueError, match="boolean 4-D attention_mask on an attn_implementation='eager' model"):
        model(torch.randint(0, 211, key.shape), attention_mask=key.bool()[:, None, None, :])


# ------------------------------------------------------------------------------------------------------------------
# Swap-in settings (issue 9 item 5)
# ------------------------------------------------------------------------------------------------------------------

def test_backend_names_checked_when_given():
    model = _model("BertModel")
    with pytest.raises(ValueError, match="unknown backend 'cuda'; expected None or one of"):
        fastbert.optimize(model, backend="cuda")
    assert not fastbert.is_optimized(model)
    fb = fastbert.BertModel(fastbert.BertConfig.from_hf(tiny_hf_config()))
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        fb.backend = "fast"
    with pytest.raises(ValueError, match="unknown backend 'Triton'"):
        fastbert.BertModel(fb.config, backend="Triton")
    fb.backend = "torch"
    assert fb.backend == "torch"


def test_from_pretrained_checks_backend(tmp_path):
    _model("BertModel").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fastbert.BertModel.from_pretrained(tmp_path, backend="gpu")


def test_grad_fallback_warns_once_per_model(recwarn, monkeypatch):
    """Asked for Triton (here the interpreter) with autograd recording, for a model the Triton backward kernels
    cannot differentiate (as MPNet's bias): one warning per model naming the fix."""
    import warnings

    monkeypatch.setattr(fastbert.BertConfig, "triton_grad_missing", property(lambda self: "no backward kernel"))
    ids = torch.randint(0, 211, (2, 5))
    hf = fastbert.optimize(_model("BertForSequenceClassification"), backend="triton")
    fb = fastbert.BertModel(fastbert.BertConfig.from_hf(tiny_hf_config()), backend="triton").eval()
    for model in (hf, fb):
        with pytest.warns(UserWarning, match="PyTorch path instead of 'triton' because autograd is recording.*"
                                             r"torch.inference_mode\(\) or torch.no_grad\(\)") as caught:
            model(ids)
        assert caught[0].filename == __file__  # points at the caller's line
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # (triton 3.6's interpreter raises numpy deprecations)
            model(ids)  # the second call is silent
            with torch.inference_mode():
                model(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastbert.optimize(_model("BertModel"), backend="torch")(ids)  # PyTorch asked for: nothing to say


def test_validate_inputs_off_compiles_fullgraph(seed):
    """optimize(validate_inputs=False, padding_free=False): no host sync, so torch.compile(fullgraph=True) traces
    the whole forward. Either setting alone still syncs (value checks; the packed token count)."""
    ref = _model("BertForSequenceClassification")
    inputs = _inputs("BertForSequenceClassification")
    checked = torch.compile(fastbert.optimize(copy.deepcopy(ref), backend="torch"), fullgraph=True, backend="eager")
    with torch.inference_mode(), pytest.raises(Exception, match="(?i)data-dependent|graph break"):
        checked(**inputs)
    torch._dynamo.reset()
    packing = torch.compile(fastbert.optimize(copy.deepcopy(ref), backend="torch", validate_inputs=False,
                                              padding_free=True), fullgraph=True, backend="eager")
    with torch.inference_mode(), pytest.raises(Exception, match="(?i)data-dependent|graph break"):
        packing(**inputs)
    torch._dynamo.reset()
    model = torch.compile(fastbert.optimize(copy.deepcopy(ref), backend="torch", validate_inputs=False,
                                            padding_free=False), fullgraph=True, backend="eager")
    with torch.inference_mode():
        got, expected = model(**inputs).logits, ref(**inputs).logits
    assert max_err(got, expected) <= parity_bound(expected), seed
    torch._dynamo.reset()
