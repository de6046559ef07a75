"""Fine-tuning on fastbert's path: ``fastbert.optimize(model)`` in train mode against transformers in float32.

Both stacks start from the same random init (dropout 0) and take the same AdamW steps: the loss of every step within
1e-3 relative, every parameter's gradient within 1e-3 relative norm. Random-weight models at awkward sizes (hidden 96
with 6 heads, FFN 160), BERT, RoBERTa and DistilBERT, with sequence classification, token classification (labels
on each word's first sub-token, as transformers' token-classification recipe aligns them) and question answering
(BERT and RoBERTa also masked LM and multiple choice), on padded batches of mixed lengths and on
``DataCollatorWithFlattening`` batches. A forward hook on the HF
embeddings module proves that HF's own forward never ran. Dropout is checked for placement (p = 1 makes it
deterministic), reproducibility under a seed, gradient checkpointing (the masks replay) and eval after training.
"""
import copy

import pytest
import torch
import transformers
from utils import max_err, parity_bound

import fastbert

VOCAB, BATCH, SEQLEN, STEPS = 211, 4, 13, 3
LOSS_RTOL = GRAD_RTOL = 1e-3

_SIZES = dict(vocab_size=VOCAB, hidden_size=96, num_attention_heads=6, intermediate_size=160, num_hidden_layers=2,
              max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONFIGS = {  # keyword arguments override the sizes and rates
    "bert": lambda **kw: transformers.BertConfig(**dict(_SIZES, **kw)),
    "roberta": lambda **kw: transformers.RobertaConfig(**dict(_SIZES, max_position_embeddings=66, type_vocab_size=1,
                                                              **kw)),
    "distilbert": lambda **kw: transformers.DistilBertConfig(**dict(dict(
        vocab_size=VOCAB, dim=96, n_heads=6, hidden_dim=160, n_layers=2, max_position_embeddings=64, dropout=0.0,
        attention_dropout=0.0, seq_classif_dropout=0.0, qa_dropout=0.0, activation="gelu"), **kw)),
    "albert": lambda **kw: transformers.AlbertConfig(**dict(_SIZES, embedding_size=48, classifier_dropout_prob=0.0,
                                                            **kw)),
}
PREFIX = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert", "albert": "Albert"}
HEADS = ["ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"]


def _model(family, head, **config):
    """A random model in train mode; biases and LayerNorm weights drawn too (transformers initialises them to 0 and
    1, which would hide a misplaced bias or LayerNorm)."""
    model = getattr(transformers, PREFIX[family] + head)(CONFIGS[family](**config)).train()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p), alpha=0.1)
    return model


def _base(model):
    return getattr(model, model.base_model_prefix, model)


def _hf_forward_calls(model) -> list:
    """A list that grows each time HF's own embeddings module runs (fastbert reads its weights, never calls it)."""
    calls = []
    _base(model).embeddings.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _lengths():
    lengths = torch.randint(4, SEQLEN + 1, (BATCH,))
    lengths[0] = SEQLEN  # one full row, so the batch is as long as its longest
    return lengths


def _word_labels(length, num_labels=5):
    """Labels for one row of ``length`` tokens ([CLS] words [SEP]): words of 1-3 sub-tokens, the label on each
    word's first sub-token and -100 on the rest, on [CLS]/[SEP] (transformers' word_ids alignment)."""
    labels, at = [-100], 1
    while at < length - 1:
        n = min(int(torch.randint(1, 4, ())), length - 1 - at)
        labels += [int(torch.randint(0, num_labels, ()))] + [-100] * (n - 1)
        at += n
    return labels + [-100]


def _batch(model, head):
    """A right-padded batch of mixed lengths with the head's labels (the pad token at padding positions, as a
    tokenizer pads; labels -100 there, as transformers' collators pad them)."""
    pad = model.config.pad_token_id
    lengths = _lengths()
    ids = torch.randint(3, VOCAB, (BATCH, SEQLEN))
    mask = (torch.arange(SEQLEN)[None, :] < lengths[:, None]).long()
    ids[mask == 0] = pad
    batch = dict(input_ids=ids, attention_mask=mask)
    if head == "ForSequenceClassification":
        batch["labels"] = torch.randint(0, model.config.num_labels, (BATCH,))
    elif head == "ForTokenClassification":
        labels = torch.full((BATCH, SEQLEN), -100)
        for r, n in enumerate(lengths.tolist()):
            labels[r, :n] = torch.tensor(_word_labels(n, model.config.num_labels))
        batch["labels"] = labels
    else:  # question answering: an answer span inside each row's real tokens
        start = (torch.rand(BATCH) * (lengths - 1).float()).long()
        batch["start_positions"] = start
        batch["end_positions"] = torch.minimum(start + torch.randint(0, 3, (BATCH,)), lengths - 1)
    return batch


def _flattened(model, head):
    """The same kind of batch through transformers' ``DataCollatorWithFlattening``: one row of back-to-back
    sequences, ``position_ids`` restarting at each, no attention mask."""
    rows = []
    for n in _lengths().tolist():
        row = dict(input_ids=torch.randint(3, VOCAB, (n,)).tolist())
        row["labels"] = (_word_labels(n, model.config.num_labels) if head == "ForTokenClassification"
                         else row["input_ids"])
        rows.append(row)
    collated = transformers.DataCollatorWithFlattening(return_tensors="pt")(rows)
    if head == "ForMaskedLM":  # predict a few real tokens, ignore the rest
        keep = torch.rand(collated["labels"].shape) < 0.3
        collated["labels"] = torch.where(keep, collated["labels"], -100)
    return dict(collated)


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def _train_both(ref, model, batches):
    """Take one AdamW step per batch on both models; check the loss and every gradient at each step."""
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step, batch in enumerate(batches):
        losses = []
        for m, o in ((ref, opt_ref), (model, opt)):
            o.zero_grad()
            loss = m(**batch).loss
            loss.backward()
            losses.append(loss.detach())
        assert abs(losses[1] - losses[0]) <= LOSS_RTOL * abs(losses[0]), (step, losses)
        # A gradient that is zero in exact arithmetic (the key bias, a QA head's bias: a softmax ignores a shift) is
        # rounding noise in both stacks; its error is held to 1e-6 of the whole gradient's norm instead.
        floor = 1e-6 * torch.stack([p.grad.norm() for p in ref.parameters() if p.grad is not None]).norm()
        for (name, p_ref), p in zip(ref.named_parameters(), model.parameters()):
            if p_ref.grad is None:
                assert p.grad is None or not p.grad.any(), (step, name)
                continue
            assert p.grad is not None, (step, name)
            err = (p.grad - p_ref.grad).norm()
            assert err <= max(GRAD_RTOL * p_ref.grad.norm(), floor), (step, name, _rel(p.grad, p_ref.grad))
        opt_ref.step()
        opt.step()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_training_steps_match_transformers(family, head, seed):
    ref = _model(family, head)
    model = fastbert.optimize(copy.deepcopy(ref))
    calls = _hf_forward_calls(model)
    _train_both(ref, model, [_batch(ref, head) for _ in range(STEPS)])
    assert not calls, "HF's forward ran instead of fastbert's"


def _masked_lm_batch(model):
    """A padded batch with about 30% of the real tokens to predict (-100 elsewhere and at padding)."""
    batch = {k: v for k, v in _batch(model, "ForSequenceClassification").items() if k != "labels"}
    predict = (torch.rand(batch["input_ids"].shape) < 0.3) & (batch["attention_mask"] == 1)
    batch["labels"] = torch.where(predict, batch["input_ids"], -100)
    return batch


def _multiple_choice_batch(model, choices=3):
    """Each question's choices as rows of a padded batch ``[B, choices, S]``, the label the right choice."""
    rows = [{k: v for k, v in _batch(model, "ForSequenceClassification").items() if k != "labels"}
            for _ in range(choices)]
    batch = {k: torch.stack([r[k] for r in rows], dim=1) for k in rows[0]}  # [B, choices, S]
    batch["labels"] = torch.randint(0, choices, (BATCH,))
    return batch


@pytest.mark.parametrize("head", ["ForMaskedLM", "ForMultipleChoice"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_training_steps_match_transformers_other_heads(family, head, seed):
    ref = _model(family, head)
    model = fastbert.optimize(copy.deepcopy(ref))
    calls = _hf_forward_calls(model)
    make = _masked_lm_batch if head == "ForMaskedLM" else _multiple_choice_batch
    _train_both(ref, model, [make(ref) for _ in range(STEPS)])
    assert not calls


@pytest.mark.parametrize("head", ["ForTokenClassification", "ForMaskedLM"])
@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_training_on_flattened_batches(family, head, seed):
    from fastbert.encoder.swap import packs_position_ids

    if not packs_position_ids():
        pytest.skip("this transformers reads restarting position_ids as one sequence")
    ref = _model(family, head)
    model = fastbert.optimize(copy.deepcopy(ref))
    calls = _hf_forward_calls(model)
    _train_both(ref, model, [_flattened(ref, head) for _ in range(STEPS)])
    assert not calls


def test_weight_updates_reach_the_next_forward(seed):
    """No stale copy: an in-place change of a HF parameter (as ``optimizer.step()`` makes) changes the output."""
    model = fastbert.optimize(_model("bert", "Model").eval())
    batch = {k: v for k, v in _batch(model, "ForSequenceClassification").items() if k != "labels"}
    with torch.no_grad():
        before = model(**batch).last_hidden_state
        model.encoder.layer[0].attention.self.key.weight.mul_(2)
        after = model(**batch).last_hidden_state
    assert max_err(after, before) > 1e-3


@pytest.mark.parametrize("family", ["bert", "distilbert", "albert"])
def test_hidden_dropout_placement(family, seed):
    """Hidden dropout at p = 1 zeroes exactly what it drops, so train mode is deterministic and must match HF:
    the rates and places are the family's (DistilBERT: none after the attention output projection; ALBERT: none
    after the FFN)."""
    rate = dict(dropout=1.0) if family == "distilbert" else dict(hidden_dropout_prob=1.0)
    ref = _model(family, "Model", **rate)
    model = fastbert.optimize(copy.deepcopy(ref))
    calls = _hf_forward_calls(model)
    batch = {k: v for k, v in _batch(ref, "ForSequenceClassification").items() if k != "labels"}
    valid = batch["attention_mask"].bool()
    expected, got = ref(**batch).last_hidden_state, model(**batch).last_hidden_state
    assert max_err(got, expected, valid) <= parity_bound(expected), seed
    assert not calls


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_dropout_is_random_and_seeded(family):
    rates = (dict(dropout=0.2, attention_dropout=0.2) if family == "distilbert"
             else dict(hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2))
    model = fastbert.optimize(_model(family, "Model", **rates))
    calls = _hf_forward_calls(model)
    torch.manual_seed(0)
    batch = {k: v for k, v in _batch(model, "ForSequenceClassification").items() if k != "labels"}
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(model(**batch).last_hidden_state)
    assert torch.equal(outs[0], outs[1])
    assert max_err(outs[0], outs[2]) > 1e-2
    model.eval()
    assert torch.equal(model(**batch).last_hidden_state, model(**batch).last_hidden_state)
    assert not calls


def test_gradient_checkpointing_replays_dropout(seed):
    """transformers' gradient checkpointing runs on fastbert's path; the recomputed layers draw the same dropout
    masks, so loss and gradients equal a run without checkpointing under the same seed."""
    rates = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    plain = fastbert.optimize(_model("bert", "ForSequenceClassification", **rates))
    ckpt = copy.deepcopy(plain)
    (getattr(ckpt, "activation_checkpointing_enable", None) or ckpt.gradient_checkpointing_enable)()  # renamed in 5.25
    checkpointed = []
    for module in ckpt.modules():  # count the calls of the checkpoint function transformers installed
        function = getattr(module, "_gradient_checkpointing_func", None)
        if function is not None:
            module._gradient_checkpointing_func = lambda *a, f=function, **k: checkpointed.append(1) or f(*a, **k)
    calls = _hf_forward_calls(ckpt)
    batch = _batch(plain, "ForSequenceClassification")
    grads = []
    for m in (plain, ckpt):
        torch.manual_seed(seed)
        m(**batch).loss.backward()
        grads.append([p.grad for p in m.parameters()])
    for g, g_ckpt in zip(*grads):
        assert torch.allclose(g_ckpt, g, rtol=1e-5, atol=1e-7)
    assert len(checkpointed) == plain.config.num_hidden_layers
    assert not calls


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_eval_after_training_equals_transformers(family, seed):
    """Train on fastbert with dropout on; in eval mode the trained model gives what transformers gives with the
    same (trained) weights."""
    rates = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = fastbert.optimize(_model(family, "ForSequenceClassification", **rates))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(STEPS):
        opt.zero_grad()
        model(**_batch(model, "ForSequenceClassification")).loss.backward()
        opt.step()
    ref = _model(family, "ForSequenceClassification", **rates)
    ref.load_state_dict(model.state_dict())
    model.eval()
    ref.eval()
    batch = _batch(model, "ForSequenceClassification")
    with torch.no_grad():
        expected, got = ref(**batch), model(**batch)
    assert max_err(got.logits, expected.logits) <= parity_bound(expected.logits), seed
    assert abs(got.loss - expected.loss) <= LOSS_RTOL * abs(expected.loss)


def test_bf16_autocast_loss(seed):
    """``torch.autocast("cpu", dtype=torch.bfloat16)`` with fp32 master weights: fastbert's loss is as close to the
    fp32 loss as transformers' own bf16 autocast loss is (within 2x its error, plus 2e-3 relative), and every
    gradient is finite."""
    ref = _model("bert", "ForSequenceClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    batch = _batch(ref, "ForSequenceClassification")
    exact = ref(**batch).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hf_bf16 = ref(**batch).loss
        fb_bf16 = model(**batch).loss
    fb_bf16.backward()
    assert fb_bf16.dtype == torch.float32  # the loss, like the master weights, stays fp32
    bound = 2 * abs(hf_bf16.item() - exact) + 2e-3 * abs(exact)
    assert abs(fb_bf16.item() - exact) <= bound, (fb_bf16.item(), hf_bf16.item(), exact, seed)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_module_with_its_own_forward_is_refused():
    """An adapter (LoRA and the like) replaces a Linear by a module whose forward adds to it: fastbert, which reads
    weight and bias, refuses it by name instead of dropping the adapter."""

    class Adapted(torch.nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    model = fastbert.optimize(_model("bert", "ForSequenceClassification"))
    old = model.bert.encoder.layer[1].attention.self.value
    model.bert.encoder.layer[1].attention.self.value = Adapted(old.in_features, old.out_features)
    with pytest.raises(TypeError, match="encoder.layer.1.attention.self.value is a Adapted"):
        model(**_batch(model, "ForSequenceClassification"))


def test_trainer_keyword_arguments(seed):
    """transformers.Trainer passes ``num_items_in_batch`` to every forward (for the loss); the encoder ignores it,
    as HF's does."""
    ref = _model("bert", "ForTokenClassification")
    model = fastbert.optimize(copy.deepcopy(ref))
    batch = _batch(ref, "ForTokenClassification")
    count = (batch["labels"] != -100).sum()
    expected, got = ref(**batch, num_items_in_batch=count), model(**batch, num_items_in_batch=count)
    assert abs(got.loss - expected.loss) <= LOSS_RTOL * abs(expected.loss)


def test_train_mode_with_dropout_runs_the_triton_kernels_only_when_asked(monkeypatch, seed):
    """Dropout is fused into the Triton kernels (tests/test_kernels_dropout.py): train mode with dropout keeps
    ``backend='triton'`` asked for by name, every op on Triton, with and without autograd; ``auto`` takes PyTorch."""
    from fastbert.encoder import ops

    if ops.triton_problem() is not None:
        pytest.skip(ops.triton_problem())
    from fastbert.encoder.backends import torch_ops

    model = fastbert.optimize(_model("bert", "ForSequenceClassification", hidden_dropout_prob=0.1,
                                     attention_probs_dropout_prob=0.1), backend="triton")
    for name in ("linear", "attention", "linear_residual_layernorm", "bias_residual_layernorm"):
        monkeypatch.setattr(torch_ops, name, lambda *a, _name=name, **k: pytest.fail(f"torch_ops.{_name} ran"))
    loss = model(**_batch(model, "ForSequenceClassification")).loss
    loss.backward()
    assert torch.isfinite(loss)
    with torch.no_grad():  # train mode without autograd: the forward kernels with dropout
        assert torch.isfinite(model(**_batch(model, "ForSequenceClassification")).logits).all()
    assert ops.resolve_backend("auto", torch.device("cuda"), dropout=True) == "torch"
