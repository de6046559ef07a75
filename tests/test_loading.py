"""Checkpoint loading: remap_state_dict is pure, the load is strict and names what is wrong."""
import json
import os
import re

import pytest
import torch
from utils import max_err, parity_bound, tiny_hf_config

import fastbert
from fastbert.encoder.weights import remap_state_dict


def _hf_model(cls="BertModel"):
    import transformers

    return getattr(transformers, cls)(tiny_hf_config()).eval()


def _write_checkpoint(path, state_dict, hf_config, fmt="safetensors"):
    from safetensors.torch import save_file

    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(hf_config.to_dict()))
    if fmt == "safetensors":
        save_file({k: v.clone() for k, v in state_dict.items()}, str(path / "model.safetensors"))
    else:
        torch.save(state_dict, path / "pytorch_model.bin")


def test_remap_is_pure_and_fuses_qkv():
    hf = _hf_model()
    sd = hf.state_dict()
    before = {k: v.clone() for k, v in sd.items()}
    out = remap_state_dict(sd, fastbert.BertConfig.from_hf(hf.config))
    assert sd.keys() == before.keys() and all(torch.equal(sd[k], before[k]) for k in sd)
    q = sd["encoder.layer.1.attention.self.query.weight"]
    v = sd["encoder.layer.1.attention.self.value.bias"]
    assert torch.equal(out["layers.1.qkv.weight"][:64], q)
    assert torch.equal(out["layers.1.qkv.bias"][128:], v)
    assert not any(k.startswith("encoder.") for k in out)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_loads_prefixed_head_checkpoints(tmp_path, fmt, seed):
    """A BertForPreTraining checkpoint: keys carry 'bert.' and head weights ('cls.') are dropped."""
    hf = _hf_model("BertForPreTraining")
    sd = dict(hf.state_dict())
    assert any(k.startswith("bert.") for k in sd) and any(k.startswith("cls.") for k in sd)
    _write_checkpoint(tmp_path / "ckpt", sd, hf.config, fmt)
    model = fastbert.BertModel.from_pretrained(tmp_path / "ckpt", backend="torch")
    ids = torch.randint(0, 211, (2, 7))
    with torch.no_grad():
        ref, out = hf.bert(ids), model(ids)
    assert max_err(out[1], ref[1]) <= parity_bound(ref[1]), seed


def test_missing_unexpected_and_wrong_shape(tmp_path):
    hf = _hf_model()
    good = dict(hf.state_dict())

    missing = dict(good)
    del missing["encoder.layer.1.output.dense.bias"]
    _write_checkpoint(tmp_path / "missing", missing, hf.config)
    with pytest.raises(ValueError, match="missing.*layers.1.ffn_down.bias"):
        fastbert.BertModel.from_pretrained(tmp_path / "missing")

    extra = dict(good, **{"encoder.layer.0.attention.self.rotary.weight": torch.zeros(3)})
    _write_checkpoint(tmp_path / "extra", extra, hf.config)
    with pytest.raises(ValueError, match="unexpected.*encoder.layer.0.attention.self.rotary.weight"):
        fastbert.BertModel.from_pretrained(tmp_path / "extra")

    wrong = dict(good, **{"embeddings.word_embeddings.weight": torch.zeros(210, 64)})
    _write_checkpoint(tmp_path / "wrong", wrong, hf.config)
    with pytest.raises(ValueError, match="'embeddings.word.weight' has shape \\[210, 64\\].*\\[211, 64\\]"):
        fastbert.BertModel.from_pretrained(tmp_path / "wrong")

    half_qkv = dict(good)
    del half_qkv["encoder.layer.0.attention.self.key.weight"]
    _write_checkpoint(tmp_path / "qkv", half_qkv, hf.config)
    with pytest.raises(ValueError, match="layer 0.*key.weight"):
        fastbert.BertModel.from_pretrained(tmp_path / "qkv")


def test_missing_files(tmp_path):
    with pytest.raises(OSError, match="no config.json"):
        fastbert.BertModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(tiny_hf_config().to_dict()))
    with pytest.raises(OSError, match="no model.safetensors or pytorch_model.bin"):
        fastbert.BertModel.from_pretrained(tmp_path)


def test_without_pooler(tmp_path):
    hf = _hf_model("BertForMaskedLM")  # its BertModel has no pooler
    _write_checkpoint(tmp_path / "mlm", dict(hf.state_dict()), hf.config)
    model = fastbert.BertModel.from_pretrained(tmp_path / "mlm")
    assert model.pooler is None
    out = model(torch.randint(0, 211, (1, 4)))
    assert out.pooler_output is None and len(out) == 1
    with pytest.raises(ValueError, match="missing.*pooler.weight"):
        fastbert.BertModel.from_pretrained(tmp_path / "mlm", add_pooling_layer=True)


@pytest.mark.parametrize("dtype", ["float16", torch.bfloat16, "float32"])
def test_dtype_and_device(minilm_path, dtype):
    model = fastbert.BertModel.from_pretrained(minilm_path, dtype=dtype, device="cpu")
    expected = {"float16": torch.float16, "float32": torch.float32}.get(dtype, dtype)
    assert all(p.dtype == expected and p.device.type == "cpu" for p in model.parameters())
    assert not model.training
    with pytest.raises(ValueError, match="unsupported dtype"):
        fastbert.BertModel.from_pretrained(minilm_path, dtype=torch.int8)


# ------------------------------------------------------------------------------------------------------------------
# Bad checkpoints (issue 15 item 3): each one an OSError/ValueError/TypeError on one line naming the file and key
# ------------------------------------------------------------------------------------------------------------------

def _config_with(**changes):
    return dict(tiny_hf_config().to_dict(), **changes)


_LATIN_1 = json.dumps({"model_type": "bert", "name": "caf\u00e9!"}, ensure_ascii=False).encode("latin-1")


def _bad_config(path, config=None, raw=None):
    path.mkdir()
    (path / "config.json").write_bytes(raw if raw is not None else json.dumps(config, ensure_ascii=False).encode())
    return path / "config.json"


@pytest.mark.parametrize("config, raw, error, message", [
    (_config_with(layer_norm_eps="1e-12"), None, TypeError, "layer_norm_eps must be a number, got str '1e-12'"),
    (_config_with(layer_norm_eps=float("nan")), None, ValueError, "layer_norm_eps must be positive and finite"),
    (_config_with(hidden_act=["gelu"]), None, TypeError, "hidden_act must be a string, got list"),
    (_config_with(num_hidden_layers=True), None, TypeError, "num_hidden_layers must be an integer, got bool True"),
    (_config_with(hidden_size=64.0), None, TypeError, "hidden_size must be an integer, got float 64.0"),
    (_config_with(pad_token_id=211), None, ValueError, "pad_token_id 211 is outside the vocabulary \\[0, 211\\)"),
    (None, b"[1, 2]", TypeError, "a model config must be a JSON object, got list"),
    (None, b"{\"hidden_size\": 64,", ValueError, "is not valid JSON"),
    (None, _LATIN_1, ValueError,
     f"is not UTF-8 text: invalid continuation byte \\(byte 0xe9 at offset {_LATIN_1.index(0xE9)}\\)"),
], ids=["eps-string", "eps-nan", "act-list", "layers-bool", "hidden-float", "pad-out-of-vocab", "json-list",
        "json-truncated", "latin-1"])
def test_bad_config(tmp_path, config, raw, error, message):
    file = _bad_config(tmp_path / "ckpt", config, raw)
    with pytest.raises(error, match=f"^{re.escape(str(file))}.*{message}") as info:
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    assert "\n" not in str(info.value)


def _weights_folder(path, hf_config=None):
    path.mkdir()
    (path / "config.json").write_text(json.dumps((hf_config or tiny_hf_config()).to_dict()))
    return path


@pytest.mark.parametrize("content, message", [
    ([1, 2], "holds a list, not a state dict"),
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ({"embeddings.word_embeddings.weight": 1}, "'embeddings.word_embeddings.weight' is not a tensor \\(got int\\)"),
], ids=["list", "tensor", "dict-of-ints"])
def test_bin_that_is_not_a_state_dict(tmp_path, content, message):
    folder = _weights_folder(tmp_path / "ckpt")
    torch.save(content, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=f"^{re.escape(str(folder / 'pytorch_model.bin'))}:? {message}"):
        fastbert.BertModel.from_pretrained(folder)


def test_empty_and_corrupt_bin(tmp_path):
    folder = _weights_folder(tmp_path / "ckpt")
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(OSError, match=f"^{re.escape(str(folder / 'pytorch_model.bin'))} is empty \\(0 bytes\\)$"):
        fastbert.BertModel.from_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(os.urandom(64))
    with pytest.raises(OSError, match="pytorch_model.bin could not be read as a PyTorch checkpoint") as info:
        fastbert.BertModel.from_pretrained(folder)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cut", [0.5, 0.999, 8 / 2**20], ids=["half", "last-bytes", "header"])
def test_truncated_safetensors(tmp_path, cut):
    hf = _hf_model()
    _write_checkpoint(tmp_path / "ckpt", dict(hf.state_dict()), hf.config)
    file = tmp_path / "ckpt" / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:max(1, int(len(data) * cut))])
    with pytest.raises(OSError, match=f"^{re.escape(str(file))} is not a valid safetensors file") as info:
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    assert "\n" not in str(info.value)


def test_integer_and_bool_weights_are_cast_like_transformers(tmp_path, seed):
    """transformers casts integer/bool checkpoint tensors to the model dtype; fastbert does the same."""
    import transformers

    hf = _hf_model()
    sd = dict(hf.state_dict())
    name = "encoder.layer.0.intermediate.dense.weight"
    sd[name] = (sd[name] * 50).round().to(torch.int16)
    sd["embeddings.LayerNorm.weight"] = torch.rand(64) > 0.2
    _write_checkpoint(tmp_path / "ckpt", sd, hf.config)
    ref = transformers.BertModel.from_pretrained(tmp_path / "ckpt", attn_implementation="eager").eval()
    model = fastbert.BertModel.from_pretrained(tmp_path / "ckpt", backend="torch")
    assert model.layers[0].ffn_up.weight.dtype == torch.float32
    assert torch.equal(model.layers[0].ffn_up.weight, sd[name].float())
    ids = torch.randint(0, 211, (2, 7))
    with torch.no_grad():
        r, o = ref(ids), model(ids)
    assert max_err(o[0], r[0]) <= parity_bound(r[0]), seed


def test_sharded_index_problems(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "ckpt", max_shard_size="40KB")
    index = tmp_path / "ckpt" / "model.safetensors.index.json"
    assert index.exists()
    assert len(fastbert.BertModel.from_pretrained(tmp_path / "ckpt").layers) == 2  # the good case loads

    content = json.loads(index.read_text())
    shard = tmp_path / "ckpt" / sorted(set(content["weight_map"].values()))[0]
    shard.unlink()
    shard.symlink_to(shard)  # a symlink loop: reported as such, not as "not found"
    with pytest.raises(OSError, match=f"^cannot read {re.escape(str(shard))}: Too many levels of symbolic links"):
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    shard.unlink()
    with pytest.raises(OSError, match=f"^{re.escape(str(shard))} does not exist"):
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")

    index.write_text(json.dumps({"metadata": content["metadata"]}))
    with pytest.raises(ValueError, match=f"^{re.escape(str(index))} has no 'weight_map' object"):
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    index.write_text(json.dumps({"weight_map": {"embeddings.word_embeddings.weight": 3}}))
    with pytest.raises(ValueError, match="weight_map\\['embeddings.word_embeddings.weight'\\] is 3"):
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")


def test_model_safetensors_symlink_loop(tmp_path):
    folder = _weights_folder(tmp_path / "ckpt")
    (folder / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(OSError, match="model.safetensors: Too many levels of symbolic links"):
        fastbert.BertModel.from_pretrained(folder)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_nonfinite_weights_refused_unless_allowed(tmp_path, value, fmt):
    hf = _hf_model()
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    name = "encoder.layer.1.output.dense.weight"
    rows = torch.randint(0, 64, (3,))
    sd[name][rows, torch.randint(0, 128, (3,))] = value
    bad = int((~torch.isfinite(sd[name])).sum())
    _write_checkpoint(tmp_path / "ckpt", sd, hf.config, fmt)
    file = tmp_path / "ckpt" / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin")
    with pytest.raises(ValueError, match=f"^{re.escape(str(file))}: '{name}' holds {bad} NaN/Inf value\\(s\\); "
                                         "pass allow_nonfinite=True"):
        fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    model = fastbert.BertModel.from_pretrained(tmp_path / "ckpt", allow_nonfinite=True)
    assert int((~torch.isfinite(model.layers[1].ffn_down.weight)).sum()) == bad


def test_inference_model_unless_requires_grad(tmp_path, seed):
    hf = _hf_model()
    _write_checkpoint(tmp_path / "ckpt", dict(hf.state_dict()), hf.config)
    model = fastbert.BertModel.from_pretrained(tmp_path / "ckpt")
    assert not any(p.requires_grad for p in model.parameters())
    out = model(torch.randint(0, 211, (2, 5)))  # grad mode on, yet nothing to differentiate
    assert not out.last_hidden_state.requires_grad
    trainable = fastbert.BertModel.from_pretrained(tmp_path / "ckpt", requires_grad=True)
    assert all(p.requires_grad for p in trainable.parameters())
    trainable(torch.randint(0, 211, (2, 5))).last_hidden_state.sum().backward()
    assert trainable.layers[0].qkv.weight.grad is not None
