"""The ``fastbert`` command line. ``fastbert encode`` embeds texts as sentence-transformers would.

This module parses arguments and prints; the work is in :mod:`fastbert.sentence`. torch and the model are imported
only once arguments are valid, so ``fastbert --help``, ``--version`` and argument mistakes answer at once.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from typing import Sequence

from . import __version__

# Exit statuses: 0 done, 1 an error while running, 2 a usage error, 130 Ctrl-C, 143 SIGTERM.
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
_MAX_MESSAGE = 500  # characters of a library error message shown on the one error line

_ENCODE_HELP = """\
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


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that temporary files are cleaned up on the way out (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it)."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"(cpu|cuda)(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    return text


def _devices(text: str) -> list[str]:
    from .parallel import parse_devices  # no torch import for a list or a number

    try:
        return parse_devices(text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastbert", description="Fast BERT encoders: sentence embeddings like sentence-transformers.")
    parser.add_argument("--version", action="version", version=f"fastbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    enc = sub.add_parser("encode", help="embed texts", description=_ENCODE_HELP,
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
    enc.add_argument("--max-length", type=_positive_int, metavar="N",
                     help="truncate texts to N tokens (default: the folder's max_seq_length)")
    enc.add_argument("--no-truncate", action="store_true",
                     help="make a text longer than the maximum length an error instead of truncating it")
    enc.add_argument("--batch-size", type=_positive_int, default=64, metavar="N", help="texts per batch (default 64)")
    enc.add_argument("--max-batch-tokens", type=_positive_int, default=16384, metavar="N",
                     help="padded tokens per batch (default 16384)")
    enc.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"], default="auto",
                     help="auto: float16 on CUDA, float32 on CPU")
    enc.add_argument("--quantize", choices=["auto", "bfloat16", "int8"],
                     help="reduced precision (CPU): bfloat16 (min cosine >= 0.995 vs float32), int8 (>= 0.98), auto "
                          "(bfloat16 on CPUs with AMX-BF16, else float32); see fastbert.quantize")
    enc.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda when available)")
    enc.add_argument("--devices", type=_devices, metavar="LIST|N",
                     help="one worker process per device (cuda:0,cuda:1), or N CPU worker processes")
    enc.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="embed files on a Ray cluster (ADDRESS e.g. auto or ray://host:10001; none: the running "
                     "cluster, else a new local one); resumable: finished output files are skipped")
    enc.add_argument("--text-column", default="text", metavar="NAME", help="with --ray: the column of texts")
    enc.add_argument("--workers", type=_positive_int, metavar="N",
                     help="with --ray: model replicas (default: one per GPU of the cluster, else one per CPU)")
    enc.set_defaults(func=encode_main)
    _add_serve_parser(sub)
    return parser


_SERVE_HELP = """\
Serve embeddings over HTTP (pip install 'fastbert[serve]'): OpenAI's POST /v1/embeddings, TEI's POST /embed,
GET /v1/models, GET /health (200 once the model is loaded), GET /metrics (Prometheus). Requests from all clients
are batched by --max-batch-tokens; each answer holds exactly what 'fastbert encode' gives. Past
--max-concurrent-requests the server answers 429 with Retry-After. SIGTERM or Ctrl-C drains admitted requests,
then exits 0 (130 after Ctrl-C). The API key may also come from FASTBERT_API_KEY.
"""


def _add_serve_parser(sub) -> None:
    srv = sub.add_parser("serve", help="serve embeddings over HTTP (OpenAI and TEI APIs)", description=_SERVE_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    srv.add_argument("--model", metavar="FOLDER", help="local model folder (default: the bundled all-MiniLM-L6-v2)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free one, logged)")
    srv.add_argument("--quantize", choices=["auto", "bfloat16", "int8"], help="reduced precision, as for encode")
    srv.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda when available)")
    srv.add_argument("--max-batch-tokens", type=_positive_int, default=16384, metavar="N",
                     help="tokens per model batch, summed over requests (default 16384)")
    srv.add_argument("--max-concurrent-requests", type=_positive_int, default=512, metavar="N",
                     help="requests admitted at once; more get 429 (default 512)")
    srv.add_argument("--max-client-batch-size", type=_positive_int, default=32, metavar="N",
                     help="texts per request; more get 413 (default 32)")
    srv.add_argument("--payload-limit", type=_positive_int, default=2_000_000, metavar="BYTES",
                     help="request body size; larger get 413 (default 2000000)")
    srv.add_argument("--api-key", metavar="KEY", default=os.environ.get("FASTBERT_API_KEY"),
                     help="require 'Authorization: Bearer KEY' (all but /health)")
    srv.add_argument("--served-model-name", metavar="NAME",
                     help="the model id requests name (default: the folder's name; all-MiniLM-L6-v2 when bundled)")
    srv.set_defaults(func=serve_main)


def serve_main(args) -> int:
    try:
        from .embeddings.server import ServeSettings, serve
    except ImportError as e:
        raise ValueError(f"fastbert serve needs its extra ({e.name} is missing): pip install 'fastbert[serve]'") \
            from None
    settings = ServeSettings(
        model=args.model, quantize=args.quantize, device=args.device, max_batch_tokens=args.max_batch_tokens,
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
        payload_limit=args.payload_limit, api_key=args.api_key, served_model_name=args.served_model_name)
    stopped_by = serve(settings, host=args.host, port=args.port)
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else 0


# ---------------------------------------------------------------------------------------------------------------
# fastbert encode
# ---------------------------------------------------------------------------------------------------------------

class _UsageError(Exception):
    pass


def _read_texts(args) -> tuple[list[str], str]:
    """(texts, how to name text i in messages: "line" or "argument")."""
    from .sentence.textfiles import read_lines, split_lines

    if args.input is not None and args.texts:
        raise _UsageError("give texts as arguments or with --input, not both")
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
        raise _UsageError("no input: pass texts as arguments, --input FILE, or pipe them on stdin")
    texts = split_lines(sys.stdin.buffer.read(), "stdin")
    if not texts:
        raise ValueError("stdin is empty: no texts to embed")
    return texts, "line"


def encode_main(args) -> int:
    from .sentence.textfiles import output_format

    if args.ray is not None:
        return _encode_files_on_ray(args)
    if args.workers is not None or args.text_column != "text":
        raise _UsageError("--workers and --text-column go with --ray")
    if args.devices and args.device:
        raise _UsageError("give --device or --devices, not both")

    to_stdout = args.output in (None, "-")
    fmt = "jsonl" if to_stdout else output_format(args.output)
    if to_stdout and sys.stdout is None:
        raise ValueError("stdout is closed; write to a file with -o NAME.npy or -o NAME.jsonl")
    texts, unit = _read_texts(args)

    from .sentence import SentenceEncoder, TruncationError  # imports torch

    options = dict(max_seq_length=args.max_length, pooling=args.pooling, normalize=args.normalize,
                   quantize=args.quantize)
    encode_options = dict(prompt_name=args.prompt_name, prompt=args.prompt, batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens, truncation=not args.no_truncate,
                          show_progress_bar=_stderr_is_terminal())
    try:
        if args.devices:
            from .parallel import EncodePool

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
        _say(f"note: {encoder.last_truncated} of {len(texts)} texts were longer than {encoder.max_seq_length} "
             "tokens and were truncated (--max-length changes the limit, --no-truncate makes it an error)")
    if not to_stdout:
        _say(f"wrote {len(texts)} embeddings of size {embeddings.shape[1]} to {args.output} ({where})")
    return 0


def _encode_files_on_ray(args) -> int:
    if args.texts or args.input in (None, "-") or args.output in (None, "-"):
        raise _UsageError("--ray reads files: give --input FOLDER_OR_GLOB and --output FOLDER (no texts)")
    if args.devices:
        raise _UsageError("--devices is for one machine; with --ray, Ray places the workers")
    try:
        import ray

        from .ray import embed_files
    except ImportError:
        raise ValueError("--ray needs Ray Data: pip install 'fastbert[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=args.ray or None)
    result = embed_files(
        args.input, args.output, path=args.model, text_column=args.text_column, concurrency=args.workers,
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, progress=_stderr_is_terminal(),
        encoder_kwargs=dict(max_seq_length=args.max_length, pooling=args.pooling, normalize=args.normalize,
                            quantize=args.quantize),
        prompt_name=args.prompt_name, prompt=args.prompt, max_batch_tokens=args.max_batch_tokens,
        truncation=not args.no_truncate)
    _say(f"wrote {len(result.written)} output files ({sum(result.written.values())} rows) to {args.output}; "
         f"{len(result.skipped)} were already done")
    return 0


def _write(path: str | None, fmt: str, texts: Sequence[str], embeddings) -> None:
    from .sentence.textfiles import atomic_file, write_jsonl, write_npy

    if path in (None, "-"):
        write_jsonl(sys.stdout, texts, embeddings)
        sys.stdout.flush()
    elif fmt == "npy":
        write_npy(path, embeddings)
    else:
        with atomic_file(path, "w") as f:
            write_jsonl(f, texts, embeddings)


# ---------------------------------------------------------------------------------------------------------------
# Entry point: every mistake is one line on stderr
# ---------------------------------------------------------------------------------------------------------------

def _say(message: str, command: str = "encode") -> None:
    if sys.stderr is not None:
        print(f"fastbert {command}: {message}", file=sys.stderr, flush=True)


def _stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _one_line(error: BaseException) -> str:
    """An exception as one line: OSError as "file: reason", newlines folded, long messages cut."""
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    text = re.sub(r"\s*\n\s*", " ", text).strip()
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a user can cause (bad files, options, devices, an optional package not installed); anything else
    is a bug and keeps its traceback."""
    errors: list[type[BaseException]] = [ValueError, TypeError, OSError, EOFError, ImportError]
    for module, name in (("safetensors", "SafetensorError"), ("pickle", "UnpicklingError"),
                         ("torch", "OutOfMemoryError")):
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, name):
            errors.append(getattr(mod, name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP threads that sleep instead of spinning while they wait: on a 2-core machine with other work, spinning
    # made encode 2.5x slower (a waiting thread holds a core its partner needs); on an idle one the two measured the
    # same. libgomp reads this once, when torch loads it, so it is set before any torch import (workers inherit it).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `fastbert`
        parser.print_help(sys.stdout or sys.stderr)
        return 0

    def terminate(signum, frame):
        raise _Terminated()

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if in_main_thread else None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _say("interrupted", args.command)
        return EXIT_INTERRUPTED
    except _Terminated:
        _say("terminated", args.command)
        return EXIT_TERMINATED
    except _UsageError as e:
        _say(f"error: {e} (see 'fastbert {args.command} --help')", args.command)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except _user_errors() as e:
        _say(f"error: {_one_line(e)}", args.command)
        return EXIT_ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
