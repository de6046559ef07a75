"""Model folders and real text for the sentence-embedding tests (imported as ``from sentence_folders import ...``).

Folders are built from the bundled all-MiniLM-L6-v2 in temporary directories: its weights are linked, not copied,
and its configs rewritten, so each folder costs a few JSON files.
"""
from __future__ import annotations

import json
import os
import random
import shutil

import fastbert

MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                "special_tokens_map.json")


def write_json(path, value) -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2)


def plain_minilm(folder) -> str:
    """A plain Hugging Face copy of all-MiniLM-L6-v2 in ``folder`` (no sentence-transformers files)."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    source = fastbert.default_model_path()
    for name in MINILM_FILES:
        src = os.path.join(source, name)
        if name == "model.safetensors":
            os.symlink(src, os.path.join(folder, name))
        else:
            shutil.copy(src, os.path.join(folder, name))
    return folder


def legacy_folder(folder, pooling: dict, *, max_seq_length: int | None = 256, dense: list[dict] | None = None,
                  normalize: bool = True, model_config: dict | None = None) -> str:
    """A folder in the layout older sentence-transformers versions wrote: ``sentence_transformers.models.*`` types,
    ``pooling_mode_*_tokens`` keys, Dense weights as ``pytorch_model.bin``. ``dense``: per Dense module, its config
    plus ``"weights"`` (a state dict)."""
    import torch

    folder = plain_minilm(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    write_json(os.path.join(folder, "1_Pooling", "config.json"), {"word_embedding_dimension": 384, **pooling})
    for d in dense or []:
        idx = len(modules)
        path = f"{idx}_Dense"
        config = {k: v for k, v in d.items() if k != "weights"}
        write_json(os.path.join(folder, path, "config.json"), config)
        torch.save(d["weights"], os.path.join(folder, path, "pytorch_model.bin"))
        modules.append({"idx": idx, "name": str(idx), "path": path, "type": "sentence_transformers.models.Dense"})
    if normalize:
        idx = len(modules)
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(folder, "modules.json"), modules)
    bert_config = {"do_lower_case": False}
    if max_seq_length is not None:
        bert_config["max_seq_length"] = max_seq_length
    write_json(os.path.join(folder, "sentence_bert_config.json"), bert_config)
    write_json(os.path.join(folder, "config_sentence_transformers.json"),
               model_config or {"__version__": {"sentence_transformers": "2.0.0"}})
    return folder


def st_saved_folder(folder, *, pooling_mode="mean", include_prompt=True, dense=(), normalize=True,
                    max_seq_length: int | None = None, prompts=None, default_prompt_name=None) -> str:
    """A folder written by the installed sentence-transformers (``SentenceTransformer.save``) around the bundled
    MiniLM. ``dense``: ``sentence_transformers`` Dense modules (random weights); ``max_seq_length`` is stored
    where sentence-transformers stores it (the tokenizer's ``model_max_length``)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(fastbert.default_model_path())
    if max_seq_length is not None:
        transformer.max_seq_length = max_seq_length
    modules = [transformer, Pooling(384, pooling_mode=pooling_mode, include_prompt=include_prompt), *dense]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", prompts=prompts, default_prompt_name=default_prompt_name)
    model.save(str(folder))
    return str(folder)


def real_texts(n_short: int, n_long: int, seed: int, min_long_chars: int = 1600) -> list[str]:
    """Real English prose (package READMEs and the model card, see ``benchmarks/corpus.py``), drawn with ``seed``:
    ``n_short`` paragraphs and ``n_long`` passages of consecutive paragraphs at least ``min_long_chars`` long
    (well over 256 tokens), shuffled together."""
    from benchmarks.corpus import corpus_files, paragraphs

    rng = random.Random(seed)
    files = corpus_files()
    per_file = []
    for file in files:
        with open(file, encoding="utf-8", errors="replace") as f:
            paras = paragraphs(f.read())
        if paras:
            per_file.append(paras)
    short = [p for paras in per_file for p in paras if len(p) < min_long_chars]
    long = []
    for paras in per_file:
        passage = ""
        for p in paras:
            passage = f"{passage} {p}".strip()
            if len(passage) >= min_long_chars:
                long.append(passage)
                passage = ""
    texts = rng.sample(short, n_short) + rng.sample(long, n_long)
    rng.shuffle(texts)
    return texts


def tiny_model_folder(folder, dense_out: int | None = None) -> str:
    """A sentence-transformers folder holding a random 2-layer BERT (hidden 32) with MiniLM's tokenizer: mean
    pooling, (a random Dense layer to ``dense_out`` values,) Normalize, max_seq_length 64. Encodes thousands of
    texts a second on CPU."""
    import torch
    from transformers import BertConfig, BertModel

    folder = str(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    source = fastbert.default_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(source, name), os.path.join(folder, name))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if dense_out is not None:
        from safetensors.torch import save_file

        write_json(os.path.join(folder, "2_Dense", "config.json"), {"in_features": 32, "out_features": dense_out})
        save_file({"linear.weight": torch.randn(dense_out, 32), "linear.bias": torch.randn(dense_out)},
                  os.path.join(folder, "2_Dense", "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(folder, "modules.json"), modules)
    write_json(os.path.join(folder, "1_Pooling", "config.json"), {"embedding_dimension": 32, "pooling_mode": "mean"})
    write_json(os.path.join(folder, "sentence_bert_config.json"), {"max_seq_length": 64, "do_lower_case": False})
    return folder
