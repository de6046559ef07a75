"""The worker side of :class:`fastbert.embeddings.pool.EncodePool`: a fresh interpreter that loads one
:class:`~fastbert.embeddings.sentence_encoder.SentenceEncoder` and encodes the chunks its pool sends, until told to
stop or until the pool goes away. Started as ``python -c "from fastbert.embeddings import pool_worker;
pool_worker.main(fd)"`` with one end of a socket pair.
"""
from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import traceback

import numpy as np

from .batching import TruncationError


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling unchanged, else its nearest built-in base class with the same message (an
    exception whose ``__init__`` takes other arguments than its message fails or changes when rebuilt)."""
    try:
        restored = pickle.loads(pickle.dumps(exc))
        if type(restored) is type(exc) and str(restored) == str(exc):
            return exc
    except Exception:
        pass
    base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
    return base(f"{type(exc).__name__}: {exc}")


def _send_error(conn, exc: BaseException) -> None:
    conn.send(("error", _portable(exc), "".join(traceback.format_exception(exc))))


def main(fd: int) -> None:
    """Loads the model named by the first message, then encodes chunks until told to stop (``None``) or until
    the parent goes away."""
    conn = multiprocessing.connection.Connection(fd)
    setup = conn.recv()
    try:
        import torch

        from ..tokenizers import BertTokenizer
        from .sentence_encoder import load_encoder

        torch.set_num_threads(setup["threads"])
        if torch.device(setup["device"]).type == "cuda" and torch.device(setup["device"]).index is not None:
            torch.cuda.set_device(setup["device"])  # Triton launches on the current device
        encoder = load_encoder(setup["path"], setup["device"], setup["dtype"], **setup["encoder_kwargs"])
        if isinstance(encoder.tokenizer, BertTokenizer):
            encoder.tokenizer.num_threads = setup["threads"]
    except Exception as exc:
        _send_error(conn, exc)
        return
    conn.send(("ready", encoder.get_sentence_embedding_dimension(), encoder.max_seq_length))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            os._exit(0)  # nothing to flush or save: skip the interpreter's (and torch's) slow shutdown
        _, texts, batch_size, encode_kwargs = message
        try:
            embeddings = encoder.encode(texts, batch_size=batch_size, **encode_kwargs)
        except TruncationError as exc:  # positions within this chunk: the parent maps them to the input's
            conn.send(("too long", exc.indices, exc.lengths, exc.max_length))
            continue
        except Exception as exc:
            _send_error(conn, exc)
            continue
        conn.send(("done", np.ascontiguousarray(embeddings, dtype=np.float32), encoder.last_truncated))

