"""The embedding server's wire format: OpenAI's and TEI's request bodies, their answers, and one error shape each.

- ``POST /v1/embeddings`` takes :class:`OpenAIEmbeddingsRequest` and answers :func:`openai_body` (OpenAI's
  embeddings API: ``input`` a string or a list of strings, ``encoding_format`` float or base64, ``dimensions``,
  ``usage.prompt_tokens``).
- ``POST /embed`` takes :class:`TEIEmbedRequest` and answers a JSON array of rows (text-embeddings-inference's
  ``/embed``).
- Errors: :class:`ApiError` (status, message, kind) renders as OpenAI's ``{"error": {"message", "type", "param",
  "code"}}`` under ``/v1/`` and as TEI's ``{"error", "error_type"}`` elsewhere, so each family's clients read
  the message they expect. :func:`validation_message` turns pydantic's errors into one sentence.
"""
from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError
from starlette.responses import JSONResponse, Response

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}
# Kinds of error: (TEI error_type, OpenAI error type, OpenAI code)
KINDS = {
    "validation": ("Validation", "invalid_request_error", None),
    "too_large": ("Validation", "invalid_request_error", "payload_too_large"),
    "overloaded": ("Overloaded", "rate_limit_error", "overloaded"),
    "unhealthy": ("Unhealthy", "server_error", "model_not_ready"),
    "auth": ("Unauthorized", "invalid_request_error", "invalid_api_key"),
    "not_found": ("NotFound", "invalid_request_error", "not_found"),
    "model_not_found": ("NotFound", "invalid_request_error", "model_not_found"),
    "backend": ("Backend", "server_error", None),
}


class ApiError(Exception):
    """An answer other than success: HTTP ``status``, a ``message`` that names the limit or the fault, a ``kind``
    of :data:`KINDS`, the request field at fault (``param``) and extra headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, kind: str = "validation", *, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


def error_response(path: str, error: ApiError) -> Response:
    """``error`` as the API family of ``path`` writes errors."""
    tei_type, openai_type, code = KINDS[error.kind]
    if path.startswith("/v1/"):
        body: Any = {"error": {"message": error.message, "type": openai_type, "param": error.param, "code": code}}
    else:
        body = {"error": error.message, "error_type": tei_type}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _texts(value: Any) -> str | list[str]:
    """A string or a list of strings, with a message naming the first item that is not."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise PydanticCustomError("texts", "must be a string or an array of strings, got {got}",
                                  {"got": _JSON_TYPES.get(type(value), type(value).__name__)})
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise PydanticCustomError(
                "texts", "item {index} is {got}, not a string (token-id input is not supported: send text)",
                {"index": i, "got": _JSON_TYPES.get(type(item), type(item).__name__)})
    return value


Texts = Annotated[
    str | list[str], PlainValidator(_texts),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})]
Dimensions = Annotated[int | None, Field(ge=1, description="keep the first N values (truncate_dim)")]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class OpenAIEmbeddingsRequest(_Strict):
    """OpenAI's ``POST /v1/embeddings`` body."""

    input: Texts
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions = None
    user: str | None = None


class TEIEmbedRequest(_Strict):
    """text-embeddings-inference's ``POST /embed`` body. ``truncate`` defaults to true, as ``fastbert encode``
    (TEI's own default is to refuse long inputs); only right truncation exists (as in sentence-transformers)."""

    inputs: Texts
    normalize: bool = True
    truncate: bool = True
    truncation_direction: Literal["Right"] = "Right"
    prompt_name: str | None = None
    dimensions: Dimensions = None


def validation_message(errors: list[dict]) -> tuple[int, str, str | None]:
    """pydantic/FastAPI request errors -> (status, one-sentence message, the field at fault). A body that is not
    JSON is 400, any other mistake 422."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error") or first.get("msg", "").removeprefix("Invalid JSON: ")
        return 400, f"the request body is not valid JSON: {reason}", None
    parts, param = [], None
    for error in errors[:3]:
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        param = param or (loc[0] if loc else None)
        if error.get("type") == "missing":
            parts.append(f"{where} is required" if where else "the request needs a JSON object body")
        elif error.get("type") == "extra_forbidden":
            parts.append(f"unknown field {where!r}")
        elif not where:
            parts.append(f"the request body must be a JSON object: {error.get('msg')}")
        else:
            parts.append(f"{where}: {error.get('msg')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return 422, "; ".join(parts) + more, param


def openai_body(rows: np.ndarray, model: str, encoding_format: str, prompt_tokens: int) -> bytes:
    """OpenAI's embeddings answer for float32 ``rows`` [N, D], as JSON bytes. ``float`` writes each float32 value as
    the shortest decimal of its float64 (reads back bit-exact); ``base64`` the little-endian float32 bytes."""
    if encoding_format == "base64":
        data = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
    else:
        data = rows.tolist()
    return json.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(data)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }).encode()


def tei_body(rows: np.ndarray) -> bytes:
    """TEI's ``/embed`` answer: float32 ``rows`` [N, D] as a JSON array of arrays."""
    return json.dumps(rows.tolist()).encode()
