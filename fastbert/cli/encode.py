"""``fastbert encode``: parse the arguments, read the texts, call the embeddings wing, write the output."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Sequence

from .common import UsageError, device, devices, positive_int, quantize_mode, say, stderr_is_terminal

HELP = """\
Embed texts with a sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2) and get the
embeddings sentence-transformers gives: the folder's truncation length, pooling, Dense and Normalize modules and
prompts are applied as sentence-transformers applies them.

input:  texts as arguments (one embedding each), or --input FILE / stdin with one text per line. A line ends at
        "\\n" (a trailing "\\r" is removed); no other character splits a line, so the output has exactly one row
        per input line, empty lines included. Input must be UTF-8.
output: JSON lines {"text": ..., "embedding": [...]} on stdout, or -o NAME.jsonl / NAME.npy (float32 [N, D]).
        Files are written to a temporary name and renamed when complete.
devices: --devices cuda:0,cuda:1 (or a number of CPU worker processes) splits the texts into chunks of about
        equal token counts, one worker process per device; the output is the same, in input order.
ray:    --ray [ADDRESS] --input FOLDER_OR_GLOB --output FOLDER embeds Parquet / JSON lines files on a Ray cluster
        (pip install 'fastbert[ray]'): one output file per input file at the same relative path, with the input's
        rows in order plus an "embedding" column. Each is renamed into place when complete: a rerun skips them.

exit status: 0 done, 1 error, 2 usage error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""



def add_parser(sub) -> None:
    """The ``encode`` subcommand on ``sub`` (the parser's subparsers)."""
    enc = sub.add_parser("encode", help="embed texts", description=HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    enc.add_argument("texts", nargs="*", help="texts to embed (else --input, else stdin)")
    enc.add_argument("-i", "--input", metavar="FILE", help="UTF-8 file with one text per line ('-': stdin); "
                     "with --ray: a folder or glob of Parquet / JSON lines files")
    enc.add_argument("-o", "--output", metavar="FILE", help="NAME.npy (float32 [N, D]) or NAME.jsonl (default: "
                     "JSON lines on stdout); with --ray: a folder, one output file per input file")
    enc.add_argument("--model", metavar="FOLDER",
                     help="local model folder (default: the bundled all-MiniLM-L6-v2); nothing is downloaded")
    enc.add_argument("--prompt-name", metavar="NAME", help="one of the folder's prompts (default: its default prompt)")
    enc.add_argument("--prompt", metavar="TEXT", help="text put before every input (wins over --prompt-name)")
    enc.add_argument("--pooling", choices=["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"],
                     help="override the folder's pooling (then results differ from sentence-transformers)")
    enc.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                     help="L2-normalise (--no-normalize drops the folder's Normalize module); default: the folder's")
    enc.add_argument("--max-length", type=positive_int, metavar="N",
                     help="truncate texts to N tokens (default: the folder's max_seq_length)")
    enc.add_argument("--no-truncate", action="store_true",
                     help="make a text longer than the maximum length an error instead of truncating it")
    enc.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="texts per batch (default 64)")
    enc.add_argument("--max-batch-tokens", type=positive_int, default=16384, metavar="N",
                     help="padded tokens per batch (default 16384)")
    enc.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                     help="auto: float16 on CUDA, float32 on CPU")
    enc.add_argument("--quantize", type=quantize_mode, choices=["auto", "bfloat16"],
                     help="reduced precision (CPU): bfloat16 (bf16 GEMMs, float32 residual stream; min cosine "
                          ">= 0.9999 vs float32), auto (bfloat16 on CPUs with AMX-BF16, else float32); see "
                          "fastbert.encoder.precision")
    enc.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: cuda when available)")
    enc.add_argument("--devices", type=devices, metavar="LIST|N",
                     help="one worker process per device (cuda:0,cuda:1), or N CPU worker processes")
    enc.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="embed files on a Ray cluster (ADDRESS e.g. auto or ray://host:10001; none: the running "
                     "cluster, else a new local one); resumable: finished output files are skipped")
    enc.add_argument("--text-column", default="text", metavar="NAME", help="with --ray: the column of texts")
    enc.add_argument("--workers", type=positive_int, metavar="N",
                     help="with --ray: model replicas (default: one per GPU of the cluster, else one per CPU)")
    enc.add_argument("--verbose", action="store_true", help="with --ray: Ray's own INFO logs as well")
    enc.set_defaults(func=run)


def _read_texts(args) -> tuple[list[str], str]:
    """(texts, how to name text i in messages: "line" or "argument")."""
    from ..embeddings.textfiles import read_lines, split_lines

    if args.input is not None and args.texts:
        raise UsageError("give texts as arguments or with --input, not both")
    if args.input is not None and args.input != "-":
        texts = read_lines(args.input)
        if not texts:
            raise ValueError(f"input file {args.input!r} is empty: no texts to embed")
        return texts, "line"
    if args.texts:
        for number, text in enumerate(args.texts, start=1):
            if re.search("[\ud800-\udfff]", text):  # undecodable bytes in argv come as lone surrogates
                raise ValueError(f"argument text {number} is not valid UTF-8")
        return list(args.texts), "argument"
    if sys.stdin is None or (args.input is None and sys.stdin.isatty()):
        raise UsageError("no input: pass texts as arguments, --input FILE, or pipe them on stdin")
    texts = split_lines(sys.stdin.buffer.read(), "stdin")
    if not texts:
        raise ValueError("stdin is empty: no texts to embed")
    return texts, "line"


def run(args) -> int:
    from ..embeddings.textfiles import output_format

    if args.ray is not None:
        return _encode_files_on_ray(args)
    if args.workers is not None or args.text_column != "text" or args.verbose:
        raise UsageError("--workers, --text-column and --verbose go with --ray")
    if args.devices and args.device:
        raise UsageError("give --device or --devices, not both")

    to_stdout = args.output in (None, "-")
    fmt = "jsonl" if to_stdout else output_format(args.output)
    if to_stdout and sys.stdout is None:
        raise ValueError("stdout is closed; write to a file with -o NAME.npy or -o NAME.jsonl")
    texts, unit = _read_texts(args)

    from ..embeddings.batching import TruncationError
    from ..embeddings.sentence_encoder import SentenceEncoder  # imports torch

    options = dict(max_seq_length=args.max_length, pooling=args.pooling, normalize=args.normalize,
                   quantize=args.quantize)
    encode_options = dict(prompt_name=args.prompt_name, prompt=args.prompt, batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens, truncation=not args.no_truncate,
                          show_progress_bar=stderr_is_terminal())
    try:
        if args.devices:
            from ..embeddings.pool import EncodePool

            with EncodePool(args.devices, args.model, dtype=args.dtype, **options) as encoder:
                embeddings = encoder.encode(texts, **encode_options)
            where = f"devices={','.join(encoder.devices)}, dtype={args.dtype}"
        else:
            encoder = SentenceEncoder(args.model, device=args.device, dtype=args.dtype, **options)
            embeddings = encoder.encode(texts, **encode_options)
            where = f"device={encoder.device}, dtype={str(encoder.dtype).removeprefix('torch.')}"
    except TruncationError as e:
        raise ValueError(f"{len(e.indices)} of {len(texts)} texts are longer than {e.max_length} tokens (first: "
                         f"{unit} {e.indices[0] + 1}, {e.lengths[0]} tokens); drop --no-truncate to truncate "
                         "them") from None
    _write(args.output, fmt, texts, embeddings)
    if encoder.last_truncated:
        say(f"note: {encoder.last_truncated} of {len(texts)} texts were longer than {encoder.max_seq_length} "
             "tokens and were truncated (--max-length changes the limit, --no-truncate makes it an error)")
    if not to_stdout:
        say(f"wrote {len(texts)} embeddings of size {embeddings.shape[1]} to {args.output} ({where})")
    return 0


def _encode_files_on_ray(args) -> int:
    if args.texts or args.input in (None, "-") or args.output in (None, "-"):
        raise UsageError("--ray reads files: give --input FOLDER_OR_GLOB and --output FOLDER (no texts)")
    if args.devices:
        raise UsageError("--devices is for one machine; with --ray, Ray places the workers")
    try:
        from ..embeddings.ray import connected, embed_files
    except ImportError:
        raise ValueError("--ray needs Ray Data: pip install 'fastbert[ray]'") from None
    with connected(args.ray or None, verbose=args.verbose):
        result = embed_files(
            args.input, args.output, path=args.model, text_column=args.text_column, concurrency=args.workers,
            device=args.device, dtype=args.dtype, batch_size=args.batch_size,
            progress=True if stderr_is_terminal() else say,
            encoder_kwargs=dict(max_seq_length=args.max_length, pooling=args.pooling, normalize=args.normalize,
                                quantize=args.quantize),
            prompt_name=args.prompt_name, prompt=args.prompt, max_batch_tokens=args.max_batch_tokens,
            truncation=not args.no_truncate)
    say(f"wrote {len(result.written)} output files ({sum(result.written.values())} rows) to {args.output}; "
         f"{len(result.skipped)} were already done")
    return 0


def _write(path: str | None, fmt: str, texts: Sequence[str], embeddings) -> None:
    from ..embeddings.textfiles import atomic_file, write_jsonl, write_npy

    if path in (None, "-"):
        write_jsonl(sys.stdout, texts, embeddings)
        sys.stdout.flush()
    elif fmt == "npy":
        write_npy(path, embeddings)
    else:
        with atomic_file(path, "w") as f:
            write_jsonl(f, texts, embeddings)
