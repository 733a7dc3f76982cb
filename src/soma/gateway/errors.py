"""One error body for every failure: ``{"error": {"type", "message", "field"}}``.

Clients get what went wrong and where (the field path for bad input), never a stack trace:
unexpected exceptions are logged and answered with a request id by the hardening middleware.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from soma.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PackageRefused,
    PayloadTooLarge,
    QuotaExceeded,
    RateLimited,
    SomaError,
    SpecError,
    Unauthorized,
)


class EngineUnavailable(SomaError):
    """The durable engine (Temporal) is not connected, so project work cannot start or change."""


_STATUS: tuple[tuple[type[SomaError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (QuotaExceeded, 402),
    (PayloadTooLarge, 413),
    (SpecError, 422),
    (PackageRefused, 422),
    (RateLimited, 429),
    (EngineUnavailable, 503),
)

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    402: "quota_exceeded",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    503: "unavailable",
    504: "timeout",
}


def status_for(exc: SomaError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    kind = _HTTP_TYPES.get(status, "error")
    return {"error": {"type": kind, "message": message, "field": field}}


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(status, message, field), status_code=status, headers=headers)


def _console_page(request: Request, exc: Exception, status: int, message: str) -> Response | None:
    """A console page's error as HTML (see :mod:`soma.console.errors`); None for the API."""
    renderer = getattr(request.app.state, "console_errors", None)
    if renderer is None or not getattr(request.state, "console", False):
        return None
    page: Response = renderer(request, exc, status, message)
    return page


async def _soma_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SomaError)
    status = status_for(exc)
    page = _console_page(request, exc, status, str(exc))
    if page is not None:
        return page
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        # Capped: a request bigger than the whole bucket would otherwise wait forever (inf).
        headers["Retry-After"] = str(max(1, math.ceil(min(exc.retry_after_s, 86_400))))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="soma"'
    field = exc.field if isinstance(exc, SpecError) else None
    return error_response(status, str(exc), field, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(where) or None
    message = first.get("msg", "invalid request")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    text = f"{field or 'request'}: {message}{more}"
    return _console_page(request, exc, 422, text) or error_response(422, text, field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, str(exc.detail), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SomaError, _soma_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
