"""``SQLCore``: one SQL database seen as one tenant: schema, connections and shared helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from p13n.data import Preference
from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import DEFAULT_TENANT, check_tenant
from p13n.store.migrate import current_revision, head_revision
from p13n.store.sql.rows import chunked, to_preference

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


class SQLCore:
    """The engine, tenant and backend of an ``SQLStore``, and the helpers its parts share."""

    engine: Engine
    backend: str
    tenant: str
    housekeeping: Housekeeping
    _migration_lock: Callable[[Connection], None] | None

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

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"SQLStore({url!r}, tenant={self.tenant!r})"

    # -- helpers -------------------------------------------------------------------------------

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

    def _holds(self, c: Connection, table: Table, id_column: str, value: str) -> bool:
        """Whether this tenant has the row, share-locking it until the transaction ends."""
        query = (
            select(table.c[id_column])
            .where(table.c.tenant == self.tenant, table.c[id_column] == value)
            .with_for_update(read=True)  # FOR SHARE on PostgreSQL; SQLite holds the write lock
        )
        return c.execute(query).first() is not None

    def _user_row_missing(self, c: Connection, user_id: str) -> bool:
        u = s.users
        return (
            c.execute(
                select(u.c.user_id).where(u.c.tenant == self.tenant, u.c.user_id == user_id)
            ).first()
            is None
        )

    def _scalar_count(self, c: Connection, table: Table, user_id: str) -> int:
        return int(
            c.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.tenant == self.tenant, table.c.user_id == user_id)
            ).scalar_one()
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

    def _preferences(self, condition: Any) -> list[Preference]:
        p = s.preferences
        query = select(p).where(p.c.tenant == self.tenant, condition).order_by(p.c.preference_id)
        with self.engine.connect() as c:
            return [to_preference(row) for row in c.execute(query)]
