"""Checkpoint loading: remap_state_dict is pure, the load is strict and names what is wrong."""
import json

import pytest
import torch
from utils import max_err, parity_bound, tiny_hf_config

import fastbert
from fastbert.loading import remap_state_dict


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
