"""``SQLStore``: the ``Store`` protocol on SQLAlchemy Core, for the sqlite and postgres backends.

One part per narrow protocol: ``records`` and ``writes`` (``RecordStore``), ``personas``,
``profiles``, ``adapters``, ``policies``; ``core`` holds the engine and what the parts share,
``rows`` the record columns and row mappers.
"""

from __future__ import annotations

from sqlalchemy import delete

from p13n.store import schema as s
from p13n.store.base import check_tenant
from p13n.store.sql.adapters import SQLAdapters
from p13n.store.sql.core import WRITE, Housekeeping, SQLCore
from p13n.store.sql.personas import SQLPersonas
from p13n.store.sql.policies import SQLPolicies
from p13n.store.sql.profiles import SQLProfiles
from p13n.store.sql.records import SQLRecords
from p13n.store.sql.writes import SQLWrites


class SQLStore(SQLWrites, SQLRecords, SQLPersonas, SQLProfiles, SQLAdapters, SQLPolicies, SQLCore):
    """A store in one SQL database, seen as one tenant."""

    def with_tenant(self, tenant: str) -> SQLStore:
        clone = object.__new__(SQLStore)
        clone.engine, clone.backend = self.engine, self.backend
        clone._migration_lock = self._migration_lock
        clone.housekeeping = self.housekeeping
        clone.tenant = check_tenant(tenant)
        return clone

    # -- housekeeping --------------------------------------------------------------------------

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


__all__ = ["WRITE", "Housekeeping", "SQLStore"]
