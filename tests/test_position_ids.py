"""position_ids that restart within a row, with and without an attention mask, against the installed transformers.

transformers >= 5.25 reads restarting ``position_ids`` with no attention mask as packed sequences (block-diagonal
attention: the input of its ``DataCollatorWithFlattening``) for BERT, RoBERTa, XLM-RoBERTa and ELECTRA; older
versions attend across the whole row. ``fastbert.optimize`` must follow whichever transformers is installed, on the
PyTorch/oneDNN path and the Triton path (interpreted on CPU); fastbert's own models always use the packed reading
(``BertConfig.packed_position_ids``), checked here against each piece run on its own.
"""
import copy
import importlib
import inspect

import pytest
import torch
import transformers
from test_families import CONFIGS, PREFIX, VOCAB
from utils import float_outputs, max_err, parity_bound

import fastbert

from fastbert.encoder.swap import packs_position_ids  # noqa: E402

FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "albert"]  # the families whose models take position_ids
PACKING = {"bert", "roberta", "xlm-roberta", "electra"}  # those transformers >= 5.25 packs by position_ids
SEQLEN = 9


def _config(family):
    if family == "bert":
        return transformers.BertConfig(**dict(vocab_size=VOCAB, hidden_size=96, num_attention_heads=6,
                                              intermediate_size=160, num_hidden_layers=2, max_position_embeddings=64,
                                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    return CONFIGS[family]()


def _model(family, head="Model"):
    prefix = "Bert" if family == "bert" else PREFIX[family]
    model = getattr(transformers, prefix + head)(_config(family)).eval()
    model.set_attn_implementation("eager")
    return model


def _pieces(lengths, start):
    """Positions of pieces of the given lengths back to back, each counting from ``start``."""
    return torch.cat([torch.arange(start, start + n) for n in lengths])


def _positions(start):
    """[4, 9] position ids, restarts at awkward places: a 1-token piece, a piece at the end, rows with 1-4 pieces."""
    rows = [[SEQLEN], [4, 5], [1, 3, 5], [2, 1, 5, 1]]
    return torch.stack([_pieces(r, start) for r in rows]), rows


def _inputs(model, family, mask):
    start = model.config.pad_token_id + 1 if family in ("roberta", "xlm-roberta") else 0
    pos, rows = _positions(start)
    inputs = dict(input_ids=torch.randint(3, VOCAB, pos.shape), position_ids=pos)
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        inputs["token_type_ids"] = torch.randint(0, model.config.type_vocab_size, pos.shape)
    if mask:
        inputs["attention_mask"] = torch.ones_like(pos)
    return inputs, rows


def _check(got, expected, seed):
    got, expected = float_outputs(got), float_outputs(expected)
    assert got.keys() == expected.keys()
    for key, e in expected.items():
        assert max_err(got[key], e) <= parity_bound(e), (key, seed)


CASES = [(f, mask, backend) for f in FAMILIES for mask in (False, True) for backend in ("torch", "triton")]


@pytest.mark.parametrize("family, mask, backend", CASES,
                         ids=[f"{f}-{'mask' if m else 'nomask'}-{b}" for f, m, b in CASES])
def test_optimize_follows_installed_transformers(family, mask, backend, seed):
    ref = _model(family)
    model = fastbert.optimize(copy.deepcopy(ref), backend=backend)
    inputs, _ = _inputs(ref, family, mask)
    with torch.no_grad():
        expected, got = ref(**inputs, output_hidden_states=True), model(**inputs, output_hidden_states=True)
    _check(got, expected, seed)


def test_the_reference_semantics_are_the_ones_assumed(seed):
    """Guards :func:`packs_position_ids` against the installed transformers: a row with a restart and no mask differs
    from the same row with a mask of ones exactly when transformers packs."""
    ref = _model("bert")
    inputs, _ = _inputs(ref, "bert", mask=False)
    with torch.no_grad():
        free = ref(**inputs).last_hidden_state
        masked = ref(**inputs, attention_mask=torch.ones_like(inputs["input_ids"])).last_hidden_state
    differs = max_err(free[1:], masked[1:]) > 1e-3  # rows 1-3 restart
    assert differs == packs_position_ids(), (transformers.__version__, seed)
    assert max_err(free[0], masked[0]) <= parity_bound(masked[0])  # row 0 does not restart


@pytest.mark.parametrize("head", ["ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"])
def test_optimize_heads_with_restarts(head, seed):
    ref = _model("bert", head)
    model = fastbert.optimize(copy.deepcopy(ref), backend="torch")
    inputs, _ = _inputs(ref, "bert", mask=False)
    with torch.no_grad():
        _check(model(**inputs), ref(**inputs), seed)


@pytest.mark.parametrize("family", sorted(PACKING))
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fastbert_models_pack_restarts(family, backend, tmp_path, seed):
    """fastbert.AutoModel: each piece of a restarting row gives what that piece gives alone (transformers >= 5.25's
    reading, whatever transformers is installed); the pooler reads each row's first token."""
    ref = _model(family)
    ref.save_pretrained(tmp_path)
    model = fastbert.AutoModel.from_pretrained(tmp_path, backend=backend)
    inputs, rows = _inputs(ref, family, mask=False)
    with torch.no_grad():
        out = model(**inputs)
        for r, lengths in enumerate(rows):
            at = 0
            for n in lengths:
                piece = {k: v[r:r + 1, at:at + n] for k, v in inputs.items()}
                alone = model(**piece)
                got = out.last_hidden_state[r:r + 1, at:at + n]
                assert max_err(got, alone.last_hidden_state) <= parity_bound(alone.last_hidden_state), (r, at, seed)
                if at == 0 and out.pooler_output is not None:
                    assert max_err(out.pooler_output[r], alone.pooler_output[0]) <= parity_bound(alone.pooler_output)
                at += n
        if packs_position_ids():
            expected = ref(**inputs)
            assert max_err(out.last_hidden_state, expected.last_hidden_state) <= parity_bound(
                expected.last_hidden_state), seed


def test_restarts_refused_without_padding_free(tmp_path):
    ref = _model("bert")
    ref.save_pretrained(tmp_path)
    model = fastbert.AutoModel.from_pretrained(tmp_path, backend="torch")
    model.padding_free = False
    inputs, _ = _inputs(ref, "bert", mask=False)
    with pytest.raises(ValueError, match="position_ids restart"), torch.no_grad():
        model(**inputs)
    with torch.no_grad():  # with a mask there is nothing to pack
        model(**inputs, attention_mask=torch.ones_like(inputs["input_ids"]))
