"""Per-token task heads on real tokens only (``fastbert.encoder.swap.TOKEN_HEADS``).

Under a token classification, masked LM or question answering head (QA with ``padding_free=True``), a padded batch
that ran packed reaches the head's per-token modules as its real tokens plus one padding row. These tests hold, for
every head class of every family, random tiny models in train mode (dropout 0, biases drawn), a right-padded batch
of mixed lengths with a row of length 1:

* the head modules saw ``T + 1`` rows (a forward hook), so the padding was skipped;
* logits at every position, the loss and every gradient equal the path without that (the head on the padded output,
  zeros at padding rows) within fp32 rounding, and transformers' within the training parity bounds (logits at real
  positions; QA packed is not HF's loss, whose softmax reads the padding rows);
* sequence classification and multiple choice (which read one row per sequence) match transformers too.

A ``DataCollatorWithFlattening`` batch for token classification goes through a Trainer-like step (columns kept by
the forward's signature, ``num_items_in_batch``), and ``restore`` undoes it all.
"""
import copy
import inspect

import pytest
import torch
import transformers
from utils import max_err, parity_bound

import fastbert
from fastbert.encoder import swap

VOCAB, BATCH, SEQLEN = 211, 3, 7
LOSS_RTOL = GRAD_RTOL = 1e-3  # against transformers (tests/test_training.py's bounds)
SAME_RTOL = 1e-5  # against the head on the padded output: the same math on fewer rows

_SIZES = dict(vocab_size=VOCAB, hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
              max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONFIGS = {
    "bert": lambda: transformers.BertConfig(**_SIZES),
    "roberta": lambda: transformers.RobertaConfig(**dict(_SIZES, max_position_embeddings=66, type_vocab_size=1)),
    "xlm-roberta": lambda: transformers.XLMRobertaConfig(**dict(_SIZES, max_position_embeddings=66)),
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=96, n_heads=6, hidden_dim=160, n_layers=2, max_position_embeddings=64, dropout=0.0,
        attention_dropout=0.0, seq_classif_dropout=0.0, qa_dropout=0.0, activation="gelu"),
    "electra": lambda: transformers.ElectraConfig(**dict(_SIZES, embedding_size=48, summary_last_dropout=0.0)),
    "albert": lambda: transformers.AlbertConfig(**dict(_SIZES, embedding_size=48, classifier_dropout_prob=0.0)),
    "mpnet": lambda: transformers.MPNetConfig(**_SIZES),
    "deberta-v2": lambda **kw: transformers.DebertaV2Config(**dict(
        _SIZES, relative_attention=True, position_buckets=16, max_relative_positions=64, pos_att_type="p2c|c2p",
        share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False, type_vocab_size=0, **kw)),
}
CONFIGS["deberta-v2-new-mlm"] = lambda: CONFIGS["deberta-v2"](legacy=False)  # its masked LM: lm_predictions
PREFIX = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "distilbert": "DistilBert",
          "electra": "Electra", "albert": "Albert", "mpnet": "MPNet", "deberta-v2": "DebertaV2",
          "deberta-v2-new-mlm": "DebertaV2"}
PACKED = ["ForTokenClassification", "ForMaskedLM", "ForQuestionAnswering"]
ONE_ROW = ["ForSequenceClassification", "ForMultipleChoice"]
CASES = [(f, h) for f in PREFIX for h in PACKED + ONE_ROW if f != "deberta-v2-new-mlm" or h == "ForMaskedLM"]


def _model(family, head):
    model = getattr(transformers, PREFIX[family] + head)(CONFIGS[family]()).train()
    with torch.no_grad():  # biases and LayerNorm weights drawn too (0 and 1 would hide a misplaced one)
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.1)
    return model


def _padded(model, rows=BATCH):
    """Right-padded ids and mask [rows, SEQLEN]: row 0 full, row 1 of length 1, the rest random lengths."""
    lengths = torch.randint(2, SEQLEN, (rows,))
    lengths[0], lengths[1] = SEQLEN, 1
    ids = torch.randint(5, VOCAB, (rows, SEQLEN))
    mask = (torch.arange(SEQLEN)[None, :] < lengths[:, None]).long()
    ids[mask == 0] = model.config.pad_token_id
    return ids, mask


def _batch(model, head):
    ids, mask = _padded(model)
    real = mask.bool()
    batch = dict(input_ids=ids, attention_mask=mask)
    if head == "ForTokenClassification":
        batch["labels"] = torch.where(real, torch.randint(0, model.config.num_labels, ids.shape), -100)
    elif head == "ForMaskedLM":
        batch["labels"] = torch.where(real & (torch.rand(ids.shape) < 0.5), torch.randint(5, VOCAB, ids.shape), -100)
        batch["labels"][0, 0] = 7  # at least one token to predict
    elif head == "ForQuestionAnswering":
        lengths = mask.sum(1)
        start = (torch.rand(BATCH) * lengths.float()).long()
        batch["start_positions"] = start
        batch["end_positions"] = torch.minimum(start + torch.randint(0, 3, (BATCH,)), lengths - 1)
    elif head == "ForSequenceClassification":
        batch["labels"] = torch.randint(0, model.config.num_labels, (BATCH,))
    else:  # multiple choice: [B, choices, S]
        rows = [_padded(model) for _ in range(2)]
        batch = dict(input_ids=torch.stack([r[0] for r in rows], 1),
                     attention_mask=torch.stack([r[1] for r in rows], 1), labels=torch.randint(0, 2, (BATCH,)))
    return batch


def _run(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out, {name: p.grad for name, p in model.named_parameters()}


def _logits(out):
    return [v for k, v in out.items() if k.endswith("logits")]


def _grads_close(got, expected, rtol):
    floor = 1e-6 * torch.stack([g.norm() for g in expected.values() if g is not None]).norm()
    for name, g in expected.items():
        if g is None:
            assert got[name] is None or not got[name].any(), name
            continue
        err = (got[name] - g).norm()
        assert err <= max(rtol * g.norm(), floor), (name, (err / g.norm()).item())


def _head_rows(model):
    """The number of rows each forward's head modules computed (each given a subclass whose forward counts them: a
    hook would see the padded input the module was called with)."""
    seen = []
    for name in swap.TOKEN_HEADS.get(type(model).__name__, ()):
        module = getattr(model, name, None)
        if module is None:
            continue
        cls = type(module)

        def counting(self, x, *args, _forward=cls.forward, **kwargs):
            seen.append(x.flatten(0, -2).shape[0])
            return _forward(self, x, *args, **kwargs)

        module.__class__ = type(cls.__name__, (cls,), {"forward": counting})
    return seen


@pytest.mark.parametrize("family,head", CASES)
def test_head_on_real_tokens_matches_padded_head_and_transformers(family, head, seed):
    ref = _model(family, head)
    padding_free = True if head == "ForQuestionAnswering" else None
    model = fastbert.optimize(copy.deepcopy(ref), padding_free=padding_free)
    padded_head = fastbert.optimize(copy.deepcopy(ref), padding_free=padding_free)
    swap._unwrap_heads(padded_head)  # the path before heads ran packed: the head on [B, S, H], zeros at padding
    seen = _head_rows(model)
    batch = _batch(ref, head)

    expected, expected_grads = _run(ref, batch)
    before, before_grads = _run(padded_head, batch)
    got, got_grads = _run(model, batch)

    real = batch["attention_mask"].bool()
    if head in PACKED:
        assert seen and all(n == int(real.sum()) + 1 for n in seen), (seen, int(real.sum()))
        assert type(model).__name__ in swap.TOKEN_HEADS
    else:
        assert type(model).__name__ not in swap.TOKEN_HEADS
    for g, b, e in zip(_logits(got), _logits(before), _logits(expected)):
        assert g.shape == b.shape == e.shape
        assert max_err(g, b) <= parity_bound(b), family
        if head in PACKED:
            assert max_err(g, e, real) <= parity_bound(e), family
        else:
            assert max_err(g, e) <= parity_bound(e), family
    assert abs(got.loss - before.loss) <= SAME_RTOL * abs(before.loss)
    _grads_close(got_grads, before_grads, SAME_RTOL)
    if head != "ForQuestionAnswering":  # packed QA scores padding with the bias alone: not HF's softmax
        assert abs(got.loss - expected.loss) <= LOSS_RTOL * abs(expected.loss)
        _grads_close(got_grads, expected_grads, GRAD_RTOL)


def test_question_answering_stays_padded_by_default(seed):
    """QA without ``padding_free=True``: the batch stays padded (HF's loss reads padding), the head sees every row."""
    ref = _model("bert", "ForQuestionAnswering")
    model = fastbert.optimize(copy.deepcopy(ref))
    seen = _head_rows(model)
    batch = _batch(ref, "ForQuestionAnswering")
    got, expected = model(**batch), ref(**batch)
    assert seen == [BATCH * SEQLEN]
    assert abs(got.loss - expected.loss) <= LOSS_RTOL * abs(expected.loss)


def test_no_padding_and_output_attentions_run_the_head_on_every_row(seed):
    ref = _model("roberta", "ForMaskedLM").eval()
    model = fastbert.optimize(copy.deepcopy(ref))
    seen = _head_rows(model)
    ids = torch.randint(5, VOCAB, (2, SEQLEN))
    with torch.no_grad():
        got, expected = model(input_ids=ids).logits, ref(input_ids=ids).logits
        model(input_ids=ids, attention_mask=_padded(ref, 2)[1], output_attentions=True)
    assert seen == [2 * SEQLEN, 2 * SEQLEN]
    assert max_err(got, expected) <= parity_bound(expected)


def test_optimize_twice_and_restore(seed):
    model = _model("electra", "ForMaskedLM")
    signature = inspect.signature(model.forward)
    fastbert.optimize(model)
    fastbert.optimize(model, padding_free=True)
    assert inspect.signature(model.forward) == signature  # Trainer keeps a dataset's columns by it
    wrapped = [name for name, m in model.named_modules() if "forward" in m.__dict__]
    assert wrapped == ["", "electra", "generator_predictions", "generator_lm_head"]
    fastbert.restore(model)
    assert not [name for name, m in model.named_modules() if "forward" in m.__dict__]


def _trainer_like_step(model, features, collator):
    """What Trainer does with a batch: keep the columns the forward's signature names, collate, pass
    ``num_items_in_batch``, backward."""
    keep = set(inspect.signature(model.forward).parameters)
    batch = collator([{k: v for k, v in f.items() if k in keep} for f in features])
    count = (batch["labels"] != -100).sum()
    model.zero_grad(set_to_none=True)
    loss = model(**batch, num_items_in_batch=count).loss
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("collator", ["flattening", "padding"])
def test_token_classification_trainer_like_step(collator, seed):
    from fastbert.encoder.swap import packs_position_ids

    if collator == "flattening" and not packs_position_ids():
        pytest.skip("this transformers reads restarting position_ids as one sequence")
    ref = _model("bert", "ForTokenClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    features = []
    for n in (SEQLEN, 1, 4, 5):
        ids = torch.randint(5, VOCAB, (n,)).tolist()
        features.append(dict(input_ids=ids, labels=torch.randint(0, 2, (n,)).tolist(), words=["unused"] * n))
    if collator == "flattening":
        collate = transformers.DataCollatorWithFlattening(return_tensors="pt")
    else:
        collate = transformers.DataCollatorForTokenClassification(
            transformers.PreTrainedTokenizerFast(tokenizer_object=_tokenizer(), pad_token="[PAD]"))
    expected, expected_grads = _trainer_like_step(ref, features, collate)
    got, got_grads = _trainer_like_step(model, features, collate)
    assert abs(got - expected) <= LOSS_RTOL * abs(expected)
    _grads_close(got_grads, expected_grads, GRAD_RTOL)


def _tokenizer():
    """A word-level tokenizer whose only job is padding ([PAD] = id 0, as BERT pads)."""
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]"))


def test_token_head_compiles_fullgraph_without_packing(seed):
    """``validate_inputs=False, padding_free=False`` (no host sync) keeps a per-token head traceable whole."""
    ref = _model("bert", "ForTokenClassification").eval()
    model = torch.compile(fastbert.optimize(copy.deepcopy(ref), backend="torch", validate_inputs=False,
                                            padding_free=False), fullgraph=True, backend="eager")
    ids, mask = _padded(ref)
    with torch.inference_mode():
        got, expected = model(input_ids=ids, attention_mask=mask).logits, ref(input_ids=ids, attention_mask=mask).logits
    assert max_err(got, expected, mask) <= parity_bound(expected)
    torch._dynamo.reset()
