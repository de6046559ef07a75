"""The ``fastbert`` command line: ``fastbert encode`` turns texts into sentence embeddings.

    fastbert encode "first text" "second text"            # JSON lines on stdout
    fastbert encode -i texts.txt -o embeddings.npy        # one text per line, progress bar, float32 [N, H]
    cat texts.txt | fastbert encode -o embeddings.jsonl

Texts are tokenized by fastbert's C++ tokenizer, sorted by length into batches (little padding), encoded, pooled,
and written back in input order. Pooling and normalisation default to what the model directory's
sentence-transformers files say (mean pooling + L2 normalisation for the bundled all-MiniLM-L6-v2), else CLS.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Sequence

import numpy as np
import torch


def _read_texts(args) -> list[str]:
    if args.input is not None:
        if args.texts:
            raise SystemExit("fastbert encode: give texts as arguments or --input, not both")
        if args.input == "-":
            return [line.rstrip("\r\n") for line in sys.stdin]
        try:
            with open(args.input, encoding="utf-8") as f:
                return [line.rstrip("\r\n") for line in f]
        except OSError as e:
            raise SystemExit(f"fastbert encode: cannot read {args.input!r}: {e.strerror}") from None
    if args.texts:
        return list(args.texts)
    if not sys.stdin.isatty():
        return [line.rstrip("\r\n") for line in sys.stdin]
    raise SystemExit("fastbert encode: no input; pass texts as arguments, --input FILE, or pipe them on stdin")


def sentence_transformers_defaults(model_dir: str) -> tuple[str, bool]:
    """(pooling, normalize) from a sentence-transformers model folder; ("cls", False) when it has none."""
    pooling, normalize = "cls", False
    modules = os.path.join(model_dir, "modules.json")
    if os.path.isfile(modules):
        with open(modules, encoding="utf-8") as f:
            entries = json.load(f)
        for entry in entries:
            kind = entry.get("type", "")
            if kind.endswith("Normalize"):
                normalize = True
            if kind.endswith("Pooling"):
                config = os.path.join(model_dir, entry.get("path", ""), "config.json")
                if os.path.isfile(config):
                    with open(config, encoding="utf-8") as f:
                        pool = json.load(f)
                    if pool.get("pooling_mode_mean_tokens"):
                        pooling = "mean"
    return pooling, normalize


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """[B, S, H] hidden states -> [B, H]: the first token ("cls") or the mean over real tokens ("mean")."""
    if how == "cls":
        return hidden[:, 0]
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, S, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterable[list[int]]:
    """Indices sorted by length (longest first), cut into batches: each batch pads to a similar length."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def encode_texts(
    texts: Sequence[str],
    model,
    tokenizer,
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    pooling: str = "cls",
    normalize: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Embed ``texts`` -> float32 array ``[len(texts), hidden]`` in input order."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    hidden = model.config.hidden_size
    out = np.empty((len(texts), hidden), dtype=np.float32)
    if not texts:
        return out
    max_length = max_length or model.config.max_position_embeddings
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    device = next(model.parameters()).device
    batches = list(length_batches(lengths, batch_size))
    for batch in tqdm(batches, desc="encoding", unit="batch", disable=not progress):
        seqlen = max(lengths[i] for i in batch)
        ids = np.full((len(batch), seqlen), tokenizer.pad_token_id, dtype=np.int64)
        types = np.zeros((len(batch), seqlen), dtype=np.int64)
        mask = np.zeros((len(batch), seqlen), dtype=np.int64)
        for row, i in enumerate(batch):
            n = lengths[i]
            ids[row, :n] = encoded["input_ids"][i]
            types[row, :n] = encoded["token_type_ids"][i]
            mask[row, :n] = 1
        ids_t, types_t, mask_t = (torch.from_numpy(a).to(device) for a in (ids, types, mask))
        with torch.inference_mode():
            states = model(ids_t, mask_t, types_t).last_hidden_state
            emb = pool(states, mask_t, pooling).float()
            if normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
        out[batch] = emb.cpu().numpy()
    return out


def _write(path: str | None, texts: Sequence[str], embeddings: np.ndarray) -> None:
    if path is not None and path.endswith(".npy"):
        np.save(path, embeddings)
        return
    stream = sys.stdout if path in (None, "-") else open(path, "w", encoding="utf-8")
    try:
        for text, emb in zip(texts, embeddings):
            stream.write(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in emb]}) + "\n")
    finally:
        if stream is not sys.stdout:
            stream.close()


def encode_main(args) -> int:
    import fastbert
    from fastbert.tokenizer import BertTokenizer

    texts = _read_texts(args)
    model_dir = args.model or fastbert.default_model_path()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float16" if torch.device(device).type == "cuda" else "float32"
    st_pooling, st_normalize = sentence_transformers_defaults(model_dir)
    pooling = args.pooling or st_pooling
    normalize = st_normalize if args.normalize is None else args.normalize

    tokenizer = BertTokenizer.from_pretrained(model_dir)
    model = fastbert.BertModel.from_pretrained(model_dir, dtype=dtype, device=device, add_pooling_layer=False)
    embeddings = encode_texts(
        texts, model, tokenizer, batch_size=args.batch_size, max_length=args.max_length, pooling=pooling,
        normalize=normalize, progress=args.input is not None,
    )
    _write(args.output, texts, embeddings)
    if args.output is not None:
        print(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {args.output} "
              f"(pooling={pooling}, normalize={normalize}, device={device}, dtype={dtype})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastbert", description="Fast BERT encoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="embed texts with a BERT model",
                         description="Embed texts (arguments, --input FILE one per line, or stdin).")
    enc.add_argument("texts", nargs="*", help="texts to embed")
    enc.add_argument("-i", "--input", help="file with one text per line ('-' for stdin)")
    enc.add_argument("-o", "--output", help="output: NAME.npy (float32 [N, H]) or JSON lines (default: stdout)")
    enc.add_argument("--model", help="HF checkpoint directory (default: the bundled all-MiniLM-L6-v2)")
    enc.add_argument("--pooling", choices=["cls", "mean"], help="default: the model's sentence-transformers setting")
    enc.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                     help="L2-normalise embeddings (default: the model's sentence-transformers setting)")
    enc.add_argument("--batch-size", type=int, default=64)
    enc.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens (default: model max)")
    enc.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                     help="auto: float16 on CUDA, float32 on CPU")
    enc.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    enc.set_defaults(func=encode_main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, TypeError) as e:
        print(f"fastbert {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
