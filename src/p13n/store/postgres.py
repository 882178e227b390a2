"""The ``postgres`` backend: any PostgreSQL URL (driver: psycopg 3)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from p13n.store.sql import SQLStore

_MIGRATION_LOCK_KEY = 0x7031336E  # "p13n": one advisory lock id for schema changes


def _lock_for_migration(connection: Connection) -> None:
    # Held until the migration transaction ends, so concurrent openers upgrade one at a time.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


DEAD_TUPLES = (
    "PostgreSQL keeps deleted rows' bytes in table, TOAST and index pages (plain VACUUM only "
    "marks the space free) and in its write-ahead log: `p13n vacuum` rewrites the tables with "
    "VACUUM FULL (docs/SERVICE.md, forget)"
)
LEFT_AFTER_VACUUM = [
    "pg_statistic may keep sampled values of the deleted rows until ANALYZE replaces them and "
    "a superuser runs VACUUM FULL pg_statistic",
    "write-ahead log segments keep copies until they are recycled and overwritten: repeat "
    "SELECT pg_switch_wal(); CHECKPOINT; (as a superuser) as many times as pg_ls_waldir() has "
    "files, plus two",
    "WAL archives, base backups and standbys are outside the database's reach",
]


class PostgresHousekeeping:
    """Nothing can be erased on the request path: rewriting a table (VACUUM FULL) locks it."""

    def scrub(self, engine: Engine) -> str:
        return DEAD_TUPLES

    def vacuum(self, engine: Engine, tables: Sequence[str]) -> list[str]:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            quote = connection.dialect.identifier_preparer.quote
            schema = connection.exec_driver_sql("SELECT current_schema()").scalar_one()
            for table in tables:
                connection.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {quote(schema)}.{quote(table)}")
        return list(LEFT_AFTER_VACUUM)


def open_postgres(url: str | URL, *, tenant: str, migrate: bool = True) -> SQLStore:
    """Open a PostgreSQL store. ``postgresql://`` URLs use the psycopg 3 driver."""
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    engine = create_engine(url, pool_pre_ping=True)
    return SQLStore(
        engine,
        "postgres",
        tenant=tenant,
        migration_lock=_lock_for_migration,
        housekeeping=PostgresHousekeeping(),
        migrate=migrate,
    )
