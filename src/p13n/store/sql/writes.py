"""``SQLWrites``: the ingest transaction, change detection, and deleting records and items."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from p13n.data import Record, User
from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import WriteSet
from p13n.store.sql.core import SQLCore
from p13n.store.sql.personas import delete_personas_in
from p13n.store.sql.rows import RECORD_COLUMNS, RECORD_KEYS, chunked, vector_bytes


class SQLWrites(SQLCore):
    """``RecordStore``'s writes and deletions."""

    def write(self, changes: WriteSet) -> None:
        now = datetime.now(UTC)

        def rows(records: Sequence[Record]) -> list[dict[str, Any]]:
            return [
                {
                    "tenant": self.tenant,
                    **RECORD_COLUMNS[r.record_type](r),
                    "content_hash": r.content_hash,
                    "ingested_at": now,
                }
                for r in records
            ]

        referenced = [User(id=user_id) for user_id in changes.implicit_user_ids]
        # A new user row starts at a fresh version too: a forgotten and re-created user must
        # never match a cache entry of their former data.
        version = uuid.uuid4().hex
        with self._transaction() as c:
            # A user named by other records is created if missing but never overwritten.
            self._upsert(
                c,
                s.users,
                [{**r, "data_version": version} for r in rows(referenced)],
                replace=False,
            )
            self._upsert(c, s.users, [{**r, "data_version": version} for r in rows(changes.users)])
            self._bump_data_versions(c, changes, version)
            # A changed row's old vectors describe old text: drop them (every encoder's).
            self._delete_each(
                c,
                s.document_embeddings,
                [{"user_id": d.user_id, "document_id": d.id} for d in changes.documents],
            )
            self._upsert(c, s.documents, rows(changes.documents))
            self._upsert(c, s.interactions, rows(changes.interactions))
            self._upsert(c, s.preferences, rows(changes.preferences))
            self._delete_each(c, s.item_embeddings, [{"item_id": i.id} for i in changes.items])
            self._upsert(c, s.items, rows(changes.items))
            delete_personas_in(c, self.tenant, changes.deleted_personas, version)
            self._upsert(c, s.personas, rows(changes.personas))
            self._delete_each(
                c, s.persona_members, [{"persona_id": p.id} for p in changes.personas]
            )
            self._upsert(
                c,
                s.persona_members,
                [
                    {"tenant": self.tenant, "persona_id": p.id, "user_id": member}
                    for p in changes.personas
                    for member in p.members
                ],
            )
            if not (changes.document_vectors or changes.item_vectors):
                return
            if changes.encoder_id is None:
                raise StoreError("vectors given without the encoder_id that made them")
            vector_columns = {"tenant": self.tenant, "encoder_id": changes.encoder_id}
            self._upsert(
                c,
                s.document_embeddings,
                [
                    {
                        **vector_columns,
                        "user_id": user_id,
                        "document_id": document_id,
                        "dim": int(vector.shape[0]),
                        "vector": vector_bytes(vector),
                    }
                    for (user_id, document_id), vector in changes.document_vectors.items()
                ],
            )
            self._upsert(
                c,
                s.item_embeddings,
                [
                    {
                        **vector_columns,
                        "item_id": item_id,
                        "dim": int(vector.shape[0]),
                        "vector": vector_bytes(vector),
                    }
                    for item_id, vector in changes.item_vectors.items()
                ],
            )

    def _bump_data_versions(self, c: Connection, changes: WriteSet, version: str) -> None:
        """Give every user whose data this write touches a fresh data version."""
        # Users only named by other records are not touched: a no-op re-ingest changes nothing.
        touched = {u.id for u in changes.users}
        for records in (changes.documents, changes.interactions):
            touched.update(r.user_id for r in records)
        touched.update(p.user_id for p in changes.preferences if p.user_id is not None)
        touched.update(member for p in changes.personas for member in p.members)
        touched.update(user_id for user_id, _ in changes.document_vectors)  # vectors are data too
        if changes.items:  # interactions are read with their item's title and text
            i = s.interactions
            for chunk in chunked([item.id for item in changes.items]):
                touched.update(
                    c.execute(
                        select(i.c.user_id)
                        .distinct()
                        .where(i.c.tenant == self.tenant, i.c.item_id.in_(list(chunk)))
                    ).scalars()
                )
        if not touched:
            return
        u = s.users
        for chunk in chunked(sorted(touched)):
            c.execute(
                update(u)
                .where(u.c.tenant == self.tenant, u.c.user_id.in_(list(chunk)))
                .values(data_version=version)
            )

    # -- change detection ----------------------------------------------------------------------

    def content_hashes(self, record_type: str, keys: Iterable[object]) -> dict[object, str]:
        table, id_column, per_user = RECORD_KEYS[record_type]
        wanted = set(keys)
        found: dict[object, str] = {}
        with self.engine.connect() as c:
            if per_user:
                by_user = sorted({key[0] for key in wanted})  # type: ignore[index]
                for users in chunked(by_user):
                    rows = c.execute(
                        select(table.c.user_id, table.c[id_column], table.c.content_hash).where(
                            table.c.tenant == self.tenant, table.c.user_id.in_(users)
                        )
                    )
                    for user_id, record_id, digest in rows:
                        if (user_id, record_id) in wanted:
                            found[(user_id, record_id)] = digest
            else:
                for ids in chunked(sorted(wanted)):  # type: ignore[type-var]
                    pairs = c.execute(
                        select(table.c[id_column], table.c.content_hash).where(
                            table.c.tenant == self.tenant, table.c[id_column].in_(ids)
                        )
                    )
                    found.update({record_id: digest for record_id, digest in pairs})
        return found

    def embedded(self, record_type: str, keys: Iterable[object], encoder_id: str) -> set[object]:
        wanted = set(keys)
        found: set[object] = set()
        with self.engine.connect() as c:
            if record_type == "document":
                e = s.document_embeddings
                for users in chunked(sorted({key[0] for key in wanted})):  # type: ignore[index]
                    rows = c.execute(
                        select(e.c.user_id, e.c.document_id).where(
                            e.c.tenant == self.tenant,
                            e.c.encoder_id == encoder_id,
                            e.c.user_id.in_(users),
                        )
                    )
                    found.update(key for key in map(tuple, rows) if key in wanted)
            elif record_type == "item":
                e = s.item_embeddings
                for ids in chunked(sorted(wanted)):  # type: ignore[type-var]
                    rows = c.execute(
                        select(e.c.item_id).where(
                            e.c.tenant == self.tenant,
                            e.c.encoder_id == encoder_id,
                            e.c.item_id.in_(ids),
                        )
                    )
                    found.update(row[0] for row in rows)
            else:
                raise ValueError(f"{record_type!r} records have no embeddings")
        return found

    # -- deletions -----------------------------------------------------------------------------

    def delete_items(self, item_ids: Sequence[str]) -> int:
        i, e = s.items, s.item_embeddings
        deleted = 0
        with self._transaction() as c:
            for chunk in chunked(sorted(set(item_ids))):
                ids = list(chunk)
                c.execute(delete(e).where(e.c.tenant == self.tenant, e.c.item_id.in_(ids)))
                result = c.execute(delete(i).where(i.c.tenant == self.tenant, i.c.item_id.in_(ids)))
                deleted += result.rowcount
        return deleted

    def delete_records(self, user_id: str, record_type: str, record_ids: Sequence[str]) -> int:
        tables = {
            "document": (s.documents, s.documents.c.document_id, s.document_embeddings),
            "interaction": (s.interactions, s.interactions.c.interaction_id, None),
            "preference": (s.preferences, s.preferences.c.preference_id, None),
        }
        if record_type not in tables:
            raise StoreError(
                f"cannot delete {record_type!r} records: choose from {', '.join(tables)}"
            )
        table, key, vectors = tables[record_type]
        deleted = 0
        with self._transaction() as c:
            for chunk in chunked(sorted(set(record_ids))):
                scope = (table.c.tenant == self.tenant, table.c.user_id == user_id)
                deleted += c.execute(delete(table).where(*scope, key.in_(list(chunk)))).rowcount
                if vectors is not None:
                    c.execute(
                        delete(vectors).where(
                            vectors.c.tenant == self.tenant,
                            vectors.c.user_id == user_id,
                            vectors.c.document_id.in_(list(chunk)),
                        )
                    )
            if deleted:
                u = s.users
                c.execute(
                    update(u)
                    .where(u.c.tenant == self.tenant, u.c.user_id == user_id)
                    .values(data_version=uuid.uuid4().hex)
                )
        return deleted
