"""The tenant's data: users, each user's documents, interactions and preferences, the item
catalog, batches of records, and forgetting and exporting a user."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException

from p13n.data import RECORD_TYPES, Document, Interaction, Item, Preference, Record, User
from p13n.errors import IngestError, UnknownUserError
from p13n.privacy.export import export_user
from p13n.server.deps import Limit, Offset, TenantDep
from p13n.server.routes.common import api_router, require_user, to_record, write
from p13n.server.schemas.fields import PathId
from p13n.server.schemas.requests import (
    BatchIn,
    DocumentIn,
    InteractionIn,
    ItemIn,
    PreferenceIn,
    UserIn,
)
from p13n.server.schemas.responses import (
    AUTH_ERRORS,
    COMMON_ERRORS,
    DocumentOut,
    DocumentsOut,
    ExportOut,
    ForgottenOut,
    InteractionOut,
    InteractionsOut,
    ItemDeletedOut,
    ItemOut,
    PreferenceOut,
    PreferencesOut,
    RecordDeletedOut,
    UserCountsOut,
    UserOut,
    UsersOut,
    UserSummaryOut,
    WriteOut,
    errors,
)
from p13n.store import Store

router = api_router(prefix="/v1", tags=["data"], responses=errors(*AUTH_ERRORS, *COMMON_ERRORS))


# ---------------------------------------------------------------------------------- users
@router.post("/users", status_code=201)
async def put_user(body: UserIn, scope: TenantDep) -> WriteOut:
    """Create a user, or replace their attributes."""
    record = to_record(User, body.model_dump(), "user")
    return await write(scope, [(record, "user")])


@router.get("/users")
def list_users(scope: TenantDep, limit: Limit = 100, offset: Offset = 0) -> UsersOut:
    summaries = scope.store.list_users(limit=limit, offset=offset)
    return UsersOut(
        total=scope.store.count_users(),
        users=[
            UserSummaryOut(
                id=s.user.id,
                attributes=s.user.attributes,
                counts=UserCountsOut.model_validate(s.counts),
            )
            for s in summaries
        ],
    )


@router.get("/users/{user_id}", responses=errors(404))
def get_user(user_id: PathId, scope: TenantDep) -> UserOut:
    user = scope.store.get_user(user_id)
    if user is None:
        raise UnknownUserError(user_id, scope.tenant)
    return UserOut(
        id=user.id,
        attributes=user.attributes,
        counts=UserCountsOut.model_validate(scope.store.user_counts(user_id)),
        personas=scope.store.personas_of(user_id),
        adapters=[a.adapter_id for a in scope.store.adapters(user_id=user_id)],
    )


@router.delete("/users/{user_id}", responses=errors(404))
def forget_user(user_id: PathId, scope: TenantDep) -> ForgottenOut:
    """Forget a user: every row (documents, vectors, interactions, preferences, memberships,
    summaries, adapters) and every in-memory cache of them."""
    require_user(scope.store, user_id)
    adapters = scope.store.adapters(user_id=user_id)
    deleted = scope.store.forget(user_id)
    left_on_disk = scope.store.scrub()
    cleared = scope.state.forget_caches(scope.tenant, user_id, adapters)
    return ForgottenOut(
        user=user_id, deleted=deleted, caches_cleared=cleared, left_on_disk=left_on_disk
    )


# Only the fields the export holds are sent (``notes`` only when there are some).
@router.get("/users/{user_id}/export", responses=errors(404), response_model_exclude_unset=True)
def export(user_id: PathId, scope: TenantDep) -> ExportOut:
    """Everything stored about the user, as JSON."""
    return ExportOut.model_validate(export_user(scope.store, user_id))


# ------------------------------------------------ the user's documents, interactions, preferences
def _all(store: Store, kind: str, user_id: str) -> Sequence[Record]:
    if kind == "document":
        return store.documents(user_id, limit=None)
    if kind == "interaction":
        return store.interactions(user_id, limit=None)
    return store.preferences(user_id)


def _find(store: Store, kind: str, user_id: str, record_id: str) -> Record:
    require_user(store, user_id)
    for record in _all(store, kind, user_id):
        if record.id == record_id:
            return record
    raise HTTPException(404, f"user {user_id!r} has no {kind} {record_id!r}")


def _delete(store: Store, kind: str, user_id: str, record_id: str) -> RecordDeletedOut:
    require_user(store, user_id)
    deleted = store.delete_records(user_id, kind, [record_id])
    if not deleted:
        raise HTTPException(404, f"user {user_id!r} has no {kind} {record_id!r}")
    return RecordDeletedOut(deleted=deleted, left_on_disk=store.scrub())


# The operations' summaries name them; their functions have no docstrings, which would become
# descriptions. A listing's user_id is a plain string (a path id elsewhere).
@router.post("/users/{user_id}/documents", status_code=201, summary="Add a document of the user")
async def add_document(user_id: PathId, body: DocumentIn, scope: TenantDep) -> WriteOut:
    record = to_record(Document, {**body.model_dump(), "user_id": user_id}, "document")
    return await write(scope, [(record, "document")])


@router.get(
    "/users/{user_id}/documents",
    responses=errors(404),
    summary="The user's documents, newest first",
)
def list_documents(user_id: str, scope: TenantDep, limit: Limit = 100) -> DocumentsOut:
    require_user(scope.store, user_id)
    documents = scope.store.documents(user_id, limit=limit)
    return DocumentsOut(documents=[DocumentOut.model_validate(d) for d in documents])


@router.get(
    "/users/{user_id}/documents/{record_id}",
    responses=errors(404),
    summary="One document of the user",
)
def get_document(user_id: PathId, record_id: PathId, scope: TenantDep) -> DocumentOut:
    return DocumentOut.model_validate(_find(scope.store, "document", user_id, record_id))


@router.delete(
    "/users/{user_id}/documents/{record_id}",
    responses=errors(404),
    summary="Delete one document of the user",
)
def delete_document(user_id: PathId, record_id: PathId, scope: TenantDep) -> RecordDeletedOut:
    return _delete(scope.store, "document", user_id, record_id)


@router.post(
    "/users/{user_id}/interactions", status_code=201, summary="Add a interaction of the user"
)
async def add_interaction(user_id: PathId, body: InteractionIn, scope: TenantDep) -> WriteOut:
    record = to_record(Interaction, {**body.model_dump(), "user_id": user_id}, "interaction")
    return await write(scope, [(record, "interaction")])


@router.get(
    "/users/{user_id}/interactions",
    responses=errors(404),
    summary="The user's interactions, newest first",
)
def list_interactions(user_id: str, scope: TenantDep, limit: Limit = 100) -> InteractionsOut:
    require_user(scope.store, user_id)
    interactions = scope.store.interactions(user_id, limit=limit)
    return InteractionsOut(interactions=[InteractionOut.model_validate(i) for i in interactions])


@router.get(
    "/users/{user_id}/interactions/{record_id}",
    responses=errors(404),
    summary="One interaction of the user",
)
def get_interaction(user_id: PathId, record_id: PathId, scope: TenantDep) -> InteractionOut:
    return InteractionOut.model_validate(_find(scope.store, "interaction", user_id, record_id))


@router.delete(
    "/users/{user_id}/interactions/{record_id}",
    responses=errors(404),
    summary="Delete one interaction of the user",
)
def delete_interaction(user_id: PathId, record_id: PathId, scope: TenantDep) -> RecordDeletedOut:
    return _delete(scope.store, "interaction", user_id, record_id)


@router.post(
    "/users/{user_id}/preferences", status_code=201, summary="Add a preference of the user"
)
async def add_preference(user_id: PathId, body: PreferenceIn, scope: TenantDep) -> WriteOut:
    record = to_record(Preference, {**body.model_dump(), "user_id": user_id}, "preference")
    return await write(scope, [(record, "preference")])


@router.get(
    "/users/{user_id}/preferences",
    responses=errors(404),
    summary="The user's preferences, newest first",
)
def list_preferences(user_id: str, scope: TenantDep, limit: Limit = 100) -> PreferencesOut:
    require_user(scope.store, user_id)
    preferences = scope.store.preferences(user_id)[:limit]
    return PreferencesOut(preferences=[PreferenceOut.model_validate(p) for p in preferences])


@router.get(
    "/users/{user_id}/preferences/{record_id}",
    responses=errors(404),
    summary="One preference of the user",
)
def get_preference(user_id: PathId, record_id: PathId, scope: TenantDep) -> PreferenceOut:
    return PreferenceOut.model_validate(_find(scope.store, "preference", user_id, record_id))


@router.delete(
    "/users/{user_id}/preferences/{record_id}",
    responses=errors(404),
    summary="Delete one preference of the user",
)
def delete_preference(user_id: PathId, record_id: PathId, scope: TenantDep) -> RecordDeletedOut:
    return _delete(scope.store, "preference", user_id, record_id)


# ---------------------------------------------------------------------------------- items
@router.post("/items", status_code=201)
async def put_item(body: ItemIn, scope: TenantDep) -> WriteOut:
    """Add or replace a catalog item."""
    record = to_record(Item, body.model_dump(), "item")
    return await write(scope, [(record, "item")])


@router.get("/items/{item_id}", responses=errors(404))
def get_item(item_id: PathId, scope: TenantDep) -> ItemOut:
    found = scope.store.items([item_id])
    if not found:
        raise HTTPException(404, f"no item {item_id!r}")
    return ItemOut.model_validate(found[0])


@router.delete("/items/{item_id}", responses=errors(404))
def delete_item(item_id: PathId, scope: TenantDep) -> ItemDeletedOut:
    """Remove an item (and its vectors) from the catalog; interactions with it stay."""
    if not scope.store.delete_items([item_id]):
        raise HTTPException(404, f"no item {item_id!r}")
    return ItemDeletedOut(deleted=1)


# ---------------------------------------------------------------------------------- batches
@router.post("/ingest", status_code=201)
async def ingest_batch(body: BatchIn, scope: TenantDep) -> WriteOut:
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
        record = to_record(RECORD_TYPES[given.type], fields, f"{where} ({given.type})")
        records.append((record, where))
    return await write(scope, records)
