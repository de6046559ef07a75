"""fastbert.BertModel against transformers.BertModel (float32, eager attention): the spine's parity tests."""
import pytest
import torch
from conftest import SENTENCES
from utils import left_pad, max_err, parity_bound, tiny_hf_config

import fastbert
from fastbert.encoder.weights import remap_state_dict


@pytest.fixture(scope="module")
def fb_minilm(minilm_path):
    return fastbert.BertModel.from_pretrained(minilm_path, backend="torch")


def _encode(tok, sentences=SENTENCES):
    return dict(tok(sentences, padding=True, return_tensors="pt"))


@pytest.mark.parametrize("padding", ["right", "left"])
def test_minilm_parity(fb_minilm, hf_minilm, hf_tokenizer, padding):
    enc = _encode(hf_tokenizer)
    if padding == "left":
        enc = left_pad(enc)
    assert (enc["attention_mask"] == 0).any(), "the batch must contain padding"
    with torch.no_grad():
        ref = hf_minilm(**enc)
        out = fb_minilm(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    valid = enc["attention_mask"].bool()
    err = max_err(out.last_hidden_state, ref.last_hidden_state, valid)
    assert err <= parity_bound(ref.last_hidden_state[valid]), err
    err = max_err(out.pooler_output, ref.pooler_output)
    assert err <= parity_bound(ref.pooler_output), err
    # Indexes like HF's output.
    assert out[0] is out.last_hidden_state and out[1] is out.pooler_output and len(out) == 2


def test_mask_with_holes_and_type_ids(fb_minilm, hf_minilm, seed):
    b, s = 4, 23
    ids = torch.randint(1, 30522, (b, s))
    mask = (torch.rand(b, s) > 0.3).long()
    mask[:, 0] = 1
    types = torch.randint(0, 2, (b, s))
    with torch.no_grad():
        ref = hf_minilm(ids, attention_mask=mask, token_type_ids=types)
        out = fb_minilm(ids, attention_mask=mask, token_type_ids=types)
    err = max_err(out.last_hidden_state, ref.last_hidden_state, mask)
    assert err <= parity_bound(ref.last_hidden_state), (err, seed)
    assert max_err(out.pooler_output, ref.pooler_output) <= parity_bound(ref.pooler_output), seed


def test_position_ids_and_no_mask(fb_minilm, hf_minilm, seed):
    ids = torch.randint(0, 30522, (2, 9))
    pos = torch.randint(0, 512, (2, 9))
    ones = torch.ones_like(ids)  # with a mask, restarting positions are one sequence per row on every version
    with torch.no_grad():  # (without one they are packed sequences: tests/test_position_ids.py)
        ref = hf_minilm(ids, ones, position_ids=pos)
        out = fb_minilm(ids, ones, position_ids=pos)
        ref_nomask = hf_minilm(ids)
        out_nomask = fb_minilm(ids)
    assert max_err(out[0], ref[0]) <= parity_bound(ref[0]), seed
    assert max_err(out_nomask[0], ref_nomask[0]) <= parity_bound(ref_nomask[0]), seed


def test_all_masked_row_is_finite(fb_minilm):
    ids = torch.randint(0, 30522, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1] = 0
    with torch.no_grad():
        out = fb_minilm(ids, mask)
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.pooler_output).all()


def test_hidden_states(fb_minilm, hf_minilm, hf_tokenizer):
    enc = _encode(hf_tokenizer, SENTENCES[:3])
    with torch.no_grad():
        ref = hf_minilm(**enc, output_hidden_states=True)
        out = fb_minilm(enc["input_ids"], enc["attention_mask"], output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    valid = enc["attention_mask"].bool()
    for mine, theirs in zip(out.hidden_states, ref.hidden_states):
        assert max_err(mine, theirs, valid) <= parity_bound(theirs)


def _random_pair(seed, **config):
    """A randomly initialised HF BertModel and the fastbert model loaded from its state dict."""
    from transformers import BertModel as HFBertModel

    hf_config = tiny_hf_config(**config)
    ref = HFBertModel(hf_config, add_pooling_layer=True).eval()
    ref.set_attn_implementation("eager")
    fb = fastbert.BertModel(fastbert.BertConfig.from_hf(hf_config), backend="torch")
    fb.load_state_dict(remap_state_dict(ref.state_dict(), fb.config), strict=True)
    return ref, fb.eval()


@pytest.mark.parametrize(
    "shape", [dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072),  # BERT-base
              dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096)],  # BERT-large
    ids=["base", "large"])
def test_random_bert_shapes(shape, seed):
    ref, fb = _random_pair(seed, max_position_embeddings=512, vocab_size=1000, **shape)
    b, s = 3, 129
    ids = torch.randint(0, 1000, (b, s))
    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, 70:] = 0
    mask[2, :5] = 0
    with torch.no_grad():
        r = ref(ids, attention_mask=mask)
        o = fb(ids, mask)
    assert max_err(o[0], r[0], mask) <= parity_bound(r[0]), seed
    assert max_err(o[1], r[1]) <= parity_bound(r[1]), seed


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu"])
@pytest.mark.parametrize("seqlen", [1, 7, 64])
def test_activations_and_odd_lengths(act, seqlen, seed):
    ref, fb = _random_pair(seed, hidden_act=act)
    ids = torch.randint(0, 211, (2, seqlen))
    with torch.no_grad():
        r, o = ref(ids), fb(ids)
    assert max_err(o[0], r[0]) <= parity_bound(r[0]), seed


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_relative_to_reference(minilm_path, hf_minilm, hf_tokenizer, dtype):
    """err(fastbert in dtype vs HF fp32) <= 1.5 x err(HF in dtype vs HF fp32), on valid positions."""
    from transformers import BertModel as HFBertModel

    k = 1.5
    enc = _encode(hf_tokenizer)
    valid = enc["attention_mask"].bool()
    hf_low = HFBertModel.from_pretrained(minilm_path, attn_implementation="eager", dtype=dtype).eval()
    fb_low = fastbert.BertModel.from_pretrained(minilm_path, dtype=dtype, backend="torch")
    assert fb_low.embeddings.word.weight.dtype == dtype
    with torch.no_grad():
        ref = hf_minilm(**enc)
        ref_low = hf_low(**enc)
        out = fb_low(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert out.last_hidden_state.dtype == dtype
    for name in ("last_hidden_state", "pooler_output"):
        where = valid if name == "last_hidden_state" else None
        ours = max_err(getattr(out, name), getattr(ref, name), where)
        theirs = max_err(getattr(ref_low, name), getattr(ref, name), where)
        assert ours <= k * theirs, (name, ours, theirs)


def test_backend_argument_and_env(minilm_path, monkeypatch):
    from fastbert.encoder import ops

    monkeypatch.delenv("FASTBERT_BACKEND", raising=False)
    ops.triton_problem()  # imports the kernels now: under TRITON_INTERPRET=0 below they would compile for a GPU
    cpu = torch.device("cpu")
    assert ops.resolve_backend(None, cpu) == "torch"
    monkeypatch.setenv("FASTBERT_BACKEND", "torch")
    assert ops.resolve_backend("auto", cpu) == "torch"
    monkeypatch.setenv("FASTBERT_BACKEND", "cuda-please")
    with pytest.raises(ValueError, match="FASTBERT_BACKEND"):
        ops.resolve_backend(None, cpu)
    with pytest.raises(ValueError, match="backend argument"):
        ops.resolve_backend("fast", cpu)
    monkeypatch.setenv("FASTBERT_BACKEND", "triton")
    assert ops.resolve_backend("torch", cpu) == "torch"  # the argument wins over the environment
    assert ops.resolve_backend(None, cpu, dropout=True) == "triton"  # dropout is fused (asked for by name)
    # Gradients without dropout keep the Triton backend asked for by name (it has backward kernels), not MPNet's
    assert ops.resolve_backend(None, cpu, needs_grad=True, grad_missing="MPNet's bias") == "torch"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA"):
        ops.resolve_backend(None, cpu)


@pytest.mark.parametrize("grad_missing", [None, "no backward kernel here"])
def test_gradients_flow(grad_missing, monkeypatch, seed):
    """Asked for by name, the Triton backend differentiates through its backward kernels; a model the kernels cannot
    differentiate (``triton_grad_missing``, e.g. MPNet) runs the PyTorch path and says so once."""
    import warnings

    from fastbert.encoder.config import BertConfig

    monkeypatch.setattr(BertConfig, "triton_grad_missing", property(lambda self: grad_missing))
    ref, fb = _random_pair(seed)
    fb.backend = "triton"
    ids = torch.randint(0, 211, (2, 5))
    ids[:, -1] = 0  # the pad token: transformers' word embedding has padding_idx=0, so that row gets no gradient
    if grad_missing is None:
        with warnings.catch_warnings(record=True) as caught:  # (triton 3.6's interpreter warns on numpy itself)
            warnings.simplefilter("always")
            fb(ids).last_hidden_state.sum().backward()
        assert not [w for w in caught if "PyTorch path" in str(w.message)]
    else:
        with pytest.warns(UserWarning, match="runs on the slower PyTorch path"):
            fb(ids).last_hidden_state.sum().backward()
    ref(ids).last_hidden_state.sum().backward()
    g_fb = fb.layers[0].ffn_up.weight.grad
    g_ref = ref.encoder.layer[0].intermediate.dense.weight.grad
    assert g_fb is not None and max_err(g_fb, g_ref) <= parity_bound(g_ref), seed
    g_fb, g_ref = fb.embeddings.word.weight.grad, ref.embeddings.word_embeddings.weight.grad
    assert not g_fb[0].any() and max_err(g_fb, g_ref) <= parity_bound(g_ref), seed
