"""fastbert.optimize / restore on transformers BERT models with every task head."""
import copy

import pytest
import torch
import transformers
from conftest import SENTENCES
from utils import max_err, parity_bound, tiny_hf_config

import fastbert

HEADS = ["BertModel", "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering",
         "BertForMaskedLM", "BertForPreTraining", "BertForMultipleChoice", "BertForNextSentencePrediction"]


def _inputs(name, batch=3, seqlen=13, vocab=211):
    shape = (batch, 2, seqlen) if name == "BertForMultipleChoice" else (batch, seqlen)
    ids = torch.randint(0, vocab, shape)
    mask = torch.ones(shape, dtype=torch.long)
    mask[..., 0, 9:] = 0  # right padding in the first row
    mask[..., -1, :4] = 0  # left padding in the last row
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.randint(0, 2, shape))


def _model(name, **config):
    model = getattr(transformers, name)(tiny_hf_config(**config)).eval()
    model.set_attn_implementation("eager")
    return model


def _outputs(out):
    """The float tensors of a HF output, by name (hidden states flattened)."""
    items = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            items[k] = v
        elif isinstance(v, tuple):
            items.update({f"{k}.{i}": t for i, t in enumerate(v)})
    return items


@pytest.mark.parametrize("name", HEADS)
def test_heads_match_unmodified_model(name, seed):
    ref = _model(name)
    model = fastbert.optimize(copy.deepcopy(ref))
    assert fastbert.is_optimized(model)
    inputs = _inputs(name)
    valid = inputs["attention_mask"].bool()
    with torch.no_grad():
        expected, got = _outputs(ref(**inputs)), _outputs(model(**inputs))
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


def test_output_attentions_and_train_mode_fall_back_to_hf(seed):
    ref = _model("BertModel")
    model = fastbert.optimize(copy.deepcopy(ref))
    inputs = _inputs("BertModel")
    with torch.no_grad():
        r = ref(**inputs, output_attentions=True)
        o = model(**inputs, output_attentions=True)
    assert len(o.attentions) == 2
    for mine, theirs in zip(o.attentions, r.attentions):
        assert torch.equal(mine, theirs)
    model.train()
    torch.manual_seed(0)
    o = model(**inputs)
    ref.train()
    torch.manual_seed(0)
    r = ref(**inputs)
    assert torch.equal(o.last_hidden_state, r.last_hidden_state)


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
