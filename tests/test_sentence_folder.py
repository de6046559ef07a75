"""Reading model folders: every layout sentence-transformers wrote is understood, and every setting fastbert cannot
reproduce is refused with a ValueError naming the file and the setting (never a silent fallback)."""
import json
import os

import numpy as np
import pytest
import torch
from sentence_folders import legacy_folder, plain_minilm, write_json

import fastbert
from fastbert.embeddings.folder import read_folder
from fastbert.embeddings.folder import Dense, Normalize, Pooling


@pytest.fixture
def folder(tmp_path):
    """A legacy-layout MiniLM folder to break in one place per test."""
    return legacy_folder(tmp_path / "m", {"pooling_mode_mean_tokens": True})


def edit_json(path, **changes):
    with open(path, encoding="utf-8") as f:
        value = json.load(f)
    value.update(changes)
    write_json(path, value)
    return path


def test_bundled_folder_is_read_like_sentence_transformers():
    spec = read_folder(fastbert.default_model_path())
    assert spec.sentence_transformers and spec.pooling == Pooling(("mean",), True)
    assert spec.head == (Normalize(),) and spec.max_seq_length == 256 and not spec.do_lower_case
    assert spec.prompts == {} and spec.default_prompt_name is None


def test_legacy_pooling_keys(folder):
    config = os.path.join(folder, "1_Pooling", "config.json")
    write_json(config, {"word_embedding_dimension": 384, "pooling_mode_cls_token": False})
    assert read_folder(folder).pooling.modes == ("mean",)  # no mode set: sentence-transformers' default
    write_json(config, {"word_embedding_dimension": 384, "pooling_mode_lasttoken": True,
                        "pooling_mode_max_tokens": True})
    assert read_folder(folder).pooling.modes == ("max", "lasttoken")
    write_json(config, {"pooling_mode": ["weightedmean"], "pooling_mode_cls_token": True, "include_prompt": False})
    assert read_folder(folder).pooling == Pooling(("weightedmean",), False)


def test_plain_folder_keeps_cls_pooling(tmp_path, hf_minilm, hf_tokenizer):
    """Without sentence-transformers files: CLS pooling, no normalisation, truncation at the positions (512)."""
    folder = plain_minilm(tmp_path / "plain")
    encoder = fastbert.SentenceEncoder(folder, device="cpu")
    assert encoder.pooling.modes == ("cls",) and encoder.head_modules == () and encoder.max_seq_length == 512
    texts = ["A plain checkpoint.", "word " * 600]
    got = encoder.encode(texts)
    enc = hf_tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        expected = hf_minilm(**enc).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5 * max(1, np.abs(expected).max()), rtol=0)
    assert encoder.last_truncated == 1


def test_dense_config_defaults(folder):
    dense = {"in_features": 384, "out_features": 8, "weights": {"linear.weight": torch.zeros(8, 384),
                                                                "linear.bias": torch.zeros(8)}}
    folder = legacy_folder(os.path.dirname(folder) + "/d", {"pooling_mode_mean_tokens": True}, dense=[dense])
    (module, normalize) = read_folder(folder).head
    assert module == Dense(os.path.join(folder, "2_Dense"), 384, 8, True, "tanh", False) and normalize == Normalize()


REFUSED = [
    # (file to edit relative to the folder, changes, words the message must contain)
    ("1_Pooling/config.json", {"pooling_mode": "median"}, "pooling_mode 'median' is not one of"),
    ("1_Pooling/config.json", {"pooling_mode_foo_tokens": True},
     "unknown Pooling setting(s) ['pooling_mode_foo_tokens']"),
    ("1_Pooling/config.json", {"include_prompt": "no"}, "include_prompt must be true or false"),
    ("1_Pooling/config.json", {"pooling_mode": []}, "pooling_mode is an empty list"),
    ("sentence_bert_config.json", {"max_seq_length": -5}, "max_seq_length must be a positive integer, got -5"),
    ("sentence_bert_config.json", {"max_seq_length": "256"}, "max_seq_length must be a positive integer"),
    ("sentence_bert_config.json", {"do_lower_case": "yes"}, "do_lower_case must be true or false"),
    ("sentence_bert_config.json", {"strip_html": True}, "unknown Transformer setting(s) ['strip_html']"),
    ("sentence_bert_config.json", {"transformer_task": "fill-mask"}, "transformer_task='fill-mask'"),
    ("sentence_bert_config.json", {"module_output_name": "sentence_embedding"}, "module_output_name="),
    ("sentence_bert_config.json", {"modality_config": {"text": {"method": "get_text_features",
                                                                "method_output_name": "pooler_output"}}},
     "modality_config="),
    ("sentence_bert_config.json", {"processing_kwargs": {"text": {"max_length": 12}}}, "processing_kwargs="),
    ("sentence_bert_config.json", {"model_args": {"subfolder": "other"}}, "model_kwargs sets ['subfolder']"),
    ("sentence_bert_config.json", {"tokenizer_args": {"truncation_side": "left"}},
     "processor_kwargs sets ['truncation_side']"),
    ("sentence_bert_config.json", {"config_kwargs": {"hidden_act": "relu"}}, "config_kwargs sets ['hidden_act']"),
    ("sentence_bert_config.json", {"tokenizer_name_or_path": "bert-base-cased"}, "tokenizer_name_or_path="),
    ("tokenizer_config.json", {"truncation_side": "left"}, "truncation_side='left'; fastbert reproduces only 'right'"),
    ("tokenizer_config.json", {"padding_side": "left"}, "padding_side='left'"),
    ("config_sentence_transformers.json", {"model_type": "SparseEncoder"}, "model_type='SparseEncoder'"),
    ("config_sentence_transformers.json", {"prompts": {"query": "q: "}, "default_prompt_name": "passage"},
     "default_prompt_name 'passage' is not one of the prompts ['query']"),
    ("config_sentence_transformers.json", {"prompts": {"query": 3}}, "prompts must map names to strings"),
]


@pytest.mark.parametrize("file, changes, message", REFUSED, ids=[m for _, _, m in REFUSED])
def test_unreproducible_settings_are_refused(folder, file, changes, message):
    path = edit_json(os.path.join(folder, file), **changes)
    with pytest.raises(ValueError) as info:
        read_folder(folder)
    assert message in str(info.value) and path in str(info.value)


@pytest.mark.parametrize("modules, message", [
    ([("sentence_transformers.models.Transformer", ""), ("sentence_transformers.models.LayerNorm", "1_LN")],
     "type 'sentence_transformers.models.LayerNorm', which fastbert cannot reproduce"),
    ([("my_package.modules.Transformer", ""), ("sentence_transformers.models.Pooling", "1_Pooling")],
     "type 'my_package.modules.Transformer'"),
    ([("sentence_transformers.models.Pooling", "1_Pooling"), ("sentence_transformers.models.Transformer", "")],
     "modules are ['Pooling', 'Transformer']"),
    ([("sentence_transformers.models.Transformer", "")], "modules are ['Transformer']"),
    ([("sentence_transformers.models.Transformer", ""), ("sentence_transformers.models.Dropout", "x"),
      ("sentence_transformers.models.Pooling", "1_Pooling")], "module 1 (Dropout) comes before Pooling"),
    ([("sentence_transformers.models.Transformer", ""), ("sentence_transformers.models.Pooling", "../1_Pooling")],
     "path '../1_Pooling' leaves the model folder"),
])
def test_unreproducible_module_lists_are_refused(folder, modules, message):
    write_json(os.path.join(folder, "modules.json"),
               [{"idx": i, "name": str(i), "path": p, "type": t} for i, (t, p) in enumerate(modules)])
    with pytest.raises(ValueError, match="modules.json") as info:
        read_folder(folder)
    assert message in str(info.value)


def test_dropout_is_identity(folder):
    modules = json.load(open(os.path.join(folder, "modules.json")))
    modules.insert(2, {"idx": 2, "name": "d", "path": "2_Dropout", "type": "sentence_transformers.models.Dropout"})
    write_json(os.path.join(folder, "modules.json"), modules)
    assert read_folder(folder).head == (Normalize(),)


@pytest.mark.parametrize("changes, message", [
    ({"activation_function": "torch.nn.modules.activation.Softmax"}, "activation_function 'torch.nn.modules"),
    ({"activation_function": "my_package.FancyActivation"}, "activation_function 'my_package.FancyActivation'"),
    ({"module_input_name": "token_embeddings"}, "Dense module_input_name='token_embeddings'"),
    ({"dropout": 0.1}, "unknown Dense setting(s) ['dropout']"),
    ({"out_features": 0}, "out_features must be a positive integer"),
    ({"bias": 1}, "bias must be true or false"),
])
def test_dense_settings_refused(tmp_path, changes, message):
    dense = {"in_features": 384, "out_features": 8, **changes,
             "weights": {"linear.weight": torch.zeros(8, 384), "linear.bias": torch.zeros(8)}}
    folder = legacy_folder(tmp_path / "d", {"pooling_mode_mean_tokens": True}, dense=[dense])
    with pytest.raises(ValueError, match="2_Dense") as info:
        read_folder(folder)
    assert message in str(info.value)


def test_bad_files(folder, tmp_path):
    modules = os.path.join(folder, "modules.json")
    with open(modules, "w") as f:
        f.write("[{")
    with pytest.raises(ValueError, match=f"{modules} is not valid JSON"):
        read_folder(folder)
    with open(modules, "wb") as f:
        f.write(b'["\xff"]')
    with pytest.raises(ValueError, match=f"{modules} is not UTF-8 text"):
        read_folder(folder)
    write_json(modules, {"0": "Transformer"})
    with pytest.raises(ValueError, match="holds a JSON dict, expected a JSON list"):
        read_folder(folder)
    os.remove(modules)
    os.mkdir(modules)
    with pytest.raises(OSError, match="cannot read"):
        read_folder(folder)
    with pytest.raises(OSError, match="does not exist; fastbert reads only local model folders"):
        read_folder(tmp_path / "nowhere")


def test_encoder_checks_before_reading_weights(folder):
    """Problems visible in the configs are reported before the weights are read (here there are none to read)."""
    os.remove(os.path.join(folder, "model.safetensors"))
    edit_json(os.path.join(folder, "sentence_bert_config.json"), max_seq_length=1024)
    with pytest.raises(ValueError, match="max_seq_length 1024 exceeds the model's max_position_embeddings 512"):
        fastbert.SentenceEncoder(folder, device="cpu")
    edit_json(os.path.join(folder, "sentence_bert_config.json"), max_seq_length=128)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        fastbert.SentenceEncoder(folder, device="gpu")
    with pytest.raises(OSError, match="no model.safetensors or pytorch_model.bin"):
        fastbert.SentenceEncoder(folder, device="cpu")


def test_dense_weights_checked(tmp_path):
    dense = {"in_features": 384, "out_features": 8, "weights": {"linear.weight": torch.zeros(8, 384)}}
    folder = legacy_folder(tmp_path / "d", {"pooling_mode_mean_tokens": True}, dense=[dense])
    with pytest.raises(ValueError, match=r"weights have keys \['linear.weight'\], its config needs"):
        fastbert.SentenceEncoder(folder, device="cpu")
    dense["weights"]["linear.bias"] = torch.zeros(9)
    folder = legacy_folder(tmp_path / "e", {"pooling_mode_mean_tokens": True}, dense=[dense])
    with pytest.raises(ValueError, match=r"linear.bias must be a float tensor of shape \[8\]"):
        fastbert.SentenceEncoder(folder, device="cpu")
    dense["in_features"] = 768
    folder = legacy_folder(tmp_path / "f", {"pooling_mode_mean_tokens": True}, dense=[dense])
    with pytest.raises(ValueError, match="takes 768 inputs but the embedding before it has 384 values"):
        fastbert.SentenceEncoder(folder, device="cpu")
