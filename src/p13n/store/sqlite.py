"""The embedded ``sqlite`` backend: one file, WAL, safe for several processes at once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, make_url

from p13n.store.sql import WRITE, SQLStore

BUSY_TIMEOUT_S = 60.0


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
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    # BEGIN IMMEDIATE already serialises migrations between processes.
    return SQLStore(engine, "sqlite", tenant=tenant, migrate=migrate)


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
