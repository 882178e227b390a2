"""Schema migrations (Alembic), run in place on open so an older store upgrades itself."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from p13n.errors import StoreError

VERSION_TABLE = "p13n_schema_version"
_SCRIPTS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this version of p13n writes."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the package always ships its migrations
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at; None for an empty database."""
    return MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE}
    ).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Refuses a database newer than this code."""
    current = current_revision(connection)
    known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            f"the store's schema is at revision {current!r}, which this p13n does not know; "
            "it was written by a newer p13n: upgrade p13n to open it"
        )
    command.upgrade(_config(connection), revision)
