"""Bad input is a clear Python exception naming the problem, raised before any kernel runs."""
import copy

import pytest
import torch
from utils import max_err, parity_bound, tiny_hf_config

import fastbert


@pytest.fixture(scope="module")
def model():
    return fastbert.BertModel(fastbert.BertConfig.from_hf(tiny_hf_config()), backend="torch").eval()


def _ids(b=2, s=5):
    return torch.randint(0, 211, (b, s))


@pytest.mark.parametrize("bad, message", [(211, "input_ids contains 211, outside the valid range \\[0, 211\\)"),
                                          (-1, "input_ids contains -1")])
def test_token_ids_out_of_range(model, bad, message):
    ids = _ids()
    ids[1, 3] = bad
    with pytest.raises(ValueError, match=message):
        model(ids)


def test_sequence_too_long(model):
    with pytest.raises(ValueError, match="sequence length 65 exceeds max_position_embeddings=64"):
        model(_ids(1, 65))


@pytest.mark.parametrize("name", ["attention_mask", "token_type_ids"])
def test_shape_mismatch(model, name):
    with pytest.raises(ValueError, match=f"{name} has shape \\[2, 4\\] but the input ids need \\[2, 5\\]"):
        model(_ids(), **{name: torch.ones(2, 4, dtype=torch.long)})


def test_non_integer_ids(model):
    with pytest.raises(TypeError, match="input_ids must hold integers.*float32"):
        model(_ids().float())
    with pytest.raises(TypeError, match="input_ids must be a torch.Tensor, got list"):
        model([[1, 2, 3]])
    with pytest.raises(TypeError, match="token_type_ids must hold integers"):
        model(_ids(), token_type_ids=torch.zeros(2, 5, dtype=torch.bool))


def test_ids_must_be_2d_and_non_empty(model):
    with pytest.raises(ValueError, match="input_ids must be 2-D"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="empty input"):
        model(torch.zeros(0, 4, dtype=torch.long))


def test_mask_values(model):
    with pytest.raises(ValueError, match="attention_mask must contain only 0 and 1"):
        model(_ids(), attention_mask=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match="attention_mask must contain only 0 and 1"):
        model(_ids(), attention_mask=torch.tensor([[1.0, 1, 1, 1, float("nan")]] * 2))
    # bool, int and float 0/1 masks are all fine
    for mask in (torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 5), torch.ones(2, 5, dtype=torch.int32)):
        assert torch.isfinite(model(_ids(), attention_mask=mask)[0]).all()


def test_type_and_position_ids_out_of_range(model):
    with pytest.raises(ValueError, match="token_type_ids contains 2, outside the valid range \\[0, 2\\)"):
        model(_ids(), token_type_ids=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match="position_ids contains 64"):
        model(_ids(), position_ids=torch.full((1, 5), 64))


def test_device_mismatch(model):
    ids = _ids().to("meta")
    with pytest.raises(ValueError, match="input_ids is on meta but the model is on cpu"):
        model(ids)


def test_value_checks_can_be_disabled(model):
    model.validate_inputs = False
    try:
        out = model(_ids(), attention_mask=torch.ones(2, 5, dtype=torch.long))
    finally:
        model.validate_inputs = True
    assert torch.isfinite(out[0]).all()


@pytest.mark.parametrize("overrides, message", [
    (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
    (dict(is_decoder=True), "is_decoder=True"),
    (dict(is_decoder=True, add_cross_attention=True), "add_cross_attention=True"),
    (dict(hidden_act="silu"), "unsupported hidden_act 'silu'"),
    (dict(hidden_size=30, num_attention_heads=4), "not a multiple of num_attention_heads"),
])
def test_unsupported_configs(overrides, message):
    with pytest.raises(ValueError, match=message):
        fastbert.BertConfig.from_hf(tiny_hf_config(**overrides))


def test_unsupported_model_type():
    with pytest.raises(ValueError, match="unsupported model_type 'deberta'; fastbert implements "
                                         "\\['albert', 'bert', 'deberta-v2', 'distilbert', 'electra', 'mpnet', "
                                         "'roberta', 'xlm-roberta', 'xlnet'\\]"):
        fastbert.BertConfig.from_dict({"model_type": "deberta"})


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.int8])
@pytest.mark.parametrize("name", ["input_ids", "token_type_ids", "position_ids"])
def test_small_integer_ids_refused_like_transformers(model, name, dtype):
    """transformers' nn.Embedding takes int64/int32 ids only (a RuntimeError inside F.embedding): a clear TypeError."""
    ids = torch.randint(0, 2, (2, 5))
    inputs = {"input_ids": ids}
    inputs[name] = ids.to(dtype)
    with pytest.raises(TypeError, match=f"{name} must be torch.int64 or torch.int32 .*got {dtype}; convert with "
                                        "\\.long\\(\\)"):
        model(**inputs)


def test_int32_ids_match_int64(model):
    ids, types = _ids(), torch.randint(0, 2, (2, 5))
    pos = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        wide = model(ids, token_type_ids=types, position_ids=pos)[0]
        narrow = model(ids.int(), token_type_ids=types.int(), position_ids=pos.int())[0]
    assert torch.equal(wide, narrow)


@pytest.mark.parametrize("shape", [(1, 5), (5,)])
def test_token_type_ids_broadcast_over_batch(model, shape):
    """transformers adds token-type embeddings by broadcasting, so [1, S] and [S] token_type_ids are accepted."""
    ids, types = _ids(), torch.randint(0, 2, (5,))
    with torch.no_grad():
        expected = model(ids, token_type_ids=types.expand(2, 5).clone())[0]
        got = model(ids, token_type_ids=types.reshape(shape))[0]
    assert torch.equal(got, expected)


def test_inputs_embeds_dtype():
    """A float dtype that promotes to the model's is fine (as in transformers); one that would not is refused."""
    import transformers

    hf = transformers.BertModel(tiny_hf_config()).eval()
    opt = fastbert.optimize(copy.deepcopy(hf))
    embeds = torch.randn(2, 5, 64).half()
    with torch.no_grad():
        expected, got = hf(inputs_embeds=embeds)[0], opt(inputs_embeds=embeds)[0]
        assert got.dtype == expected.dtype == torch.float32
        assert max_err(got, expected) <= parity_bound(expected)
        with pytest.raises(TypeError, match="inputs_embeds has dtype torch.float64 but the model runs in "
                                            "torch.float32"):
            opt(inputs_embeds=embeds.double())
