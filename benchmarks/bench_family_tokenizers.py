"""Speed of ``fastbert.AutoTokenizer`` on the ``tokenizers`` families (RoBERTa, XLM-R, ALBERT) vs transformers.

    python -m benchmarks.bench_family_tokenizers [--repeats 15] [--batch 1024]

Both tokenizers run the same Rust pipeline, so this measures the Python around it. Tokenizers are trained here
(byte-level BPE, Unigram with Metaspace; 8,000 pieces) on English prose (benchmarks/corpus.py) plus multilingual
lines, wrapped as transformers' fast tokenizer of the family and saved; both libraries load the same folder. Calls:
a batch with ``padding=True, truncation=True, max_length=128, return_tensors="np"``, the same call returning lists,
and a batch of pairs. The two tokenizers alternate within every repeat (one process), so machine noise hits both
alike; the report is the median ratio fastbert / transformers of wall time (< 1: fastbert faster). Prints a table.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

MULTILINGUAL = ["東京は日本の首都です。北京欢迎你！", "Привет, мир! Как дела?", "Über naïve café owners in São Paulo.",
                "emoji 😀👍🏽 family 👨‍👩‍👧", "Ελληνικά κείμενα εδώ.", "مرحبا بالعالم"]
CALLS = {
    "batch, np, padded": lambda tok, texts: tok(texts, padding=True, truncation=True, max_length=128,
                                                return_tensors="np"),
    "batch, lists": lambda tok, texts: tok(texts, truncation=True, max_length=128),
    "pairs, np, padded": lambda tok, texts: tok(texts, texts[::-1], padding=True, truncation=True, max_length=128,
                                                return_tensors="np"),
}


def _texts(n: int) -> list[str]:
    """``n`` texts: English paragraphs, every fourth followed by a multilingual line."""
    from benchmarks.corpus import first_paragraphs

    texts = []
    for i, text in enumerate(first_paragraphs(n)):
        texts += [text, MULTILINGUAL[i % len(MULTILINGUAL)]] if i % 4 == 0 else [text]
    return texts[:n]


def _folders(texts: list[str], root: str) -> dict[str, str]:
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=[
        "<s>", "<pad>", "</s>", "<unk>", "<mask>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))

    def unigram(specials, normalizer):
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizer
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=8000, special_tokens=specials,
                                                                unk_token="<unk>"))
        return tok

    xlmr = unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], None)
    albert = unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], normalizers.Lowercase())
    albert.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", albert.token_to_id("[CLS]")), ("[SEP]", albert.token_to_id("[SEP]"))])
    wrapped = {"roberta": transformers.RobertaTokenizerFast(tokenizer_object=bpe),
               "xlm-roberta": transformers.XLMRobertaTokenizerFast(tokenizer_object=xlmr),
               "albert": transformers.AlbertTokenizerFast(tokenizer_object=albert)}
    folders = {}
    for family, tok in wrapped.items():
        folders[family] = f"{root}/{family}"
        tok.save_pretrained(folders[family])
    return folders


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args(argv)

    import transformers

    import fastbert

    texts = _texts(args.batch)
    with tempfile.TemporaryDirectory() as root:
        folders = _folders(texts, root)
        print(f"{len(texts)} texts, {sum(map(len, texts)) / 1e6:.2f} M characters; {args.repeats} interleaved repeats; "
              "ratio = fastbert / transformers wall time (median)")
        print("| family | call | ratio | fastbert ms | transformers ms |\n|---|---|---|---|---|")
        for family, folder in folders.items():
            ours = fastbert.AutoTokenizer.from_pretrained(folder)
            ref = transformers.AutoTokenizer.from_pretrained(folder)
            for name, call in CALLS.items():
                ids, expected = call(ours, texts)["input_ids"], call(ref, texts)["input_ids"]
                assert all(list(a) == list(b) for a, b in zip(ids, expected)) and len(ids) == len(expected)
                times: dict[str, list[float]] = {"fastbert": [], "transformers": []}
                for _ in range(args.repeats):
                    for label, tok in (("fastbert", ours), ("transformers", ref)):
                        start = time.perf_counter()
                        call(tok, texts)
                        times[label].append(time.perf_counter() - start)
                ratios = [a / b for a, b in zip(times["fastbert"], times["transformers"])]
                print(f"| {family} | {name} | {statistics.median(ratios):.2f} | "
                      f"{1e3 * statistics.median(times['fastbert']):.1f} | "
                      f"{1e3 * statistics.median(times['transformers']):.1f} |")


if __name__ == "__main__":
    main()
