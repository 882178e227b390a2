"""The p13n service: a REST API over the store, personalized generation (with an
OpenAI-compatible endpoint), recommendation, feedback, tenants and keys, metrics, the dashboard.
Its routers are in ``p13n.server.routes``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from p13n.server.handlers import install_error_handlers
from p13n.server.metrics import Metrics
from p13n.server.middleware import Observer, PathGuard
from p13n.server.routes import ROUTERS
from p13n.server.schemas.fields import ATTRIBUTE_VALUE
from p13n.server.state import ServerConfig, ServerState
from p13n.store import Store


def create_app(config: ServerConfig | None = None, *, store: Store | None = None) -> FastAPI:
    """The service over ``config.store`` (or an open ``store``), with metrics of its own."""
    metrics = Metrics()
    state = ServerState(config or ServerConfig(), store, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In the background: the server answers /healthz (and /readyz with 503) meanwhile.
        warming = asyncio.create_task(asyncio.to_thread(state.warm_up))
        yield
        if not warming.done():
            await asyncio.wait([warming])  # its thread cannot be stopped; let it end first
        state.close()

    app = FastAPI(
        title="p13n",
        version="1",
        description="Personalize any LLM with a user's own data, and measure it.",
        lifespan=lifespan,
    )
    app.state.p13n = state
    install_error_handlers(app)
    app.add_middleware(PathGuard)
    # Outermost: counts every answer, refused paths too.
    app.add_middleware(Observer, metrics=metrics)
    for router in ROUTERS:
        app.include_router(router)
    _complete_openapi(app, state.config)
    return app


def _complete_openapi(app: FastAPI, config: ServerConfig) -> None:
    """The OpenAPI document with what models cannot state: the recursive component attributes
    refer to, and this server's batch limit."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document["components"]["schemas"]
            schemas["AttributeValue"] = ATTRIBUTE_VALUE
            schemas.pop("JsonValue", None)  # what attributes validate as, shown as AttributeValue
            schemas["BatchIn"]["properties"]["records"]["maxItems"] = config.max_batch_records
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]
