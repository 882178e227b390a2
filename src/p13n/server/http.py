"""The service's HTTP edges: how bodies are parsed, which paths are refused before routing, and
how every error is answered (OpenAI's error shape, with a ``detail`` like FastAPI's)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from p13n.adapt.base import InsufficientDataError
from p13n.adapt.registry import AdapterNotFoundError
from p13n.data import RECORD_TYPES
from p13n.data.models import lone_surrogate
from p13n.errors import IngestError, LLMError, P13nError, UnknownTenantError, UnknownUserError
from p13n.server.state import (
    QueueFullError,
    RateLimitedError,
    RateLimiterUnavailableError,
)
from p13n.server.tenants import TenantExistsError

logger = logging.getLogger(__name__)

MAX_BODY_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have."""


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


# ---------------------------------------------------------------------------- request bodies
class BodyError(HTTPException):
    """A request body that cannot be read as JSON (400), or holds what no JSON text should (422)."""


def parse_json_body(body: bytes) -> Any:
    """The JSON document of a body, or a ``BodyError`` saying exactly why there is none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BodyError(
            400, f"the body is not UTF-8: byte 0x{body[error.start]:02x} at offset {error.start}"
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BodyError(
            400, f"the body is not JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise BodyError(400, f"the body nests deeper than {MAX_BODY_DEPTH} levels") from None
    except ValueError:  # Python refuses to read integers of more than 4,300 digits
        raise BodyError(400, "the body holds an integer of more than 4,300 digits") from None
    _check_document(document)
    return document


def _check_document(document: Any) -> None:
    """Depth, and strings that are valid Unicode (JSON's ``\\ud800`` escapes can make lone
    surrogates, which no store can keep and no response can carry)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:  # iterative: a deep document must not exhaust the interpreter's stack
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_BODY_DEPTH:
                raise BodyError(400, f"the body nests deeper than {MAX_BODY_DEPTH} levels")
            if isinstance(node, dict):
                for key, child in node.items():
                    _check_string(document, key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, str):
            _check_string(document, node)


def _check_string(document: Any, value: str) -> None:
    position = lone_surrogate(value)
    if position is not None:
        raise BodyError(
            422,
            f"invalid request: {_locate(document, value)}: contains a lone UTF-16 surrogate "
            f"(U+{ord(value[position]):04X}) at position {position}: not valid Unicode",
        )


def _locate(document: Any, target: str) -> str:
    """Where in the (already checked for depth) document the string ``target`` is first found, as
    ``body.records[2].text``; only computed for an error message."""
    stack: list[tuple[str, Any]] = [("body", document)]
    while stack:
        path, node = stack.pop()
        if node is target:
            return path
        if isinstance(node, dict):
            for key, child in node.items():
                if key is target:
                    return f"a key in {path}"
                stack.append((f"{path}.{key}", child))
        elif isinstance(node, list):
            stack.extend((f"{path}[{n}]", child) for n, child in enumerate(node))
    return "body"


class JSONRequest(Request):
    """A request whose JSON body is read by ``parse_json_body``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JSONRoute(APIRoute):
    """Routes whose bodies are parsed strictly: a body that is not UTF-8 JSON, or nests too deep,
    is a 400 that says why (FastAPI's own says only "There was an error parsing the body")."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JSONRequest(request.scope, request.receive))

        return handle


# ------------------------------------------------------------------------------------ paths
class PathGuard:
    """Refuses an API path with an encoded ``/`` before routing: the router matches the decoded
    path, so ``/v1/users/victim%2Fdocuments%2Fvd1`` would reach user ``victim``'s document
    ``vd1`` rather than a user of that name. Ids cannot contain ``/`` (refused at ingest), so
    such a path never names anything. (The dashboard takes the rest of its user page's path as
    the id, and serves files only from inside its folders: it keeps its own checks.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _api_path(scope) and b"%2f" in scope["raw_path"].lower():
            response = error_response(
                400,
                "the path holds an encoded '/' (%2F): ids never contain '/', so it names "
                "nothing (and would otherwise reach another resource)",
                "invalid_request_error",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _api_path(scope: Scope) -> bool:
    """Whether the request is for the API, wherever the app is mounted; servers that do not
    give the raw path (it is optional in ASGI) cannot have it checked."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    relative = path[len(root) :] if root and path.startswith(root) else path
    return relative.startswith("/v1/") and bool(scope.get("raw_path"))


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


# ----------------------------------------------------------------------------------- errors
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
