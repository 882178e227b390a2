"""A user's data export (survey §9.4): everything the store holds about them, as JSON."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from p13n.errors import UnknownUserError
from p13n.store import Store
from p13n.store import schema as s
from p13n.store.base import to_utc

EXPORT_FORMAT = "p13n-user-export/1"

TABLE_SECTIONS: dict[str, str] = {
    "users": "user",
    "documents": "documents",
    "document_embeddings": "embeddings",
    "interactions": "interactions",
    "preferences": "preferences",
    "persona_members": "personas",
    "profiles": "profiles",
    "adapters": "adapters",
}
"""Where each per-user table of the store (``schema.PER_USER_TABLES``) appears in the export."""


def export_user(store: Store, user_id: str) -> dict[str, Any]:
    """Everything ``store`` holds about ``user_id``, JSON-serialisable (datetimes as ISO 8601).

    Sections: the user and their attributes, documents, interactions and preferences (all of
    them), the personas they belong to (id, description, metadata; never the other members),
    LLM-written profiles, how many document vectors each encoder stored (the vectors themselves
    are derived and model-specific), and the metadata of their adapters (never the weights).
    Raises ``UnknownUserError`` for a user the store does not know.
    """
    user = store.get_user(user_id)
    if user is None:
        raise UnknownUserError(user_id, store.tenant)
    memberships = set(store.personas_of(user_id))
    profiles, embeddings = _sql_sections(store, user_id)
    export: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "tenant": store.tenant,
        "user_id": user_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "data_version": store.data_version(user_id),
        "user": user.model_dump(mode="json"),
        "documents": [doc.model_dump(mode="json") for doc in store.documents(user_id)],
        "interactions": [i.model_dump(mode="json") for i in store.interactions(user_id)],
        "preferences": [p.model_dump(mode="json") for p in store.preferences(user_id)],
        "personas": [
            {"id": persona.id, "description": persona.description, "metadata": persona.metadata}
            for persona in store.personas()
            if persona.id in memberships
        ],
        "profiles": profiles,
        "embeddings": embeddings,
        "adapters": [_jsonable(dataclasses.asdict(a)) for a in store.adapters(user_id=user_id)],
    }
    if profiles is None:
        export["notes"] = [
            "profiles and document embeddings are not exported: this store cannot list them"
        ]
    return export


def _sql_sections(
    store: Store, user_id: str
) -> tuple[list[dict[str, Any]] | None, dict[str, int] | None]:
    """The user's profiles and vector counts per encoder, read from an SQL store's tables.

    The ``Store`` protocol reads a profile only by its key and vectors only by encoder, so neither
    can be listed through it; the SQL stores (every backend there is) are read directly, as the
    service's tenant registry does. None, None for a store without an SQL engine.
    """
    engine = getattr(store, "engine", None)
    if not isinstance(engine, Engine):
        return None, None
    p, e = s.profiles, s.document_embeddings
    with engine.connect() as c:
        profiles = [
            {
                "profile_key": row.profile_key,
                "data_version": row.data_version,
                "model": row.model,
                "text": row.text,
                "created_at": _iso(row.created_at),
            }
            for row in c.execute(
                select(p.c.profile_key, p.c.data_version, p.c.model, p.c.text, p.c.created_at)
                .where(p.c.tenant == store.tenant, p.c.user_id == user_id)
                .order_by(p.c.profile_key)
            )
        ]
        embeddings = {
            str(encoder_id): int(count)
            for encoder_id, count in c.execute(
                select(e.c.encoder_id, func.count())
                .where(e.c.tenant == store.tenant, e.c.user_id == user_id)
                .group_by(e.c.encoder_id)
                .order_by(e.c.encoder_id)
            )
        }
    return profiles, embeddings


def _iso(value: object) -> str | None:
    """A stored timestamp (a datetime, or SQLite's text form) as ISO 8601 in UTC."""
    moment = to_utc(value)
    return None if moment is None else moment.isoformat()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value
