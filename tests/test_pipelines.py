"""transformers pipelines on an optimized model give the answers they gave before ``fastbert.optimize``.

Every family (the folders of :mod:`test_families_tokenize_encode`, plus BERT, MPNet and DeBERTa-v3 built here the same
way: a tiny tokenizer and a random-weight model) runs ``text-classification``, ``token-classification``, ``fill-mask`` and ``feature-extraction`` through
transformers' own ``pipeline`` on the same texts, one at a time and in padded batches of 4, before and after
``optimize`` (float32: scores within 1e-5, the same labels, tokens, words and offsets).

XLNet (padding on the left) runs with ``use_mems_eval=False``: with its default memories, transformers' pipelines fail
to unbatch the outputs of batches of 4 before fastbert is involved; fill-mask runs on ``XLNetLMHeadModel`` (XLNet has
no ``AutoModelForMaskedLM`` class).

One documented difference: ``feature-extraction`` in batches returns every item at the batch's padded length, and
at the padding positions an optimized model gives zeros (padding-free) where transformers gives what its attention
computes for a padding query; both carry no meaning, and the real positions are compared.
"""
import numpy as np
import pytest
import torch
import transformers

import fastbert

from test_families_tokenize_encode import FAMILIES, SIZES, _wordpiece, corpus, family_folders  # noqa: F401
from test_tokenizer_deberta import _hf_tokenizer as deberta_tokenizer
from test_tokenizer_xlnet import _hf_tokenizer as xlnet_tokenizer

MORE = ["bert", "mpnet", "deberta-v2", "xlnet"]

TASKS = {
    "text-classification": transformers.AutoModelForSequenceClassification,
    "token-classification": transformers.AutoModelForTokenClassification,
    "fill-mask": transformers.AutoModelForMaskedLM,
    "feature-extraction": transformers.AutoModel,
}
TEXTS = ["A short one.", "The river bank was steep and the boats were tied along its muddy edge for the night.",
         "Numbers 3.14 and 2024, café naïve", "Hi"]


def _answers(pipe, task, texts, batch_size, lengths=None):
    out = pipe(texts, batch_size=batch_size, **({"top_k": 5} if task == "fill-mask" else {}))
    if lengths is not None:  # feature-extraction: each item's real positions ([1, tokens, H] per item)
        left = pipe.tokenizer.padding_side == "left"  # XLNet: the real positions are the last ones
        out = [np.asarray(item)[:, -n:] if left else np.asarray(item)[:, :n] for item, n in zip(out, lengths)]
    return out


def _same(got, ref, path="answer"):
    """Nested pipeline outputs equal: strings/ints exactly, floats and arrays within 1e-5."""
    if isinstance(ref, dict):
        assert got.keys() == ref.keys(), path
        for key in ref:
            _same(got[key], ref[key], f"{path}.{key}")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), path
        for i, (g, r) in enumerate(zip(got, ref)):
            _same(g, r, f"{path}[{i}]")
    elif isinstance(ref, (float, np.floating, np.ndarray, torch.Tensor)):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64),
                                   atol=1e-5, rtol=0, err_msg=path)
    else:
        assert got == ref, path


@pytest.fixture(scope="module")
def more_folders(corpus, minilm_path, tmp_path_factory):  # noqa: F811
    """BERT (WordPiece), MPNet (WordPiece with its specials) and DeBERTa-v3 (Unigram) folders."""
    from fastbert.tokenizers.files import read_vocab_txt

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pipelines")
    bert_tok = transformers.BertTokenizerFast(tokenizer_object=_wordpiece(corpus["train"], True))
    vocab = read_vocab_txt(f"{minilm_path}/vocab.txt")
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *sorted(vocab, key=vocab.get)[:2000], "<mask>"]
    mpnet_tok = transformers.MPNetTokenizer(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=512)
    deberta_tok = deberta_tokenizer(corpus["train"])
    xlnet_tok = xlnet_tokenizer(corpus["train"])
    configs = {
        "bert": (bert_tok, transformers.BertConfig(vocab_size=len(bert_tok), max_position_embeddings=64, **SIZES)),
        "mpnet": (mpnet_tok, transformers.MPNetConfig(vocab_size=len(mpnet_tok), max_position_embeddings=130,
                                                      **SIZES)),
        "deberta-v2": (deberta_tok, transformers.DebertaV2Config(
            vocab_size=len(deberta_tok), max_position_embeddings=512, relative_attention=True, position_buckets=32,
            max_relative_positions=512, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
            position_biased_input=False, type_vocab_size=0, **SIZES)),
        "xlnet": (xlnet_tok, transformers.XLNetConfig(vocab_size=len(xlnet_tok), d_model=96, n_head=6, d_inner=160,
                                                      n_layer=2, dropout=0.0, initializer_range=0.1)),
    }
    folders = {}
    for family, (tokenizer, config) in configs.items():
        folders[family] = str(root / family)
        tokenizer.save_pretrained(folders[family])
        transformers.AutoModel.from_config(config).save_pretrained(folders[family])
    return folders


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("family", FAMILIES + MORE)
def test_pipeline_answers_unchanged_by_optimize(family, task, family_folders, more_folders):  # noqa: F811
    folder = (family_folders if family in family_folders else more_folders)[family]
    torch.manual_seed(0)
    # XLNet has no masked-LM class for AutoModelForMaskedLM; the fill-mask pipeline runs its LM head's plain forward.
    # Its memories (returned by default in eval) break transformers' own unbatching of pipeline outputs
    # (pt_utils: IndexError) for batches of 4 with or without fastbert, so the pipelines run it with use_mems_eval off.
    auto = transformers.XLNetLMHeadModel if family == "xlnet" and task == "fill-mask" else TASKS[task]
    options = {"num_labels": 3} if "classification" in task else {}
    model = auto.from_pretrained(folder, **options, **({"use_mems_eval": False} if family == "xlnet" else {})).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    texts = TEXTS if task != "fill-mask" else [t.replace(t.split()[-1], tokenizer.mask_token, 1) for t in TEXTS[:3]]
    pipe = transformers.pipeline(task, model=model, tokenizer=tokenizer, device="cpu")
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts] if task == "feature-extraction" else None
    before = {b: _answers(pipe, task, texts, b, lengths) for b in (1, 4)}
    fastbert.optimize(model)
    assert fastbert.is_optimized(model)
    for b in (1, 4):
        _same(_answers(pipe, task, texts, b, lengths), before[b], f"{family} {task} batch {b}")
