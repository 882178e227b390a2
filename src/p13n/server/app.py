"""The p13n service: a REST API over the store, personalized generation (with an
OpenAI-compatible endpoint), recommendation, feedback, tenants and keys, metrics, the dashboard."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from anyio import CancelScope, to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask

from p13n.data import RECORD_TYPES, Document, Interaction, Item, Preference, Record, User
from p13n.datasets.source import Sourced
from p13n.errors import ConfigError, IngestError, LLMError, P13nError, UnknownUserError
from p13n.ingest import ingest
from p13n.llm import Completion
from p13n.personalize import Generation, Personalizer, PersonalizerConfig, PreparedPrompt
from p13n.privacy.export import export_user
from p13n.server import metrics
from p13n.server.auth import TenantScope, get_state, require_admin, require_tenant
from p13n.server.http import JSONRoute, PathGuard, install_error_handlers
from p13n.server.llm_api import chunk_event, completion_object
from p13n.server.schemas import (
    ATTRIBUTE_VALUE,
    AUTH_ERRORS,
    COMMON_ERRORS,
    BatchIn,
    ChatCompletionIn,
    DocumentIn,
    FeedbackIn,
    GenerateIn,
    InteractionIn,
    ItemIn,
    KeyIn,
    PathId,
    PathTenant,
    PreferenceIn,
    RecommendIn,
    Strict,
    TenantIn,
    UserIn,
    errors,
)
from p13n.server.state import (
    Admission,
    QueueFullError,
    ServerConfig,
    ServerState,
)
from p13n.server.tenants import ApiKey, Tenant, TenantSettings
from p13n.store import MAX_OFFSET, Store

TenantDep = Annotated[TenantScope, Depends(require_tenant)]


# ------------------------------------------------------------------------------- helpers
def _record(model: type[Record], values: dict[str, Any], where: str) -> Record:
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        problem = first["msg"].removeprefix("Value error, ")
        raise IngestError(where, None, field, f"{problem}{more}") from None


async def _write(scope: TenantScope, records: Sequence[tuple[Record, str]]) -> dict[str, Any]:
    """Redact (per the tenant's settings), then ingest as one transaction; at most
    ``write_concurrency`` writes run at once, the rest wait without holding a thread."""
    return await to_thread.run_sync(_write_now, scope, records, limiter=scope.state.write_limiter)


def _write_now(scope: TenantScope, records: Sequence[tuple[Record, str]]) -> dict[str, Any]:
    state = scope.state
    sourced = [Sourced(record, where) for record, where in records]
    redactor = state.redactor(scope.tenant, scope.settings.redaction)
    cleaned, redacted = redactor.redact_batch(sourced)
    report = ingest(scope.store, cleaned, encoder=state.encoder)
    metrics.record_redactions(redacted)
    return {
        "records": report.records,
        "written": report.written,
        "embedded": report.embedded,
        "counts": {t: vars(c) for t, c in report.counts.items()},
        "redacted": redacted,
        "ids": [r.record.id for r in cleaned],
    }


def _require_user(store: Store, user_id: str) -> None:
    if store.data_version(user_id) is None:
        raise UnknownUserError(user_id, store.tenant)


def _dump(record: Record) -> dict[str, Any]:
    return {"type": record.record_type, **record.model_dump(mode="json")}


def _personalizer_config(scope: TenantScope, body: GenerateIn) -> PersonalizerConfig:
    base = scope.state.config.defaults
    cap = scope.state.config.max_new_tokens
    tokens = min(body.max_tokens or base.generation.max_new_tokens, cap)
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


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


# ------------------------------------------------------------------------------- routes
data = APIRouter(
    prefix="/v1",
    tags=["data"],
    route_class=JSONRoute,
    responses=errors(*AUTH_ERRORS, *COMMON_ERRORS),
)


@data.post("/users", status_code=201)
async def put_user(body: UserIn, scope: TenantDep) -> dict[str, Any]:
    """Create a user, or replace their attributes."""
    record = _record(User, body.model_dump(), "user")
    return await _write(scope, [(record, "user")])


@data.get("/users")
def list_users(
    scope: TenantDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    summaries = scope.store.list_users(limit=limit, offset=offset)
    return {
        "total": scope.store.count_users(),
        "users": [{**s.user.model_dump(mode="json"), "counts": vars(s.counts)} for s in summaries],
    }


@data.get("/users/{user_id}", responses=errors(404))
def get_user(user_id: PathId, scope: TenantDep) -> dict[str, Any]:
    user = scope.store.get_user(user_id)
    if user is None:
        raise UnknownUserError(user_id, scope.tenant)
    return {
        **user.model_dump(mode="json"),
        "counts": vars(scope.store.user_counts(user_id)),
        "personas": scope.store.personas_of(user_id),
        "adapters": [a.adapter_id for a in scope.store.adapters(user_id=user_id)],
    }


@data.delete("/users/{user_id}", responses=errors(404))
def forget_user(user_id: PathId, scope: TenantDep) -> dict[str, Any]:
    """Forget a user: every row (documents, vectors, interactions, preferences, memberships,
    summaries, adapters) and every in-memory cache of them."""
    _require_user(scope.store, user_id)
    adapters = scope.store.adapters(user_id=user_id)
    deleted = scope.store.forget(user_id)
    left_on_disk = scope.store.scrub()
    cleared = scope.state.forget_caches(scope.tenant, user_id, adapters)
    return {
        "user": user_id,
        "deleted": deleted,
        "caches_cleared": cleared,
        "left_on_disk": left_on_disk,
    }


@data.get("/users/{user_id}/export", responses=errors(404))
def export(user_id: PathId, scope: TenantDep) -> dict[str, Any]:
    """Everything stored about the user, as JSON."""
    return export_user(scope.store, user_id)


def _per_user_routes(kind: str, model: type[Record], body_model: type[Strict]) -> None:
    plural = f"{kind}s"

    async def create(user_id: PathId, body: Any, scope: TenantDep) -> dict[str, Any]:
        record = _record(model, {**body.model_dump(), "user_id": user_id}, kind)
        return await _write(scope, [(record, kind)])

    create.__annotations__["body"] = body_model
    data.add_api_route(
        f"/users/{{user_id}}/{plural}",
        create,
        methods=["POST"],
        status_code=201,
        name=f"add_{kind}",
        summary=f"Add a {kind} of the user",
    )

    def listing(
        user_id: str,
        scope: TenantDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        _require_user(scope.store, user_id)
        records = _read(scope.store, kind, user_id, limit)
        return {plural: [r.model_dump(mode="json") for r in records]}

    data.add_api_route(
        f"/users/{{user_id}}/{plural}",
        listing,
        methods=["GET"],
        name=f"list_{plural}",
        responses=errors(404),
        summary=f"The user's {plural}, newest first",
    )

    def one(user_id: PathId, record_id: PathId, scope: TenantDep) -> dict[str, Any]:
        _require_user(scope.store, user_id)
        for record in _read(scope.store, kind, user_id, None):
            if record.id == record_id:
                return record.model_dump(mode="json")
        raise HTTPException(404, f"user {user_id!r} has no {kind} {record_id!r}")

    data.add_api_route(
        f"/users/{{user_id}}/{plural}/{{record_id}}",
        one,
        methods=["GET"],
        name=f"get_{kind}",
        responses=errors(404),
        summary=f"One {kind} of the user",
    )

    def remove(user_id: PathId, record_id: PathId, scope: TenantDep) -> dict[str, Any]:
        _require_user(scope.store, user_id)
        deleted = scope.store.delete_records(user_id, kind, [record_id])
        if not deleted:
            raise HTTPException(404, f"user {user_id!r} has no {kind} {record_id!r}")
        return {"deleted": deleted, "left_on_disk": scope.store.scrub()}

    data.add_api_route(
        f"/users/{{user_id}}/{plural}/{{record_id}}",
        remove,
        methods=["DELETE"],
        name=f"delete_{kind}",
        responses=errors(404),
        summary=f"Delete one {kind} of the user",
    )


def _read(store: Store, kind: str, user_id: str, limit: int | None) -> Sequence[Record]:
    if kind == "document":
        return store.documents(user_id, limit=limit)
    if kind == "interaction":
        return store.interactions(user_id, limit=limit)
    return store.preferences(user_id)[:limit]


_per_user_routes("document", Document, DocumentIn)
_per_user_routes("interaction", Interaction, InteractionIn)
_per_user_routes("preference", Preference, PreferenceIn)


@data.post("/items", status_code=201)
async def put_item(body: ItemIn, scope: TenantDep) -> dict[str, Any]:
    """Add or replace a catalog item."""
    record = _record(Item, body.model_dump(), "item")
    return await _write(scope, [(record, "item")])


@data.get("/items/{item_id}", responses=errors(404))
def get_item(item_id: PathId, scope: TenantDep) -> dict[str, Any]:
    found = scope.store.items([item_id])
    if not found:
        raise HTTPException(404, f"no item {item_id!r}")
    return found[0].model_dump(mode="json")


@data.delete("/items/{item_id}", responses=errors(404))
def delete_item(item_id: PathId, scope: TenantDep) -> dict[str, Any]:
    """Remove an item (and its vectors) from the catalog; interactions with it stay."""
    if not scope.store.delete_items([item_id]):
        raise HTTPException(404, f"no item {item_id!r}")
    return {"deleted": 1}


@data.post("/ingest", status_code=201)
async def ingest_batch(body: BatchIn, scope: TenantDep) -> dict[str, Any]:
    """A batch of records, all or nothing: one bad record rejects the batch, naming it."""
    limit = scope.state.config.max_batch_records
    if len(body.records) > limit:
        raise IngestError(
            "records", None, None, f"a batch holds at most {limit} records, not {len(body.records)}"
        )
    records: list[tuple[Record, str]] = []
    for index, given in enumerate(body.records):
        where = f"records[{index}]"
        fields = given.model_dump(exclude={"type"})
        record = _record(RECORD_TYPES[given.type], fields, f"{where} ({given.type})")
        records.append((record, where))
    return await _write(scope, records)


generation = APIRouter(
    prefix="/v1",
    tags=["personalization"],
    route_class=JSONRoute,
    responses=errors(*AUTH_ERRORS, *COMMON_ERRORS),
)


@generation.post("/generate", responses=errors(404, 409, 502, 503))
async def generate(body: GenerateIn, scope: TenantDep) -> Any:
    """A personalized answer with its trace (what was retrieved, the prompt, the level, the
    model, timings); ``compare`` adds the non-personalized answer; ``stream`` sends server-sent
    events: text pieces, then the trace."""
    state = scope.state
    if body.stream and body.compare:
        raise ConfigError("stream and compare cannot be combined")
    config = _personalizer_config(scope, body)
    personalizer = await run_in_threadpool(state.personalizer, scope.tenant, config)
    attributes = body.attributes or None
    if body.stream:
        return await _stream_generation(state, personalizer, body, attributes)
    async with state.gate.slot():
        if body.compare:
            baseline, personal = await run_in_threadpool(
                personalizer.compare, body.user, body.input, attributes=attributes
            )
            return {"baseline": baseline.to_dict(), "personalized": personal.to_dict()}
        result: Generation = await run_in_threadpool(
            personalizer.generate,
            body.user,
            body.input,
            personalize=body.personalize,
            attributes=attributes,
        )
    return result.to_dict()


async def _stream_generation(
    state: ServerState,
    personalizer: Personalizer,
    body: GenerateIn,
    attributes: dict[str, str] | None,
) -> StreamingResponse:
    # The prompt is prepared (and an unknown user refused) before the response starts.
    prepared = await run_in_threadpool(
        partial(personalizer.prepare, personalize=body.personalize, attributes=attributes),
        body.user,
        body.input,
    )

    admission = state.gate.admit()  # a full queue is still a 503 here, before the response starts

    async def events() -> AsyncIterator[str]:
        try:
            async with admission.slot():
                async for item in _drained(partial(personalizer.complete_stream, prepared)):
                    if isinstance(item, Generation):
                        yield _sse({"trace": item.trace.to_dict()})
                    else:
                        yield _sse({"delta": item})
        except P13nError as error:  # the status is sent already: the error is the last event
            yield _stream_error(error)
        yield "data: [DONE]\n\n"

    # The place is given back when the stream ends, or after the response if it never began.
    return StreamingResponse(
        events(), media_type="text/event-stream", background=BackgroundTask(admission.release)
    )


def _stream_error(error: P13nError) -> str:
    """An error inside a started stream, in the shape OpenAI's clients read from a stream."""
    kind = (
        "overloaded"
        if isinstance(error, QueueFullError)
        else "model_error"
        if isinstance(error, LLMError)
        else "error"
    )
    return _sse({"error": {"message": str(error), "type": kind, "param": None, "code": None}})


_END = object()
T = TypeVar("T")


async def _drained(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """The items of ``make()``, made and consumed in one worker thread (the iterator may hold a
    thread's lock across items, as a user's adapter does), passed on as they come. When the
    consumer stops early (the client went away), the iterator is closed in its thread, which
    stops the model."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        iterator: Iterator[T] | None = None
        try:
            iterator = make()
            for item in iterator:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as error:  # raised again in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    worker = loop.run_in_executor(None, run)
    try:
        while (item := await queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        with CancelScope(shield=True):  # even when cancelled: the model is free before the slot
            await worker


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@generation.post("/recommend", responses=errors(404, 502, 503))
async def recommend(body: RecommendIn, scope: TenantDep) -> dict[str, Any]:
    """The user's top-k unseen items from the tenant's interactions; a user without
    interactions gets the most popular items (``fallback`` says so); ``explain`` adds why."""
    await run_in_threadpool(_require_user, scope.store, body.user)
    state = scope.state
    fitted = await run_in_threadpool(state.recommender, scope.tenant, body.model)
    texts = None
    if body.explain:
        from p13n.recommend.llm import LLMTexts

        texts = LLMTexts(state.llm)
        async with state.gate.slot():
            result = await run_in_threadpool(fitted.recommend, body.user, body.k, texts=texts)
    else:
        result = await run_in_threadpool(fitted.recommend, body.user, body.k)
    return {
        "user": result.user_id,
        "model": result.model,
        "fallback": result.fallback,
        "history": result.history,
        "items": [
            {
                "item_id": r.item.id,
                "title": r.item.title,
                "score": r.score,
                "explanation": None if r.explanation is None else r.explanation.text,
            }
            for r in result.items
        ],
        "notes": result.notes,
    }


@generation.post("/feedback", status_code=201, responses=errors(404))
async def feedback(body: FeedbackIn, scope: TenantDep) -> dict[str, Any]:
    """Feedback on an answer (a preference pair, for DPO) or on an item (a rating)."""
    pair = (body.prompt, body.chosen, body.rejected)
    rating = (body.item_id, body.rating)
    if all(v is not None for v in pair) and all(v is None for v in rating):
        record: Record = _record(
            Preference,
            {
                "user_id": body.user,
                "prompt": body.prompt,
                "chosen": body.chosen,
                "rejected": body.rejected,
                "timestamp": datetime.now(UTC),
            },
            "feedback",
        )
    elif all(v is not None for v in rating) and all(v is None for v in pair):
        record = _record(
            Interaction,
            {
                "user_id": body.user,
                "item_id": body.item_id,
                "kind": "rating",
                "value": body.rating,
                "timestamp": datetime.now(UTC),
            },
            "feedback",
        )
    else:
        raise ConfigError(
            "feedback is either prompt + chosen + rejected (a preference pair) "
            "or item_id + rating, not a mix"
        )
    await run_in_threadpool(_require_user, scope.store, body.user)
    return await _write(scope, [(record, "feedback")])


openai_compatible = APIRouter(
    prefix="/v1",
    tags=["openai"],
    route_class=JSONRoute,
    responses=errors(*AUTH_ERRORS, *COMMON_ERRORS),
)


@openai_compatible.get("/models")
async def models(scope: TenantDep) -> dict[str, Any]:
    name = scope.state.config.llm.model or "p13n"
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "p13n"}]}


@openai_compatible.post("/chat/completions", responses=errors(409, 502, 503))
async def chat_completions(body: ChatCompletionIn, scope: TenantDep) -> Any:
    """OpenAI's chat completions, personalized for ``user`` with their data (retrieval, the
    configured prompt builder, their adapter if the server is configured with one). The
    user's last message is the input; earlier turns reach the answer through retrieval, since
    each turn is stored as the user's data (``store: false`` turns that off)."""
    if not body.user:
        raise ConfigError("pass `user` (the end user's id): p13n personalizes for that user")
    said = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
    if not said.strip():
        raise ConfigError("the conversation has no user message to answer")
    state = scope.state
    adapter = state.config.chat_adapter
    if adapter != "none" and not await run_in_threadpool(
        partial(scope.store.adapters, user_id=body.user, task="chat", method=adapter)
    ):
        adapter = "none"
    request = GenerateIn(
        user=body.user,
        input=said[:100_000],
        max_tokens=body.max_completion_tokens or body.max_tokens,
        adapter=adapter,
    )
    config = _personalizer_config(scope, request)
    personalizer = await run_in_threadpool(state.personalizer, scope.tenant, config)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        prepared = await run_in_threadpool(personalizer.prepare, body.user, said)
        admission = state.gate.admit()  # a full queue is still a 503, before the response starts
        chunks = _chat_chunks(
            scope, body, said, personalizer, prepared, admission, completion_id, created
        )
        return StreamingResponse(
            chunks, media_type="text/event-stream", background=BackgroundTask(admission.release)
        )
    async with state.gate.slot():
        result: Generation = await run_in_threadpool(personalizer.generate, body.user, said)
    stored = await _store_turn(scope, body, said, result)
    extra = {"trace": result.trace.to_dict(), "stored": stored}
    trace = result.trace
    completion = Completion(
        text=result.text,
        prompt_tokens=trace.prompt_tokens,
        completion_tokens=trace.completion_tokens,
        finish_reason=trace.finish_reason,
        model=trace.model,
    )
    return {**completion_object(completion_id, created, completion), "p13n": extra}


async def _store_turn(
    scope: TenantScope, body: ChatCompletionIn, said: str, result: Generation
) -> dict[str, Any] | None:
    """The user's turn as their document (the reply in its metadata), unless ``store`` is off."""
    if not body.store:
        return None
    turn = _record(
        Document,
        {
            "user_id": body.user,
            "kind": "chat",
            "text": said,
            "timestamp": datetime.now(UTC),
            "metadata": {"reply": result.text},
        },
        "chat turn",
    )
    return await _write(scope, [(turn, "chat")])


async def _chat_chunks(
    scope: TenantScope,
    body: ChatCompletionIn,
    said: str,
    personalizer: Personalizer,
    prepared: PreparedPrompt,
    admission: Admission,
    completion_id: str,
    created: int,
) -> AsyncIterator[str]:
    """OpenAI's chunks as the model decodes; the last one carries the trace and the stored turn
    (the ``p13n`` field)."""
    model = personalizer.llm.model
    yield chunk_event(completion_id, created, model, {"role": "assistant", "content": ""})
    result: Generation | None = None
    try:
        async with admission.slot():
            async for item in _drained(partial(personalizer.complete_stream, prepared)):
                if isinstance(item, Generation):
                    result = item
                else:
                    yield chunk_event(completion_id, created, model, {"content": item})
    except P13nError as error:  # the status is sent already: the error is the last event
        yield _stream_error(error)
        return
    assert result is not None  # complete_stream ends with the Generation
    stored = await _store_turn(scope, body, said, result)
    extra = {"trace": result.trace.to_dict(), "stored": stored}
    yield chunk_event(completion_id, created, model, {}, result.trace.finish_reason, p13n=extra)
    yield "data: [DONE]\n\n"


admin = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    route_class=JSONRoute,
    responses=errors(*AUTH_ERRORS, 400, 422, 500),
)


def _tenant_out(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "settings": tenant.settings.model_dump(mode="json"),
        "created_at": tenant.created_at.isoformat(),
    }


def _key_out(key: ApiKey) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "tenant": key.tenant,
        "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
    }


def _checked(settings: TenantSettings) -> TenantSettings:
    """Settings that will work: a redaction asking for what cannot run here is refused now,
    not at the tenant's first ingest."""
    from p13n.privacy.redact import Redactor

    Redactor(settings.redaction)
    return settings


@admin.post("/tenants", status_code=201, responses=errors(409))
def create_tenant(body: TenantIn, request: Request) -> dict[str, Any]:
    settings = _checked(body.settings)
    return _tenant_out(get_state(request).tenants.create_tenant(body.name, settings))


@admin.get("/tenants")
def list_tenants(request: Request) -> dict[str, Any]:
    return {"tenants": [_tenant_out(t) for t in get_state(request).tenants.tenants()]}


@admin.put("/tenants/{tenant}", responses=errors(404))
def update_tenant(tenant: PathTenant, body: TenantSettings, request: Request) -> dict[str, Any]:
    settings = _checked(body)
    return _tenant_out(get_state(request).tenants.update_tenant(tenant, settings))


@admin.post("/tenants/{tenant}/keys", status_code=201, responses=errors(404))
def create_key(tenant: PathTenant, body: KeyIn, request: Request) -> dict[str, Any]:
    """A new API key for the tenant; the key is shown only in this response."""
    key, record = get_state(request).tenants.create_key(tenant, body.label)
    return {"key": key, **_key_out(record)}


@admin.get("/tenants/{tenant}/keys", responses=errors(404))
def list_keys(tenant: PathTenant, request: Request) -> dict[str, Any]:
    return {"keys": [_key_out(k) for k in get_state(request).tenants.keys(tenant)]}


@admin.delete("/keys/{key_id}", responses=errors(404))
def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    if not get_state(request).tenants.revoke(key_id):
        raise HTTPException(404, f"no live key {key_id!r}")
    return {"revoked": key_id}


ops = APIRouter(tags=["operations"], responses=errors(500))


@ops.get("/healthz")
async def health(request: Request) -> dict[str, Any]:
    from p13n.server.state import describe

    return describe(get_state(request))


@ops.get("/readyz", responses=errors(503))
async def ready(request: Request) -> dict[str, Any]:
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
    return {"status": "ready"}


@ops.get("/metrics", include_in_schema=False)
async def prometheus(request: Request) -> Response:
    body, content_type = metrics.exposition(get_state(request))
    return Response(body, media_type=content_type)


# ------------------------------------------------------------------------------- the app
def create_app(config: ServerConfig | None = None, *, store: Store | None = None) -> FastAPI:
    """The service over ``config.store`` (or an open ``store``)."""
    state = ServerState(config or ServerConfig(), store)

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
    app.add_middleware(metrics.Observer)  # outermost: counts every answer, refused paths too
    for router in (data, generation, openai_compatible, admin, ops):
        app.include_router(router)
    from p13n.server.dashboard import dashboard

    app.include_router(dashboard)
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
