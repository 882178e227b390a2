"""The app's ASGI middleware: ``PathGuard`` refuses paths that would reach the wrong resource
before routing, and ``Observer`` counts and times every answer (and answers an unhandled error
in the API's error shape)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from p13n.server.handlers import error_response
from p13n.server.metrics import Metrics

logger = logging.getLogger(__name__)


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


class Observer:
    """Counts every request by route template and status, and times it to its last byte. An
    unhandled error is logged, counted as a 500 and answered in the API's error shape (were it
    left to the server, it would bypass the counters and answer in plain text)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], _template(scope))
            if status is not None:  # the response had started: all that can be done is end it
                raise
            status = 500
            response = error_response(500, "internal error (logged on the server)", "server_error")
            await response(scope, receive, send)
        finally:
            self.metrics.record_request(
                scope["method"], _template(scope), status or 500, time.perf_counter() - started
            )


def _template(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"
