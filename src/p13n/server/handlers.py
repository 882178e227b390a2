"""How the service answers every error: OpenAI's error shape (which OpenAI clients show) with a
``detail`` like FastAPI's, and the status each kind of error deserves."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from p13n.data import RECORD_TYPES
from p13n.errors import (
    AdapterNotFoundError,
    IngestError,
    InsufficientDataError,
    LLMError,
    P13nError,
    QueueFullError,
    RateLimitedError,
    RateLimiterUnavailableError,
    TenantExistsError,
    UnknownTenantError,
    UnknownUserError,
)


def error_response(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """OpenAI's error shape, which OpenAI clients show, and a ``detail`` like FastAPI's."""
    # A message may quote the request; a lone surrogate in it could not be encoded as UTF-8.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}, "detail": message},
        status_code=status,
        headers=headers,
    )


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """The methods the OpenAPI schema of ``app`` documents at ``path``; None for a path it does
    not document."""
    templates: list[tuple[re.Pattern[str], list[str]]] | None = getattr(app.state, "_allow", None)
    if templates is None:
        templates = [
            (
                re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"),
                sorted(method.upper() for method in operations),
            )
            for template, operations in app.openapi()["paths"].items()
        ]
        app.state._allow = templates
    for pattern, methods in templates:
        if pattern.match(path):
            return methods
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Every error in the documented shape, with the status its kind deserves."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        methods = allowed_methods(app, request.url.path) if error.status_code == 405 else None
        if methods is not None:  # the route that matched knows only its own methods
            headers["Allow"] = ", ".join(methods)
            message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
            return error_response(405, message, "invalid_request_error", headers)
        return error_response(
            error.status_code, str(error.detail), "invalid_request_error", headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors()
        )
        return error_response(422, f"invalid request: {problems}", "invalid_request_error")

    @app.exception_handler(P13nError)
    async def p13n_error(request: Request, error: P13nError) -> JSONResponse:
        status, kind, headers = classify(error)
        message = (
            f"no user {error.user_id!r}" if isinstance(error, UnknownUserError) else str(error)
        )
        return error_response(status, message, kind, headers)


def _where(location: tuple[str | int, ...]) -> str:
    """A validation error's location as a reader names it: ``records[3] (document): field
    'text'`` for a record of a batch, else ``body.text`` or ``query.limit``."""
    parts = list(location)
    if parts[:2] == ["body", "records"] and len(parts) > 2 and isinstance(parts[2], int):
        where = f"records[{parts[2]}]"
        rest = parts[3:]
        if rest and rest[0] in RECORD_TYPES:
            where += f" ({rest[0]})"
            rest = rest[1:]
        return where + (f": field {'.'.join(map(str, rest))!r}" if rest else "")
    return ".".join(str(part) for part in parts)


def classify(error: P13nError) -> tuple[int, str, dict[str, str] | None]:
    """The HTTP status, error type and headers of a p13n error."""
    if isinstance(error, UnknownUserError | UnknownTenantError):
        return 404, "not_found", None
    if isinstance(error, QueueFullError):
        return 503, "overloaded", {"Retry-After": str(error.retry_after)}
    if isinstance(error, RateLimiterUnavailableError):
        return 503, "unavailable", None
    if isinstance(error, RateLimitedError):
        return 429, "rate_limited", {"Retry-After": str(error.retry_after)}
    if isinstance(error, TenantExistsError):
        return 409, "conflict", None
    if isinstance(error, AdapterNotFoundError):
        return 409, "no_adapter", None
    if isinstance(error, InsufficientDataError):
        return 409, "insufficient_data", None
    if isinstance(error, LLMError):
        return 502, "model_error", None
    if isinstance(error, IngestError):
        return 422, "invalid_request_error", None
    return 400, "invalid_request_error", None
