"""The ``fastbert`` command line: ``fastbert encode`` embeds texts as sentence-transformers would.

``fastbert serve`` serves them over HTTP. This package parses arguments and prints; the work is in
:mod:`fastbert.embeddings`. torch and the model are imported
only once arguments are valid, so ``fastbert --help``, ``--version`` and argument mistakes answer at once. Each
subcommand is one module (:mod:`.encode`, :mod:`.serve`) with ``add_parser`` and ``run``; :mod:`.common` holds what they share.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import threading
from typing import Sequence

from .. import __version__
from . import encode, serve
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Parser, UsageError, say

_MAX_MESSAGE = 500  # characters of a library error message shown on the one error line


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that temporary files are cleaned up on the way out (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it)."""


def build_parser() -> Parser:
    parser = Parser(prog="fastbert", description="Fast BERT encoders: sentence embeddings like sentence-transformers.")
    parser.add_argument("--version", action="version", version=f"fastbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    encode.add_parser(sub)
    serve.add_parser(sub)
    return parser


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
        say("interrupted", args.command)
        return EXIT_INTERRUPTED
    except _Terminated:
        say("terminated", args.command)
        return EXIT_TERMINATED
    except UsageError as e:
        say(f"error: {e} (see 'fastbert {args.command} --help')", args.command)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except _user_errors() as e:
        say(f"error: {_one_line(e)}", args.command)
        return EXIT_ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
