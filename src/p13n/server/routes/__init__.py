"""The service's routers, one module each, in the order the app includes them (the order of
``/openapi.json``'s paths)."""

from __future__ import annotations

from fastapi import APIRouter

from p13n.server.routes import admin, dashboard, data, generation, openai_compatible, ops

ROUTERS: tuple[APIRouter, ...] = (
    data.router,
    generation.router,
    openai_compatible.router,
    admin.router,
    ops.router,
    dashboard.router,
)

__all__ = ["ROUTERS"]
