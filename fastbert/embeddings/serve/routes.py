"""The embedding server's endpoints and error handlers (FastAPI); the work is in
:class:`fastbert.embeddings.serve.server.EmbeddingService`, the wire format in :mod:`fastbert.embeddings.serve.api`."""
from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from .api import (ApiError, OpenAIEmbeddingsRequest, TEIEmbedRequest, error_response, openai_body, tei_body,
                  validation_message)
from .batcher import EmbedOptions

log = logging.getLogger("uvicorn.error")
_GONE = 499  # nginx's "client closed request": the answer nobody reads


def _json(body: bytes, truncated: int) -> Response:
    """A JSON answer; ``X-Truncated-Inputs`` says how many texts were cut to max_seq_length."""
    return Response(body, media_type="application/json", headers={"X-Truncated-Inputs": str(truncated)})


def _body_schema(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _parse(request: Request, model: type[BaseModel]):
    """The body as ``model``, read as JSON whatever its Content-Type says (``curl -d`` sends a form type)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as error:
        status, message, param = validation_message(error.errors(include_url=False))
        raise ApiError(status, message, param=param) from None


def add_routes(app: FastAPI, service) -> None:
    started = int(time.time())

    @app.post("/v1/embeddings", summary="OpenAI embeddings API", openapi_extra=_body_schema(OpenAIEmbeddingsRequest))
    async def openai_embeddings(request: Request) -> Response:
        body = await _parse(request, OpenAIEmbeddingsRequest)
        service.check_model(body.model)
        texts = [body.input] if isinstance(body.input, str) else body.input
        result = await service.embed(request.receive, texts, EmbedOptions(False, body.dimensions), param="input")
        if result is None:
            return Response(status_code=_GONE)
        return _json(openai_body(result.rows, body.model, body.encoding_format, result.tokens), result.truncated)

    @app.post("/embed", summary="text-embeddings-inference /embed", openapi_extra=_body_schema(TEIEmbedRequest))
    async def tei_embed(request: Request) -> Response:
        body = await _parse(request, TEIEmbedRequest)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        options = EmbedOptions(body.normalize, body.dimensions)
        result = await service.embed(request.receive, texts, options, truncation=body.truncate,
                                     prompt_name=body.prompt_name, param="inputs")
        if result is None:
            return Response(status_code=_GONE)
        return _json(tei_body(result.rows), result.truncated)

    @app.get("/v1/models", summary="the served model")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": service.settings.model_name, "object": "model",
                                            "created": started, "owned_by": "fastbert"}]}

    @app.get("/health", summary="200 once the model is loaded, 503 before")
    async def health() -> Response:
        if not service.ready:
            raise ApiError(503, "the model is still loading", "unhealthy", headers={"Retry-After": "1"})
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=service.metrics.content_type)


def add_error_handlers(app: FastAPI) -> None:
    """Every refusal in the API family's error shape, with one message."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return error_response(request.url.path, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        status, message, param = validation_message(list(error.errors()))
        return error_response(request.url.path, ApiError(status, message, param=param))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        kind = "not_found" if error.status_code in (404, 405) else "validation"
        message = {404: f"no endpoint {request.url.path}", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}"}.get(error.status_code, str(error.detail))
        return error_response(request.url.path, ApiError(error.status_code, message, kind, headers=error.headers))

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("fastbert: request failed")
        return error_response(request.url.path, ApiError(500, f"embedding failed: {type(error).__name__}: {error}",
                                                          "backend"))
