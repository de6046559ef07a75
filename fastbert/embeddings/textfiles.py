"""Text in, embeddings out: the line definition of ``fastbert encode`` and atomic output files.

**A line** is what lies between two ``\\n`` bytes (or the start/end of the input). One trailing ``\\r`` of a line
is removed (``\\r\\n`` line ends). Nothing else splits a line: a lone ``\\r``, ``\\x0b``, ``\\x0c``,
``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028`` and ``\\u2029`` stay inside it (Python's ``str.splitlines`` and
text-mode file iteration split on some of these; fastbert does not). A final ``\\n`` ends the last line rather than
starting an empty one; an empty line in the middle is an empty text. A UTF-8 byte-order mark at the very start is
dropped. Input must be UTF-8; the first line that is not is reported by its 1-based number.

**Outputs** are written to a temporary file in the destination folder and renamed over the destination only once
complete (``os.replace``, atomic on POSIX), so an interrupted run never leaves a complete-looking file and never
damages an existing one.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import IO, Iterator, Sequence

import numpy as np

OUTPUT_FORMATS = {".npy": "npy", ".jsonl": "jsonl"}
_BOM = b"\xef\xbb\xbf"


def split_lines(data: bytes, source: str = "input") -> list[str]:
    """UTF-8 bytes -> the texts of its lines (see the module docstring). ``source`` names the input in errors.

    Raises ``ValueError`` naming ``source`` and the 1-based line number of the first line that is not UTF-8."""
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    if not data:
        return []
    raw = data.split(b"\n")
    if raw[-1] == b"":  # the final "\n" ends the last line
        raw.pop()
    texts = []
    for number, line in enumerate(raw, start=1):
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{source} line {number} is not valid UTF-8 (byte {line[e.start]:#04x} at byte "
                             f"{e.start + 1} of the line)") from None
    return texts


def read_lines(path: str) -> list[str]:
    """The lines of a UTF-8 text file (``OSError`` naming the file if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise OSError(f"cannot read input file {path!r}: {e.strerror or e}") from None
    return split_lines(data, repr(path))


def output_format(path: str) -> str:
    """``"npy"`` or ``"jsonl"`` from the extension (any case), after checking the file can be written.

    Raises ``ValueError`` for another extension and ``OSError`` when the folder is missing or not writable or the
    path is a folder: all before any work is done."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"cannot write {path!r}: unknown output extension {ext or '(none)'!r}; use NAME.npy "
                         "(float32 array [N, D]) or NAME.jsonl (JSON lines)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise OSError(f"cannot write {path!r}: it is a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OSError(f"cannot write {path!r}: folder {folder!r} is not writable")
    return OUTPUT_FORMATS[ext]


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it is flushed, synced and renamed to ``path``, on any
    exception (``KeyboardInterrupt`` and ``SystemExit`` included) it is removed and ``path`` is left untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    # The name is known before the file exists, so a signal landing right after its creation still removes it.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(8)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _new_file_mode(path: str) -> int:
    """The permissions ``open(path, "w")`` would give: the existing file's, else 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_npy(path: str, embeddings: np.ndarray) -> None:
    """Save ``embeddings`` [N, D] as ``.npy``, atomically."""
    with atomic_file(path) as f:
        np.save(f, embeddings)


def write_jsonl(stream: IO[str], texts: Sequence[str], embeddings: np.ndarray) -> None:
    """One ``{"text": ..., "embedding": [...]}`` line per text (float32 values written with 9 significant digits,
    enough to read back the same float32)."""
    for text, row in zip(texts, embeddings):
        values = ",".join(f"{x:.9g}" for x in row.tolist())
        stream.write(f'{{"text": {json.dumps(text)}, "embedding": [{values}]}}\n')
