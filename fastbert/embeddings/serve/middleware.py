"""ASGI middleware of the embedding server, each one job, all answering in the API's error shape
(:func:`fastbert.embeddings.api.error_response`):

- :class:`RequestMetrics` counts every answer by endpoint and status and times it (outermost, so refusals count);
- :class:`ApiKeyGuard` answers 401 to a request without ``Authorization: Bearer KEY`` (``/health`` stays open
  for probes), before its body is read;
- :class:`BodyLimit` reads the body up to ``limit`` bytes and answers 413 past it (at once when Content-Length
  says so), so no request makes the server hold more than the limit; the body is then replayed to the app.
"""
from __future__ import annotations

import secrets
import time
from typing import Awaitable, Callable

from .api import ApiError, error_response

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestMetrics:
    """Calls ``observe(endpoint, status, seconds)`` once per HTTP answer; ``endpoint`` is the path when it is one of
    ``endpoints``, else ``"other"`` (unknown paths do not grow the label set). No answer (client gone): 499."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, int, float], None], endpoints: set[str]):
        self.app, self.observe, self.endpoints = app, observe, endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 499

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            path = scope["path"]
            self.observe(path if path in self.endpoints else "other", status, time.perf_counter() - start)


class ApiKeyGuard:
    """401 unless ``Authorization: Bearer <api_key>`` (compared in constant time); ``open_paths`` need no key."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str] = frozenset({"/health"})):
        self.app, self.expected, self.open_paths = app, f"Bearer {api_key}".encode(), open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open_paths:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                error = ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                                 "auth", headers={"WWW-Authenticate": "Bearer"})
                return await error_response(scope["path"], error)(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for a request body over ``limit`` bytes; otherwise the app gets the body as one message, then the
    connection's own messages (so the app still hears a client that disconnects)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    def _too_large(self, scope: Scope, size: str) -> ApiError:
        return ApiError(413, f"the request body is {size} bytes, more than the server's --payload-limit of "
                        f"{self.limit} bytes", "too_large")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await error_response(scope["path"], self._too_large(scope, declared.decode()))(scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left while sending: nobody to answer
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await error_response(scope["path"], self._too_large(scope, "over " + str(self.limit)))(
                    scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
