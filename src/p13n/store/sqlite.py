"""The embedded ``sqlite`` backend: one file, WAL, safe for several processes at once."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from p13n.store.sql import WRITE, SQLStore

BUSY_TIMEOUT_S = 60.0
SCRUB_TIMEOUT_S = 10.0
"""How long ``scrub`` retries truncating the write-ahead log while readers hold it."""


def open_sqlite(url: str | URL, *, tenant: str, migrate: bool = True) -> SQLStore:
    """Open (creating if needed) a SQLite store, e.g. ``sqlite:///path/to/p13n.db``."""
    url = make_url(url)
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: object) -> None:
        # Take transaction control from pysqlite so that writers can BEGIN IMMEDIATE: a deferred
        # transaction that later needs the write lock fails with "database is locked" at once
        # instead of waiting, which is what breaks concurrent ingest from two processes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows are overwritten with zeros, in their pages and in the log's page images
        # (per connection; some builds of SQLite have it on by default, most do not).
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    # BEGIN IMMEDIATE already serialises migrations between processes.
    return SQLStore(
        engine, "sqlite", tenant=tenant, housekeeping=SQLiteHousekeeping(), migrate=migrate
    )


class SQLiteHousekeeping:
    """``secure_delete`` (set on every connection) zeroes deleted rows in the database's pages;
    the write-ahead log still keeps the page images written before the deletion until a
    checkpoint truncates it."""

    def scrub(self, engine: Engine) -> str | None:
        return _truncate_wal(engine)

    def vacuum(self, engine: Engine, tables: Sequence[str]) -> list[str]:
        raw = engine.raw_connection()
        try:
            raw.cursor().execute("VACUUM")  # the whole file: ``tables`` are all of it
        finally:
            raw.close()
        left = _truncate_wal(engine)
        return [] if left is None else [left]


def _truncate_wal(engine: Engine) -> str | None:
    """Copy the write-ahead log into the database and truncate it to zero bytes. A reader
    inside a transaction blocks that, so it is retried for ``SCRUB_TIMEOUT_S``."""
    deadline = time.monotonic() + SCRUB_TIMEOUT_S
    raw = engine.raw_connection()  # autocommit (isolation_level None): no BEGIN around it
    try:
        while True:
            cursor = raw.cursor()
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
            if not busy:
                return None
            if time.monotonic() > deadline:
                return (
                    f"readers kept the write-ahead log busy for {SCRUB_TIMEOUT_S:.0f} s: it still "
                    "holds copies of deleted rows until the next checkpoint that truncates it "
                    "(the next forget, or closing the last connection)"
                )
            time.sleep(0.05)
    finally:
        raw.close()


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (persistent once done). Switching takes an exclusive lock for which
    SQLite does not wait on its busy timeout, so processes opening a new file at the same moment
    got "database is locked": retry until the timeout instead."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
