"""What the API's routers share: how they are built, how a request becomes records and is
written, and how a generation request becomes a personalizer's configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from p13n.data import Record, Sourced
from p13n.errors import ConfigError, IngestError, UnknownUserError
from p13n.ingest import ingest
from p13n.personalize import PersonalizerConfig
from p13n.server.auth import TenantScope
from p13n.server.bodies import JSONRoute
from p13n.server.schemas.requests import ChooseIn, GenerateIn
from p13n.server.schemas.responses import TypeCountsOut, WriteOut
from p13n.store import Store


def api_router(**options: Any) -> APIRouter:
    """A router of the API: bodies parsed strictly (``JSONRoute``), and responses written by
    ``JSONResponse`` (Python's ``json``, as every error is; FastAPI would otherwise write
    response models with pydantic's own JSON writer, which spells some floats differently)."""
    return APIRouter(route_class=JSONRoute, default_response_class=JSONResponse, **options)


def to_record(model: type[Record], values: dict[str, Any], where: str) -> Record:
    """``values`` (None for absent) as a record of ``model``, or an ``IngestError`` naming
    ``where`` and the first problem."""
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        problem = first["msg"].removeprefix("Value error, ")
        raise IngestError(where, None, field, f"{problem}{more}") from None


async def write(scope: TenantScope, records: Sequence[tuple[Record, str]]) -> WriteOut:
    """Redact (per the tenant's settings), then ingest as one transaction; at most
    ``write_concurrency`` writes run at once, the rest wait without holding a thread."""
    return await to_thread.run_sync(_write_now, scope, records, limiter=scope.state.write_limiter)


def _write_now(scope: TenantScope, records: Sequence[tuple[Record, str]]) -> WriteOut:
    state = scope.state
    sourced = [Sourced(record, where) for record, where in records]
    redactor = state.redactor(scope.tenant, scope.settings.redaction)
    cleaned, redacted = redactor.redact_batch(sourced)
    report = ingest(scope.store, cleaned, encoder=state.encoder)
    state.metrics.record_redactions(redacted)
    return WriteOut(
        records=report.records,
        written=report.written,
        embedded=report.embedded,
        counts={t: TypeCountsOut.model_validate(c) for t, c in report.counts.items()},
        redacted=redacted,
        ids=[r.record.id for r in cleaned],
    )


def require_user(store: Store, user_id: str) -> None:
    """``UnknownUserError`` for a user the store does not know."""
    if store.data_version(user_id) is None:
        raise UnknownUserError(user_id, store.tenant)


def personalizer_config(scope: TenantScope, body: GenerateIn | ChooseIn) -> PersonalizerConfig:
    """The server's default configuration with what ``body`` chooses, validated."""
    base = scope.state.config.defaults
    cap = scope.state.config.max_new_tokens
    asked = body.max_tokens if isinstance(body, GenerateIn) else None
    tokens = min(asked or base.generation.max_new_tokens, cap)
    retriever = base.retriever.model_copy(
        update={k: v for k, v in {"name": body.retriever, "k": body.k}.items() if v is not None}
    )
    update: dict[str, Any] = {
        "task": body.task,
        "retriever": retriever,
        "generation": base.generation.model_copy(update={"max_new_tokens": tokens}),
        "adapter": body.adapter,
    }
    if body.prompt is not None:
        update["prompt"] = body.prompt
    if body.query is not None:
        update["query"] = body.query
    if isinstance(body, GenerateIn) and body.decoding is not None:
        update["decoding"] = body.decoding
    if isinstance(body, GenerateIn) and body.steering is not None:
        update["steering"] = body.steering
    if body.policy is not None:
        update["policy"] = body.policy
    elif body.retriever is not None or body.k is not None or body.prompt is not None:
        update["policy"] = "fixed"  # what the request names is what it gets
    if body.level is not None:
        update["granularity"] = base.granularity.model_copy(update={"level": body.level})
    try:  # validated again: names of tasks, retrievers and builders are checked there
        return PersonalizerConfig.model_validate({**base.model_dump(), **_plain(update)})
    except ValidationError as error:
        raise ConfigError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from None


def _plain(update: dict[str, Any]) -> dict[str, Any]:
    return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in update.items()}
