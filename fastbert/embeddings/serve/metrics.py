"""Prometheus metrics of the embedding server (prometheus-client), in a registry of its own per server.

=========================================  =============================================================
``fastbert_requests_total``                HTTP answers by ``endpoint`` and ``status`` (429, 413, ... too)
``fastbert_request_duration_seconds``      latency histogram by ``endpoint``, arrival to answer
``fastbert_requests_in_flight``            requests admitted and not yet answered (bounded by admission)
``fastbert_queue_depth``                   requests tokenized and waiting for the model
``fastbert_batch_texts`` / ``_tokens``     histograms of texts / tokens per model batch
``fastbert_batch_duration_seconds``        model time per batch
``fastbert_texts_total`` / ``_tokens_``    texts / tokens embedded (tokens after truncation)
``fastbert_truncated_texts_total``         texts cut to max_seq_length
=========================================  =============================================================
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_POWERS_OF_2 = tuple(float(2 ** k) for k in range(0, 11))  # 1 .. 1024 texts
_TOKEN_BUCKETS = tuple(float(2 ** k) for k in range(4, 16))  # 16 .. 32768 tokens


class ServerMetrics:
    """The metrics; ``queue_depth`` and ``in_flight`` are read when scraped."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("fastbert_requests", "HTTP answers by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("fastbert_request_duration_seconds", "Time from arrival to answer",
                                 ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        Gauge("fastbert_requests_in_flight", "Requests admitted and not yet answered",
              registry=r).set_function(in_flight)
        Gauge("fastbert_queue_depth", "Requests waiting for the model", registry=r).set_function(queue_depth)
        self.batch_texts = Histogram("fastbert_batch_texts", "Texts per model batch", buckets=_POWERS_OF_2,
                                     registry=r)
        self.batch_tokens = Histogram("fastbert_batch_tokens", "Tokens per model batch", buckets=_TOKEN_BUCKETS,
                                      registry=r)
        self.batch_seconds = Histogram("fastbert_batch_duration_seconds", "Model time per batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.texts = Counter("fastbert_texts", "Texts embedded", registry=r)
        self.tokens = Counter("fastbert_tokens", "Tokens embedded (after truncation)", registry=r)
        self.truncated = Counter("fastbert_truncated_texts", "Texts truncated to max_seq_length", registry=r)

    def observe_http(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, texts: int, tokens: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(tokens)
        self.batch_seconds.observe(seconds)

    def observe_request(self, texts: int, tokens: int, truncated: int) -> None:
        self.texts.inc(texts)
        self.tokens.inc(tokens)
        self.truncated.inc(truncated)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
