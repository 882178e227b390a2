"""Operations: liveness, readiness and Prometheus metrics (no key needed)."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from p13n.server.auth import get_state
from p13n.server.schemas.responses import GateOut, HealthOut, ReadyOut, errors

# Responses written by Python's json, as the API's are (see ``common.api_router``).
router = APIRouter(tags=["operations"], default_response_class=JSONResponse, responses=errors(500))


@router.get("/healthz")
async def health(request: Request) -> HealthOut:
    state = get_state(request)
    return HealthOut(
        status="ok",
        uptime_s=round(time.time() - state.started, 1),
        environment=state.config.environment,
        model_loaded=state.model_loaded,
        warmed_up=state.warmed,
        generation=GateOut(admitted=state.gate.admitted, waiting=state.gate.waiting),
    )


@router.get("/readyz", responses=errors(503))
async def ready(request: Request) -> ReadyOut:
    """Ready when the model, encoder and redaction engine are loaded and the store (and the
    rate limiter's Redis, if any) answers."""
    state = get_state(request)
    if state.warm_up_error is not None:
        raise HTTPException(503, f"warm-up failed: {state.warm_up_error}")
    if not state.warmed:
        raise HTTPException(503, "warming up (loading the model)")
    try:
        await run_in_threadpool(state.store.schema_revision)
    except Exception as error:  # any store failure means not ready, and says why
        raise HTTPException(503, f"store unavailable: {type(error).__name__}") from None
    await run_in_threadpool(state.limiter.check)
    return ReadyOut(status="ready")


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request) -> Response:
    state = get_state(request)
    body, content_type = state.metrics.exposition(state.gate)
    return Response(body, media_type=content_type)
