"""The ``postgres`` backend: any PostgreSQL URL (driver: psycopg 3)."""

from __future__ import annotations

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import URL, make_url

from p13n.store.sql import SQLStore

_MIGRATION_LOCK_KEY = 0x7031336E  # "p13n": one advisory lock id for schema changes


def _lock_for_migration(connection: Connection) -> None:
    # Held until the migration transaction ends, so concurrent openers upgrade one at a time.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def open_postgres(url: str | URL, *, tenant: str, migrate: bool = True) -> SQLStore:
    """Open a PostgreSQL store. ``postgresql://`` URLs use the psycopg 3 driver."""
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_pre_ping=True)
    return SQLStore(
        engine, "postgres", tenant=tenant, migration_lock=_lock_for_migration, migrate=migrate
    )
