"""``SQLStore``: the ``Store`` protocol on SQLAlchemy Core, for the sqlite and postgres backends."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from p13n.data import Document, Interaction, Item, Persona, Preference, Record, User
from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import (
    DEFAULT_TENANT,
    MAX_OFFSET,
    EmbeddedDocuments,
    StoredAdapter,
    StoredProfile,
    UserCounts,
    UserSummary,
    Vector,
    WriteSet,
    check_tenant,
    to_utc,
)
from p13n.store.migrate import current_revision, head_revision

T = TypeVar("T")
CHUNK = 500

WRITE = "p13n_write"
"""Execution option marking a connection that will write (sqlite takes the write lock up front)."""


class Housekeeping(Protocol):
    """What a backend does to its files beyond SQL: erasing deleted rows' leftovers."""

    def scrub(self, engine: Engine) -> str | None:
        """Erase what can be erased now without locking tables (see ``Store.scrub``)."""
        ...

    def vacuum(self, engine: Engine, tables: Sequence[str]) -> list[str]:
        """Rewrite ``tables`` so that deleted rows leave nothing; returns what remains."""
        ...


def chunked(values: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _vector_bytes(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


# Per-user tables keyed by (tenant, user_id, <id column>); the rest by (tenant, <id column>).
_KEYS: dict[str, tuple[Table, str, bool]] = {
    "user": (s.users, "user_id", False),
    "document": (s.documents, "document_id", True),
    "interaction": (s.interactions, "interaction_id", True),
    "preference": (s.preferences, "preference_id", False),
    "item": (s.items, "item_id", False),
    "persona": (s.personas, "persona_id", False),
}


_COLUMNS: dict[str, Callable[[Any], dict[str, Any]]] = {
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


class SQLStore:
    """A store in one SQL database, seen as one tenant."""

    def __init__(
        self,
        engine: Engine,
        backend: str,
        *,
        tenant: str = DEFAULT_TENANT,
        migration_lock: Callable[[Connection], None] | None = None,
        housekeeping: Housekeeping,
        migrate: bool = True,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.tenant = check_tenant(tenant)
        self._migration_lock = migration_lock
        self.housekeeping = housekeeping
        if migrate:
            self.migrate()
        else:
            self._check_revision()

    # -- lifecycle -----------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema in place to this version's head (a no-op when already there)."""
        from p13n.store.migrate import upgrade

        with self._transaction() as connection:
            if self._migration_lock is not None:
                self._migration_lock(connection)
            upgrade(connection)

    def _check_revision(self) -> None:
        revision = self.schema_revision()
        if revision != head_revision():
            raise StoreError(
                f"the store's schema is at revision {revision!r}, not {head_revision()!r}: "
                "run `p13n migrate` (or open it with migrate=True)"
            )

    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return current_revision(connection)

    def with_tenant(self, tenant: str) -> SQLStore:
        clone = object.__new__(SQLStore)
        clone.engine, clone.backend = self.engine, self.backend
        clone._migration_lock = self._migration_lock
        clone.housekeeping = self.housekeeping
        clone.tenant = check_tenant(tenant)
        return clone

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLStore({url!r}, tenant={self.tenant!r})"

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            connection = connection.execution_options(**{WRITE: True})
            with connection.begin():
                yield connection

    def _insert(self, table: Table) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgres_insert(table)
        return sqlite_insert(table)

    def _upsert(
        self,
        connection: Connection,
        table: Table,
        rows: list[dict[str, Any]],
        *,
        replace: bool = True,
    ) -> None:
        if not rows:
            return
        keys = [column.name for column in table.primary_key.columns]
        statement = self._insert(table)
        updates = {c.name: statement.excluded[c.name] for c in table.c if c.name not in keys}
        if replace and updates:
            statement = statement.on_conflict_do_update(index_elements=keys, set_=updates)
        else:
            statement = statement.on_conflict_do_nothing(index_elements=keys)
        for chunk in chunked(rows, 1000):
            connection.execute(statement, list(chunk))

    # -- writes --------------------------------------------------------------------------------

    def write(self, changes: WriteSet) -> None:
        now = datetime.now(UTC)

        def rows(records: Sequence[Record]) -> list[dict[str, Any]]:
            return [
                {
                    "tenant": self.tenant,
                    **_COLUMNS[r.record_type](r),
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
            self._delete_personas(c, changes.deleted_personas, version)
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
                        "vector": _vector_bytes(vector),
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
                        "vector": _vector_bytes(vector),
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

    def _delete_each(self, c: Connection, table: Table, keys: list[dict[str, Any]]) -> None:
        """Delete this tenant's rows matching each key (one executemany)."""
        if not keys:
            return
        condition = [table.c.tenant == self.tenant]
        condition += [table.c[name] == bindparam(f"key_{name}") for name in keys[0]]
        c.execute(
            delete(table).where(*condition),
            [{f"key_{name}": value for name, value in key.items()} for key in keys],
        )

    # -- change detection ----------------------------------------------------------------------

    def content_hashes(self, record_type: str, keys: Iterable[object]) -> dict[object, str]:
        table, id_column, per_user = _KEYS[record_type]
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

    # -- reads ---------------------------------------------------------------------------------

    def _scalar_count(self, c: Connection, table: Table, user_id: str) -> int:
        return int(
            c.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.tenant == self.tenant, table.c.user_id == user_id)
            ).scalar_one()
        )

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

    def get_profile(self, user_id: str, profile_key: str) -> StoredProfile | None:
        p = s.profiles
        with self.engine.connect() as c:
            row = c.execute(
                select(p.c.data_version, p.c.model, p.c.text, p.c.created_at).where(
                    p.c.tenant == self.tenant,
                    p.c.user_id == user_id,
                    p.c.profile_key == profile_key,
                )
            ).first()
        if row is None:
            return None
        return StoredProfile(
            user_id=user_id,
            profile_key=profile_key,
            data_version=row.data_version,
            model=row.model,
            text=row.text,
            created_at=to_utc(row.created_at) or datetime.now(UTC),
        )

    def put_profile(self, profile: StoredProfile) -> None:
        with self._transaction() as c:
            if self._user_row_missing(c, profile.user_id):
                raise StoreError(f"cannot store a profile for unknown user {profile.user_id!r}")
            self._upsert(
                c,
                s.profiles,
                [
                    {
                        "tenant": self.tenant,
                        "user_id": profile.user_id,
                        "profile_key": profile.profile_key,
                        "data_version": profile.data_version,
                        "model": profile.model,
                        "text": profile.text,
                        "created_at": profile.created_at,
                    }
                ],
            )

    def _user_row_missing(self, c: Connection, user_id: str) -> bool:
        u = s.users
        return (
            c.execute(
                select(u.c.user_id).where(u.c.tenant == self.tenant, u.c.user_id == user_id)
            ).first()
            is None
        )

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

    @staticmethod
    def _document(row: Any) -> Document:
        return Document.model_construct(
            id=row.document_id,
            user_id=row.user_id,
            kind=row.kind,
            title=row.title,
            text=row.text,
            timestamp=to_utc(row.timestamp),
            metadata=row.meta,
        )

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
            return [self._document(row) for row in c.execute(query)]

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

    def _plain_rows(self, query: Any) -> list[tuple[Any, ...]]:
        """Run ``query`` on the driver's own cursor and return its plain tuples.

        Hot path (a user's whole history): SQLAlchemy's Row objects are tracked by the garbage
        collector, and 1,000 of them per call made full collections land inside fetches (p99 of
        ~50 ms vs a p50 of 4 ms, bench/fetch_latency.py). Driver tuples of strings and bytes are
        untracked by CPython, so the fetch no longer feeds the collector.
        """
        compiled = query.compile(
            dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        named = compiled.construct_params()
        parameters: Any = named
        if compiled.positiontup is not None:  # sqlite's "?" style
            parameters = tuple(named[name] for name in compiled.positiontup)
        with self.engine.connect() as connection:
            driver_connection = connection.connection.dbapi_connection
            assert driver_connection is not None  # a checked-out connection always has one
            # psycopg: the binary protocol sends bytea as raw bytes, not as hex text to decode.
            binary = {"binary": True} if self.engine.dialect.name == "postgresql" else {}
            cursor = driver_connection.cursor(**binary)
            try:
                cursor.execute(str(compiled), parameters)
                return list(cursor.fetchall())
            finally:
                cursor.close()

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
            return [self._interaction(row) for row in c.execute(query)]

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
            return [self._interaction(row) for row in c.execute(query)]

    @staticmethod
    def _interaction(row: Any) -> Interaction:
        return Interaction.model_construct(
            id=row.interaction_id,
            user_id=row.user_id,
            item_id=row.item_id,
            kind=row.kind,
            value=row.value,
            timestamp=to_utc(row.timestamp),
            metadata=row.meta,
        )

    def _preferences(self, condition: Any) -> list[Preference]:
        p = s.preferences
        query = select(p).where(p.c.tenant == self.tenant, condition).order_by(p.c.preference_id)
        with self.engine.connect() as c:
            return [
                Preference.model_construct(
                    id=row.preference_id,
                    user_id=row.user_id,
                    persona_id=row.persona_id,
                    prompt=row.prompt,
                    chosen=row.chosen,
                    rejected=row.rejected,
                    timestamp=to_utc(row.timestamp),
                    metadata=row.meta,
                )
                for row in c.execute(query)
            ]

    def preferences(self, user_id: str) -> list[Preference]:
        return self._preferences(s.preferences.c.user_id == user_id)

    def persona_preferences(self, persona_id: str) -> list[Preference]:
        return self._preferences(s.preferences.c.persona_id == persona_id)

    def items(self, item_ids: Sequence[str]) -> list[Item]:
        i = s.items
        found: dict[str, Item] = {}
        with self.engine.connect() as c:
            for ids in chunked(list(item_ids)):
                for row in c.execute(
                    select(i).where(i.c.tenant == self.tenant, i.c.item_id.in_(ids))
                ):
                    found[row.item_id] = Item.model_construct(
                        id=row.item_id, title=row.title, text=row.text, attributes=row.attributes
                    )
        return [found[item_id] for item_id in item_ids if item_id in found]

    def catalog(self) -> list[Item]:
        i = s.items
        query = select(i).where(i.c.tenant == self.tenant).order_by(i.c.item_id)
        with self.engine.connect() as c:
            return [
                Item.model_construct(
                    id=row.item_id, title=row.title, text=row.text, attributes=row.attributes
                )
                for row in c.execute(query)
            ]

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

    def personas(self) -> list[Persona]:
        p, m = s.personas, s.persona_members
        with self.engine.connect() as c:
            members: dict[str, list[str]] = {}
            for persona_id, user_id in c.execute(
                select(m.c.persona_id, m.c.user_id)
                .where(m.c.tenant == self.tenant)
                .order_by(m.c.persona_id, m.c.user_id)
            ):
                members.setdefault(persona_id, []).append(user_id)
            return [
                Persona.model_construct(
                    id=row.persona_id,
                    description=row.description,
                    members=members.get(row.persona_id, []),
                    metadata=row.meta,
                )
                for row in c.execute(
                    select(p).where(p.c.tenant == self.tenant).order_by(p.c.persona_id)
                )
            ]

    def personas_of(self, user_id: str) -> list[str]:
        m = s.persona_members
        with self.engine.connect() as c:
            return list(
                c.execute(
                    select(m.c.persona_id)
                    .where(m.c.tenant == self.tenant, m.c.user_id == user_id)
                    .order_by(m.c.persona_id)
                ).scalars()
            )

    def delete_personas(self, persona_ids: Sequence[str]) -> int:
        with self._transaction() as c:
            return self._delete_personas(c, persona_ids, uuid.uuid4().hex)

    def _delete_personas(self, c: Connection, persona_ids: Sequence[str], version: str) -> int:
        m, p, u = s.persona_members, s.personas, s.users
        deleted = 0
        for chunk in chunked(sorted(set(persona_ids))):
            ids = list(chunk)
            members = list(
                c.execute(
                    select(m.c.user_id)
                    .distinct()
                    .where(m.c.tenant == self.tenant, m.c.persona_id.in_(ids))
                ).scalars()
            )
            c.execute(delete(m).where(m.c.tenant == self.tenant, m.c.persona_id.in_(ids)))
            result = c.execute(delete(p).where(p.c.tenant == self.tenant, p.c.persona_id.in_(ids)))
            deleted += result.rowcount
            # After the personas: a put_adapter holding one of their rows has committed by now.
            a = s.adapters
            c.execute(delete(a).where(a.c.tenant == self.tenant, a.c.persona_id.in_(ids)))
            for users in chunked(members):  # membership is user data: their version moves
                c.execute(
                    update(u)
                    .where(u.c.tenant == self.tenant, u.c.user_id.in_(list(users)))
                    .values(data_version=version)
                )
        return deleted

    # -- adapters ------------------------------------------------------------------------------

    def put_adapter(self, adapter: StoredAdapter, weights: bytes) -> None:
        weights = bytes(weights)
        name = f"adapter {adapter.adapter_id!r}"
        if adapter.user_id is not None and adapter.persona_id is not None:
            raise StoreError(
                f"{name} names both user {adapter.user_id!r} and persona {adapter.persona_id!r}: "
                "an adapter belongs to one user, one persona, or (neither) the whole tenant"
            )
        if adapter.size_bytes != len(weights):
            raise StoreError(
                f"{name} says size_bytes={adapter.size_bytes}, "
                f"but its weights are {len(weights)} bytes"
            )
        digest = hashlib.sha256(weights).hexdigest()
        if adapter.weights_sha256 != digest:
            raise StoreError(
                f"{name} says weights_sha256={adapter.weights_sha256!r}, "
                f"but its weights hash to {digest!r}"
            )
        with self._transaction() as c:
            # The owner's row is share-locked (PostgreSQL) until commit, so a concurrent forget
            # or delete_personas waits for this write and then deletes the adapter too.
            if adapter.user_id is not None and not self._holds(
                c, s.users, "user_id", adapter.user_id
            ):
                raise StoreError(f"cannot store {name} for unknown user {adapter.user_id!r}")
            if adapter.persona_id is not None and not self._holds(
                c, s.personas, "persona_id", adapter.persona_id
            ):
                raise StoreError(f"cannot store {name} for unknown persona {adapter.persona_id!r}")
            self._upsert(
                c,
                s.adapters,
                [
                    {
                        "tenant": self.tenant,
                        "adapter_id": adapter.adapter_id,
                        "user_id": adapter.user_id,
                        "persona_id": adapter.persona_id,
                        "task": adapter.task,
                        "method": adapter.method,
                        "base_model": adapter.base_model,
                        "base_hash": adapter.base_hash,
                        "config": adapter.config,
                        "data_size": adapter.data_size,
                        "metrics": adapter.metrics,
                        "size_bytes": adapter.size_bytes,
                        "weights_sha256": adapter.weights_sha256,
                        "weights": weights,
                        "created_at": to_utc(adapter.created_at),
                    }
                ],
            )

    def _holds(self, c: Connection, table: Table, id_column: str, value: str) -> bool:
        """Whether this tenant has the row, share-locking it until the transaction ends."""
        query = (
            select(table.c[id_column])
            .where(table.c.tenant == self.tenant, table.c[id_column] == value)
            .with_for_update(read=True)  # FOR SHARE on PostgreSQL; SQLite holds the write lock
        )
        return c.execute(query).first() is not None

    def _adapter_query(self) -> Any:
        a = s.adapters
        columns = [column for column in a.c if column.name not in ("tenant", "weights")]
        return select(*columns).where(a.c.tenant == self.tenant)

    @staticmethod
    def _adapter(row: Any) -> StoredAdapter:
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

    def adapters(
        self,
        *,
        user_id: str | None = None,
        persona_id: str | None = None,
        task: str | None = None,
        method: str | None = None,
    ) -> list[StoredAdapter]:
        a = s.adapters
        query = self._adapter_query().order_by(a.c.adapter_id)
        for column, value in (
            (a.c.user_id, user_id),
            (a.c.persona_id, persona_id),
            (a.c.task, task),
            (a.c.method, method),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.engine.connect() as c:
            return [self._adapter(row) for row in c.execute(query)]

    def get_adapter(self, adapter_id: str) -> StoredAdapter | None:
        query = self._adapter_query().where(s.adapters.c.adapter_id == adapter_id)
        with self.engine.connect() as c:
            row = c.execute(query).first()
        return None if row is None else self._adapter(row)

    def adapter_weights(self, adapter_id: str) -> bytes | None:
        a = s.adapters
        # The driver's own cursor: on PostgreSQL the binary protocol sends the bytea as is,
        # not as hex text twice its size to decode.
        rows = self._plain_rows(
            select(a.c.weights).where(a.c.tenant == self.tenant, a.c.adapter_id == adapter_id)
        )
        return bytes(rows[0][0]) if rows else None

    def delete_adapters(self, adapter_ids: Sequence[str]) -> int:
        a = s.adapters
        deleted = 0
        with self._transaction() as c:
            for chunk in chunked(sorted(set(adapter_ids))):
                result = c.execute(
                    delete(a).where(a.c.tenant == self.tenant, a.c.adapter_id.in_(list(chunk)))
                )
                deleted += result.rowcount
        return deleted

    # -- privacy -------------------------------------------------------------------------------

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

    def forget(self, user_id: str) -> dict[str, int]:
        deleted: dict[str, int] = {}
        with self._transaction() as c:
            for table in s.PER_USER_TABLES:
                result = c.execute(
                    delete(table).where(table.c.tenant == self.tenant, table.c.user_id == user_id)
                )
                deleted[table.name] = result.rowcount
        return deleted

    def scrub(self) -> str | None:
        return self.housekeeping.scrub(self.engine)

    def vacuum(self) -> list[str]:
        """Rewrite every table of the store (all tenants) so that no deleted row is left in its
        files; tables are locked meanwhile. Returns what is still left, for the operator."""
        return self.housekeeping.vacuum(self.engine, [t.name for t in s.metadata.sorted_tables])
