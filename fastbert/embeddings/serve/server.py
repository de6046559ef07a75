"""``fastbert serve``: an embedding server with OpenAI's and text-embeddings-inference's APIs.

>>> from fastbert.embeddings.serve.server import ServeSettings, serve
>>> serve(ServeSettings(model=None), host="127.0.0.1", port=8080)    # until SIGTERM / Ctrl-C

Endpoints: ``POST /v1/embeddings`` (OpenAI), ``POST /embed`` (TEI), ``GET /v1/models``, ``GET /health`` (200 once
the model is loaded, 503 before), ``GET /metrics`` (Prometheus). The path of a request:

1. the event loop (uvicorn) checks the key, the body size and the JSON (:mod:`.middleware`, :mod:`.api`);
2. admission: at most ``max_concurrent_requests`` requests are between admission and answer, the next one gets
   429 with ``Retry-After`` (the queue is bounded, never a backlog);
3. a tokenizer thread runs ``SentenceEncoder.tokenize_texts`` (truncation counted, or 422 with ``truncate=false``);
4. the model thread (:class:`.batcher.Batcher`) packs queued requests by ``max_batch_tokens`` and runs
   ``SentenceEncoder.encode_tokenized``: each request gets exactly ``encode``'s rows, in its own order;
5. the answer is written on the event loop. A client that disconnects before its batch starts is dropped from it.

SIGTERM or Ctrl-C stops accepting connections, lets admitted requests finish, then returns.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .api import ApiError
from .batcher import Batcher, EmbedOptions, Job

log = logging.getLogger("uvicorn.error")  # uvicorn's own log: one stream, one format
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"  # the bundled model's id when --model is not given
ENDPOINTS = {"/v1/embeddings", "/embed", "/v1/models", "/health", "/metrics"}


@dataclass(frozen=True)
class ServeSettings:
    """What ``fastbert serve`` takes. ``model``: a folder ``fastbert encode`` takes (``None``: the bundled
    all-MiniLM-L6-v2). ``served_model_name``: the id of ``/v1/models`` and the ``model`` a request must name
    (default: the folder's name). Limits: tokens per model batch, requests admitted at once, texts per request,
    request body bytes. ``api_key``: required as ``Authorization: Bearer KEY`` when set."""

    model: str | None = None
    quantize: str | None = None
    device: str | None = None
    max_batch_tokens: int = 16384
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    payload_limit: int = 2_000_000
    api_key: str | None = None
    served_model_name: str | None = None
    graceful_timeout: float = 30.0  # seconds SIGTERM waits for admitted requests

    def __post_init__(self):
        for name in ("max_batch_tokens", "max_concurrent_requests", "max_client_batch_size", "payload_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        if self.model is None:
            return DEFAULT_MODEL_NAME
        return os.path.basename(os.path.normpath(os.path.abspath(self.model)))


@dataclass
class Embedded:
    """One request's answer: ``rows`` float32 [N, D'], its ``tokens`` (after truncation) and ``truncated`` texts."""

    rows: np.ndarray
    tokens: int
    truncated: int


class EmbeddingService:
    """The server's state between HTTP and the model: the encoder (loaded on a thread after start, so ``/health``
    answers while it loads), admission, the tokenizer thread, the batcher and the metrics."""

    def __init__(self, settings: ServeSettings, encoder_factory: Callable[[], object]):
        from .metrics import ServerMetrics

        self.settings, self._factory = settings, encoder_factory
        self.encoder = None
        self.batcher: Batcher | None = None
        self.load_error: BaseException | None = None
        self.on_load_failure: Callable[[BaseException], None] | None = None
        self.in_flight = 0
        self.metrics = ServerMetrics(lambda: self.batcher.queue_depth if self.batcher else 0,
                                     lambda: self.in_flight)
        self._tokenizer_pool: ThreadPoolExecutor | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None

    def start(self) -> None:
        self._tokenizer_pool = ThreadPoolExecutor(1, thread_name_prefix="fastbert-tokenize")
        threading.Thread(target=self._load, name="fastbert-load", daemon=True).start()

    def _load(self) -> None:
        try:
            started = time.perf_counter()
            encoder = self._factory()
            encoder.encode(["Warm-up text."])  # first-call costs before the first client
            batcher = Batcher(encoder, self.settings.max_batch_tokens, self.metrics.observe_batch)
            batcher.start()
            self.encoder, self.batcher = encoder, batcher
            log.info("fastbert: ready, model %r (%s) loaded in %.1f s", self.settings.model_name, encoder,
                     time.perf_counter() - started)
        except BaseException as error:  # reported by serve(); the server stops
            self.load_error = error
            log.error("fastbert: could not load the model: %s", error)
            if self.on_load_failure is not None:
                self.on_load_failure(error)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close(timeout=self.settings.graceful_timeout)
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.shutdown(wait=False, cancel_futures=True)

    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise ApiError(404, f"model {name!r} is not served here; this server serves "
                           f"{self.settings.model_name!r} (see GET /v1/models)", "model_not_found", param="model")

    def _check(self, texts: list[str], options: EmbedOptions, param: str) -> None:
        """Refusals that need no model time: not ready (503), empty (422), too many texts (413), dimensions."""
        if not self.ready:
            raise ApiError(503, "the model is still loading; retry shortly", "unhealthy",
                           headers={"Retry-After": "1"})
        if not texts:
            raise ApiError(422, f"{param} is empty: send at least one text", param=param)
        limit = self.settings.max_client_batch_size
        if len(texts) > limit:
            raise ApiError(413, f"{len(texts)} texts in one request, more than the server's "
                           f"--max-client-batch-size of {limit}; split the request", "too_large", param=param)
        dim = self.encoder.get_sentence_embedding_dimension()
        if options.truncate_dim is not None and options.truncate_dim > dim:
            raise ApiError(422, f"dimensions={options.truncate_dim} is more than the model's {dim}",
                           param="dimensions")

    async def embed(self, receive, texts: list[str], options: EmbedOptions, *, truncation: bool = True,
                    prompt_name: str | None = None, param: str = "input") -> Embedded | None:
        """Rows for ``texts`` as ``encode`` gives them; ``None`` when the client disconnected first. Raises
        :class:`ApiError` for every refusal. ``receive``: the request's ASGI receive (to hear a disconnect)."""
        self._check(texts, options, param)
        limit = self.settings.max_concurrent_requests
        if self.in_flight >= limit:
            raise ApiError(429, f"the server has {limit} requests in progress (--max-concurrent-requests); "
                           "retry later", "overloaded", headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            tokens = await self._tokenize(texts, truncation, prompt_name, param)
            job = self.batcher.submit(tokens, options)
            rows = await _rows_unless_disconnected(job, receive)
        finally:
            self.in_flight -= 1
        if rows is None:
            return None
        n_tokens = int(tokens.offsets[-1])
        self.metrics.observe_request(len(texts), n_tokens, tokens.truncated)
        return Embedded(rows, n_tokens, tokens.truncated)

    async def _tokenize(self, texts: list[str], truncation: bool, prompt_name: str | None, param: str):
        from ..batching import TruncationError

        def tokenize():
            return self.encoder.tokenize_texts(texts, prompt_name, truncation=truncation)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._tokenizer_pool, tokenize)
        except TruncationError as e:
            raise ApiError(422, f"{len(e.indices)} of {len(texts)} texts are longer than the model's "
                           f"max_seq_length of {e.max_length} tokens (first: {param}[{e.indices[0]}], "
                           f"{e.lengths[0]} tokens); send truncate=true to truncate them", param=param) from None
        except ValueError as e:  # an unknown prompt_name
            raise ApiError(422, str(e), param="prompt_name") from None


async def _rows_unless_disconnected(job: Job, receive) -> np.ndarray | None:
    """The job's rows; or, if the client disconnects first, ``None`` (and the job is skipped if not started)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({job.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if job.future.done():
        return job.future.result()  # an embedding error raises here
    job.cancelled = True
    job.future.cancel()
    return None


def default_encoder_factory(settings: ServeSettings) -> Callable[[], object]:
    def load():
        from ..sentence_encoder import SentenceEncoder

        return SentenceEncoder(settings.model, device=settings.device, quantize=settings.quantize)
    return load


def create_app(settings: ServeSettings, encoder_factory: Callable[[], object] | None = None):
    """The ASGI app (FastAPI). The model loads on a thread when the app starts (lifespan), not here."""
    from fastapi import FastAPI
    from starlette.middleware import Middleware

    from .middleware import ApiKeyGuard, BodyLimit, RequestMetrics
    from .routes import add_error_handlers, add_routes

    service = EmbeddingService(settings, encoder_factory or default_encoder_factory(settings))

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        yield
        service.stop()

    middleware = [Middleware(RequestMetrics, observe=service.metrics.observe_http, endpoints=ENDPOINTS)]
    if settings.api_key:
        middleware.append(Middleware(ApiKeyGuard, api_key=settings.api_key))
    middleware.append(Middleware(BodyLimit, limit=settings.payload_limit))
    app = FastAPI(title="fastbert serve", lifespan=lifespan, middleware=middleware)
    app.state.service = service
    add_error_handlers(app)
    add_routes(app, service)
    return app


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for ``host:port`` (port 0: a free one), IPv4 or IPv6 as ``host`` resolves."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8080,
          encoder_factory: Callable[[], object] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then drain admitted requests (at most ``settings.graceful_timeout`` s) and
    return the signal that stopped it (``signal.SIGTERM`` / ``signal.SIGINT``; 0 if none). A model that fails to
    load stops the server and its error is raised here."""
    import uvicorn

    app = create_app(settings, encoder_factory)
    service: EmbeddingService = app.state.service
    sock = _listening_socket(host, port)
    config = uvicorn.Config(app, log_level="info", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=settings.graceful_timeout)
    server = uvicorn.Server(config)
    service.on_load_failure = lambda error: setattr(server, "should_exit", True)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    log.info("fastbert: listening on http://%s:%d (the model loads now; GET /health says when it is ready)",
             shown, bound_port)
    # uvicorn handles SIGTERM/SIGINT while it runs (stop accepting, drain), then raises the signal again under the
    # handler it found; this one records it, so the process returns normally instead of dying by the signal.
    stopped_by: list[int] = []
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals are the main thread's
    previous = {sig: signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)} if in_main_thread else {}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if service.load_error is not None:
        raise service.load_error
    return stopped_by[0] if stopped_by else 0
