"""Rows of the SQL store: record columns per table, chunking of long key lists, row mappers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Table

from p13n.data import Document, Interaction, Item, Preference
from p13n.store import schema as s
from p13n.store.base import StoredAdapter, Vector, to_utc

T = TypeVar("T")
CHUNK = 500


def chunked(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size`` (bounds the parameters of one ``IN``)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def vector_bytes(vector: Vector) -> bytes:
    """A vector as stored: little-endian float32."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


# Per-user tables keyed by (tenant, user_id, <id column>); the rest by (tenant, <id column>).
RECORD_KEYS: dict[str, tuple[Table, str, bool]] = {
    "user": (s.users, "user_id", False),
    "document": (s.documents, "document_id", True),
    "interaction": (s.interactions, "interaction_id", True),
    "preference": (s.preferences, "preference_id", False),
    "item": (s.items, "item_id", False),
    "persona": (s.personas, "persona_id", False),
}
"""Each record type's table, id column, and whether its key is per user."""


RECORD_COLUMNS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "user": lambda u: {"user_id": u.id, "attributes": u.attributes},
    "document": lambda d: {
        "user_id": d.user_id,
        "document_id": d.id,
        "kind": d.kind,
        "title": d.title,
        "text": d.text,
        "timestamp": d.timestamp,
        "meta": d.metadata,
    },
    "interaction": lambda i: {
        "user_id": i.user_id,
        "interaction_id": i.id,
        "item_id": i.item_id,
        "kind": i.kind,
        "value": i.value,
        "timestamp": i.timestamp,
        "meta": i.metadata,
    },
    "preference": lambda p: {
        "preference_id": p.id,
        "user_id": p.user_id,
        "persona_id": p.persona_id,
        "prompt": p.prompt,
        "chosen": p.chosen,
        "rejected": p.rejected,
        "timestamp": p.timestamp,
        "meta": p.metadata,
    },
    "item": lambda i: {
        "item_id": i.id,
        "title": i.title,
        "text": i.text,
        "attributes": i.attributes,
    },
    "persona": lambda p: {"persona_id": p.id, "description": p.description, "meta": p.metadata},
}
"""Table columns of each record type, besides tenant, content_hash and ingested_at."""


def to_document(row: Any) -> Document:
    return Document.model_construct(
        id=row.document_id,
        user_id=row.user_id,
        kind=row.kind,
        title=row.title,
        text=row.text,
        timestamp=to_utc(row.timestamp),
        metadata=row.meta,
    )


def to_interaction(row: Any) -> Interaction:
    return Interaction.model_construct(
        id=row.interaction_id,
        user_id=row.user_id,
        item_id=row.item_id,
        kind=row.kind,
        value=row.value,
        timestamp=to_utc(row.timestamp),
        metadata=row.meta,
    )


def to_preference(row: Any) -> Preference:
    return Preference.model_construct(
        id=row.preference_id,
        user_id=row.user_id,
        persona_id=row.persona_id,
        prompt=row.prompt,
        chosen=row.chosen,
        rejected=row.rejected,
        timestamp=to_utc(row.timestamp),
        metadata=row.meta,
    )


def to_item(row: Any) -> Item:
    return Item.model_construct(
        id=row.item_id, title=row.title, text=row.text, attributes=row.attributes
    )


def to_adapter(row: Any) -> StoredAdapter:
    return StoredAdapter(
        adapter_id=row.adapter_id,
        user_id=row.user_id,
        persona_id=row.persona_id,
        task=row.task,
        method=row.method,
        base_model=row.base_model,
        base_hash=row.base_hash,
        config=row.config,
        data_size=row.data_size,
        metrics=row.metrics,
        size_bytes=row.size_bytes,
        weights_sha256=row.weights_sha256,
        created_at=to_utc(row.created_at) or datetime.now(UTC),
    )
