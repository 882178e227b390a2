"""How the API reads request bodies: strictly, as UTF-8 JSON no deeper than ``MAX_BODY_DEPTH``
and holding only valid Unicode, and with a 400 or 422 that says exactly what is wrong."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from p13n.data.models import lone_surrogate

MAX_BODY_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have."""


# An HTTPException, and so not in p13n.errors: FastAPI passes an HTTPException raised while it
# reads a body on as it is, and turns any other error into "There was an error parsing the body".
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
