"""Reduced precision: int8 weight/activation quantization, fastbert.encoder.precision, and each mode's fidelity bound on real
text against sentence-transformers fp32 (bfloat16, the mixed mode: min cosine >= 0.9999, mean >= 0.99997; int8: >= 0.98,
>= 0.995)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastbert
from fastbert.encoder import ops
from fastbert.encoder.backends.int8 import int8_linear, quantize_rows, quantize_weight
from fastbert.encoder.precision import Int8Linear, quantization_mode, quantize

from cpu_texts import encode_fastbert, real_text_reference


@pytest.mark.parametrize("shape", [(1, 7), (129, 384), (7, 1)])
def test_quantize_weight_per_channel(shape, seed):
    w = torch.randn(shape) * torch.rand(shape[0], 1) * 3
    q = quantize_weight(w)
    assert q.qweight.dtype == torch.int8 and q.qweight.shape == (shape[1], shape[0]) and q.shape == w.shape
    assert q.qweight.abs().max() <= 127
    # each output channel reconstructs to within half a step of its own scale
    err = (q.qweight.t().float() * q.scale[:, None] - w).abs()
    assert (err <= q.scale[:, None] / 2 + 1e-7).all()


def test_quantize_rows_zero_row_is_finite():
    x = torch.randn(5, 33)
    x[2] = 0
    xq, s = quantize_rows(x)
    assert torch.isfinite(s).all() and (xq[2] == 0).all()
    assert ((xq.float() * s - x).abs() <= s / 2 + 1e-7).all()


@pytest.mark.parametrize("rows", [1, 7, 129])
def test_int8_linear_error_is_the_rounding_error(rows, seed):
    k, m = 384, 160
    x, w, b = torch.randn(rows, k), torch.randn(m, k) / 20, torch.randn(m)
    out = int8_linear(x, quantize_weight(w), b)
    ref = F.linear(x.double(), w.double(), b.double())
    # |x w - x_q w_q| <= sum_k (|x||dw| + |dx||w| + |dx||dw|), with |dx| <= s_x / 2, |dw| <= s_w / 2
    s_x = x.abs().amax(1, keepdim=True).double() / 127
    s_w = w.abs().amax(1).double() / 127
    bound = (x.abs().double() @ (s_w[:, None] / 2).expand(m, k).T + (s_x / 2) * w.abs().double().sum(1)
             + (s_x / 2) * (s_w / 2) * k)
    assert ((out.double() - ref).abs() <= bound + 1e-5).all()


def test_quantize_replaces_the_encoder_linears(minilm_path):
    model = quantize(fastbert.BertModel.from_pretrained(minilm_path), "int8")
    assert quantization_mode(model) == "int8"
    for layer in model.layers:
        assert all(isinstance(getattr(layer, n), Int8Linear) for n in ("qkv", "attn_out", "ffn_up", "ffn_down"))
    assert isinstance(model.pooler, torch.nn.Linear)
    assert not any(p.requires_grad for p in model.parameters())
    ids = torch.tensor([[101, 7592, 2088, 102, 0, 0]])
    mask = (ids != 0).long()
    out = model(ids, mask)  # grad mode on: the model is inference-only, no error
    assert torch.isfinite(out.last_hidden_state).all() and torch.isfinite(out.pooler_output).all()
    with pytest.raises(ValueError, match="already quantized"):
        quantize(model, "bfloat16")
    model.backend = "triton"
    with pytest.raises(ValueError, match="torch backend"):
        ops.linear(torch.randn(2, 384), model.layers[0].qkv.weight, None, backend="triton")


def test_quantize_rejects_bad_arguments(minilm_path):
    with pytest.raises(TypeError, match="fastbert.BertModel"):
        quantize(torch.nn.Linear(2, 2), "int8")
    with pytest.raises(ValueError, match="unknown quantization mode"):
        quantize(fastbert.BertModel.from_pretrained(minilm_path), "int4")


def test_auto_mode_follows_the_cpu(minilm_path, monkeypatch):
    import fastbert.encoder.precision

    monkeypatch.setattr(fastbert.encoder.backends.cpu_features, "has_amx_bf16", lambda: False)
    model = quantize(fastbert.BertModel.from_pretrained(minilm_path), "auto")
    assert quantization_mode(model) is None and model.embeddings.word.weight.dtype == torch.float32
    monkeypatch.setattr(fastbert.encoder.backends.cpu_features, "has_amx_bf16", lambda: True)
    assert quantization_mode(quantize(fastbert.BertModel.from_pretrained(minilm_path), "auto")) == "bfloat16"


@pytest.mark.parametrize("mode, min_bound, mean_bound", [("bfloat16", 0.9999, 0.99997), ("int8", 0.98, 0.995)])
def test_fidelity_on_real_text(minilm_path, mode, min_bound, mean_bound):
    texts, ref = real_text_reference()
    out = encode_fastbert(minilm_path, texts, mode=mode)
    cos = (out.astype(np.float64) * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= min_bound, f"{mode}: min cosine {cos.min():.5f} at text {int(cos.argmin())}"
    assert cos.mean() >= mean_bound, f"{mode}: mean cosine {cos.mean():.6f}"


def test_sentence_encoder_and_cli_take_the_mode(minilm_path):
    from fastbert.cli import build_parser
    from fastbert.embeddings.sentence_encoder import SentenceEncoder

    with pytest.raises(ValueError, match="unknown quantize mode"):
        SentenceEncoder(minilm_path, device="cpu", quantize="int4")
    encoder = SentenceEncoder(minilm_path, device="cpu", quantize="bfloat16")
    assert encoder.dtype == torch.float32 and quantization_mode(encoder.model) == "bfloat16"
    assert build_parser().parse_args(["encode", "--quantize", "int8", "x"]).quantize == "int8"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["encode", "--quantize", "int4", "x"])


def test_bfloat16_mode_keeps_the_residual_stream_in_float32(minilm_path):
    """The mixed mode: bf16 linears, float32 embeddings, LayerNorms, pooler and hidden states; closer to float32
    than casting the whole model (on these real texts the mean cosine of a whole-bf16 model, 0.99996, misses
    the mode's bound)."""
    model = quantize(fastbert.BertModel.from_pretrained(minilm_path), "bfloat16")
    for layer in model.layers:
        assert all(getattr(layer, n).weight.dtype == torch.bfloat16 for n in ("qkv", "attn_out", "ffn_up", "ffn_down"))
        assert layer.attn_norm.weight.dtype == layer.ffn_norm.weight.dtype == torch.float32
    assert model.embeddings.word.weight.dtype == model.pooler.weight.dtype == torch.float32
    ref = fastbert.BertModel.from_pretrained(minilm_path)
    whole = fastbert.BertModel.from_pretrained(minilm_path, dtype=torch.bfloat16)
    ids = torch.randint(1000, 20000, (3, 41))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    with torch.inference_mode():
        out = model(ids, mask).last_hidden_state
        assert out.dtype == torch.float32
        exp = ref(ids, mask).last_hidden_state
        low = whole(ids, mask).last_hidden_state.float()
    real = mask.bool()
    err, err_whole = (out - exp)[real].abs().max(), (low - exp)[real].abs().max()
    assert torch.isfinite(out[real]).all() and err < err_whole, (err, err_whole)
