"""What every ``fastbert`` subcommand shares: the parser class, argument types, the usage error, messages on
stderr. Parses and prints only."""
from __future__ import annotations

import argparse
import re
import sys

# Exit statuses: 0 done, 1 an error while running, 2 a usage error, 130 Ctrl-C, 143 SIGTERM.
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class UsageError(Exception):
    """A mistake in how the command was called (reported with exit status 2)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def quantize_mode(text: str) -> str:
    """``--quantize``'s value; the removed ``int8`` says why (argparse then checks the choices)."""
    if text == "int8":
        raise argparse.ArgumentTypeError("'int8' was removed: it was no faster than 'bfloat16' and less faithful; "
                                         "use 'bfloat16' (see fastbert.encoder.precision)")
    return text


def device(text: str) -> str:
    if not re.fullmatch(r"(cpu|cuda)(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda or cuda:N")
    return text


def devices(text: str) -> list[str]:
    from ..embeddings.pool import parse_devices  # no torch import for a list or a number

    try:
        return parse_devices(text)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def say(message: str, command: str = "encode") -> None:
    if sys.stderr is not None:
        print(f"fastbert {command}: {message}", file=sys.stderr, flush=True)


def stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()
