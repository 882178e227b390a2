"""``SQLRecords``: reading users, their records, items and vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Text, and_, cast, func, select

from p13n.data import Document, Interaction, Item, Preference, User
from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import MAX_OFFSET, EmbeddedDocuments, UserCounts, UserSummary, Vector
from p13n.store.sql.core import SQLCore
from p13n.store.sql.rows import chunked, to_document, to_interaction, to_item


class SQLRecords(SQLCore):
    """``RecordStore``'s reads."""

    def get_user(self, user_id: str) -> User | None:
        u = s.users
        with self.engine.connect() as c:
            row = c.execute(
                select(u.c.user_id, u.c.attributes).where(
                    u.c.tenant == self.tenant, u.c.user_id == user_id
                )
            ).first()
        return (
            None if row is None else User.model_construct(id=row.user_id, attributes=row.attributes)
        )

    def data_version(self, user_id: str) -> str | None:
        u = s.users
        with self.engine.connect() as c:
            row = c.execute(
                select(u.c.data_version).where(u.c.tenant == self.tenant, u.c.user_id == user_id)
            ).first()
        if row is None:
            return None
        return row.data_version or "initial"

    def count_users(self) -> int:
        with self.engine.connect() as c:
            return int(
                c.execute(
                    select(func.count()).select_from(s.users).where(s.users.c.tenant == self.tenant)
                ).scalar_one()
            )

    def user_counts(self, user_id: str) -> UserCounts:
        with self.engine.connect() as c:
            return UserCounts(
                documents=self._scalar_count(c, s.documents, user_id),
                interactions=self._scalar_count(c, s.interactions, user_id),
                preferences=self._scalar_count(c, s.preferences, user_id),
                embeddings=self._scalar_count(c, s.document_embeddings, user_id),
                personas=self._scalar_count(c, s.persona_members, user_id),
            )

    def list_users(self, *, limit: int = 100, offset: int = 0) -> list[UserSummary]:
        if not (0 <= offset <= MAX_OFFSET and 0 <= limit <= MAX_OFFSET):
            raise StoreError(
                f"limit {limit} and offset {offset} must be from 0 to {MAX_OFFSET} (signed 64 bits)"
            )
        u = s.users
        with self.engine.connect() as c:
            rows = c.execute(
                select(u.c.user_id, u.c.attributes)
                .where(u.c.tenant == self.tenant)
                .order_by(u.c.user_id)
                .limit(limit)
                .offset(offset)
            ).all()
            ids = [row.user_id for row in rows]
            counts: dict[str, dict[str, int]] = {uid: {} for uid in ids}
            for name, table in (
                ("documents", s.documents),
                ("interactions", s.interactions),
                ("preferences", s.preferences),
                ("embeddings", s.document_embeddings),
                ("personas", s.persona_members),
            ):
                for user_id, n in c.execute(
                    select(table.c.user_id, func.count())
                    .where(table.c.tenant == self.tenant, table.c.user_id.in_(ids))
                    .group_by(table.c.user_id)
                ):
                    counts[user_id][name] = int(n)
        return [
            UserSummary(
                user=User.model_construct(id=row.user_id, attributes=row.attributes),
                counts=UserCounts(
                    **{k: counts[row.user_id].get(k, 0) for k in UserCounts.__dataclass_fields__}
                ),
            )
            for row in rows
        ]

    def _document_query(self, user_id: str, kinds: Sequence[str] | None) -> Any:
        d = s.documents
        query = select(
            d.c.document_id, d.c.user_id, d.c.kind, d.c.title, d.c.text, d.c.timestamp, d.c.meta
        ).where(d.c.tenant == self.tenant, d.c.user_id == user_id)
        if kinds is not None:
            query = query.where(d.c.kind.in_(list(kinds)))
        return query

    def documents(
        self, user_id: str, *, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Document]:
        d = s.documents
        query = self._document_query(user_id, kinds).order_by(
            d.c.timestamp.desc().nulls_last(), d.c.document_id
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as c:
            return [to_document(row) for row in c.execute(query)]

    def document_embeddings(
        self, user_id: str, encoder_id: str, *, kinds: Sequence[str] | None = None
    ) -> EmbeddedDocuments:
        d, e = s.documents, s.document_embeddings
        query = (
            select(
                d.c.document_id,
                d.c.kind,
                d.c.title,
                d.c.text,
                d.c.timestamp,
                cast(d.c.meta, Text),
                e.c.dim,
                e.c.vector,
            )
            .select_from(
                d.outerjoin(
                    e,
                    and_(
                        e.c.tenant == d.c.tenant,
                        e.c.user_id == d.c.user_id,
                        e.c.document_id == d.c.document_id,
                        e.c.encoder_id == encoder_id,
                    ),
                )
            )
            .where(d.c.tenant == self.tenant, d.c.user_id == user_id)
            .order_by(d.c.document_id)
        )
        if kinds is not None:
            query = query.where(d.c.kind.in_(list(kinds)))
        rows = self._plain_rows(query)
        missing = [row[0] for row in rows if row[7] is None]
        rows = [row for row in rows if row[7] is not None]
        dims = {row[6] for row in rows}
        if len(dims) > 1:
            raise StoreError(
                f"encoder {encoder_id!r} stored vectors of several sizes: {sorted(dims)}"
            )
        ids, kinds_, titles, texts, timestamps, metadata, _, blobs = (
            [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 8
        )
        vectors = np.frombuffer(b"".join(blobs), dtype="<f4").reshape(
            len(rows), dims.pop() if dims else 0
        )
        return EmbeddedDocuments(
            encoder_id=encoder_id,
            user_id=user_id,
            ids=ids,
            kinds=kinds_,
            titles=titles,
            texts=texts,
            vectors=vectors,
            missing=missing,
            raw_timestamps=timestamps,
            raw_metadata=metadata,
        )

    def interactions(
        self, user_id: str, *, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Interaction]:
        i = s.interactions
        query = (
            select(i)
            .where(i.c.tenant == self.tenant, i.c.user_id == user_id)
            .order_by(i.c.timestamp.desc().nulls_last(), i.c.interaction_id)
        )
        if kinds is not None:
            query = query.where(i.c.kind.in_(list(kinds)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as c:
            return [to_interaction(row) for row in c.execute(query)]

    def all_interactions(self, *, kinds: Sequence[str] | None = None) -> list[Interaction]:
        i = s.interactions
        query = (
            select(i)
            .where(i.c.tenant == self.tenant)
            .order_by(i.c.user_id, i.c.timestamp.asc().nulls_last(), i.c.interaction_id)
        )
        if kinds is not None:
            query = query.where(i.c.kind.in_(list(kinds)))
        with self.engine.connect() as c:
            return [to_interaction(row) for row in c.execute(query)]

    def preferences(self, user_id: str) -> list[Preference]:
        return self._preferences(s.preferences.c.user_id == user_id)

    def items(self, item_ids: Sequence[str]) -> list[Item]:
        i = s.items
        found: dict[str, Item] = {}
        with self.engine.connect() as c:
            for ids in chunked(list(item_ids)):
                for row in c.execute(
                    select(i).where(i.c.tenant == self.tenant, i.c.item_id.in_(ids))
                ):
                    found[row.item_id] = to_item(row)
        return [found[item_id] for item_id in item_ids if item_id in found]

    def catalog(self) -> list[Item]:
        i = s.items
        query = select(i).where(i.c.tenant == self.tenant).order_by(i.c.item_id)
        with self.engine.connect() as c:
            return [to_item(row) for row in c.execute(query)]

    def all_users(self) -> list[User]:
        u = s.users
        query = (
            select(u.c.user_id, u.c.attributes)
            .where(u.c.tenant == self.tenant)
            .order_by(u.c.user_id)
        )
        with self.engine.connect() as c:
            return [
                User.model_construct(id=row.user_id, attributes=row.attributes)
                for row in c.execute(query)
            ]

    def item_vectors(self, item_ids: Sequence[str], encoder_id: str) -> dict[str, Vector]:
        e = s.item_embeddings
        found: dict[str, Vector] = {}
        with self.engine.connect() as c:
            for ids in chunked(list(item_ids)):
                for row in c.execute(
                    select(e.c.item_id, e.c.vector).where(
                        e.c.tenant == self.tenant,
                        e.c.encoder_id == encoder_id,
                        e.c.item_id.in_(ids),
                    )
                ):
                    found[row.item_id] = np.frombuffer(row.vector, dtype="<f4")
        return found
