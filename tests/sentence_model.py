"""A tiny random-weight sentence-transformers model folder for the parallel and Ray tests (fast to load anywhere)."""
import json
import os
import shutil

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "sentence_bert_config.json")


def save_tiny_sentence_model(path, seed: int, hidden: int = 32) -> str:
    """Random BERT (2 layers, ``hidden`` wide) + the bundled MiniLM tokenizer + mean pooling and normalisation,
    saved to ``path`` -> ``path``."""
    import torch
    from transformers import BertConfig, BertModel

    import fastbert

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    minilm = fastbert.default_model_path()
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm, name), os.path.join(path, name))
    shutil.copy(os.path.join(minilm, "modules.json"), os.path.join(path, "modules.json"))
    os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}, f)
    return str(path)


WORDS = ("the", "encoder", "maps", "text", "to", "vectors", "naïve", "café", "São", "Paulo", "3.14159", "?", "!",
         "antidisestablishmentarianism", "東京", "😀", "fox", "jumps", "über", "lazy", "dog", "a", "of", "in")


def random_texts(rng, n: int, max_words: int = 300) -> list[str]:
    """``n`` texts of random words, 0 to ``max_words`` long (some past 512 tokens), duplicates and "" included."""
    lengths = rng.integers(0, max_words + 1, size=n)
    lengths[rng.random(n) < 0.7] //= 10  # mostly short, like real corpora
    texts = [" ".join(rng.choice(WORDS, size=k)) for k in lengths]
    if n >= 3:
        texts[rng.integers(n)] = ""
        texts[rng.integers(n)] = texts[rng.integers(n)]
    return texts
