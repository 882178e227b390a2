"""``SQLPolicies``: learned personalization policies, per task."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select

from p13n.store import schema as s
from p13n.store.base import StoredPolicy, to_utc
from p13n.store.sql.core import SQLCore


class SQLPolicies(SQLCore):
    """``PolicyStore`` on SQL."""

    def put_policy(self, policy: StoredPolicy) -> None:
        with self._transaction() as c:
            self._upsert(
                c,
                s.policies,
                [
                    {
                        "tenant": self.tenant,
                        "task": policy.task,
                        "policy": policy.policy,
                        "created_at": policy.created_at,
                    }
                ],
            )

    def get_policy(self, task: str) -> StoredPolicy | None:
        found = self._policies(task)
        return found[0] if found else None

    def policies(self) -> list[StoredPolicy]:
        return self._policies(None)

    def delete_policy(self, task: str) -> bool:
        p = s.policies
        with self._transaction() as c:
            result = c.execute(delete(p).where(p.c.tenant == self.tenant, p.c.task == task))
        return bool(result.rowcount)

    def _policies(self, task: str | None) -> list[StoredPolicy]:
        p = s.policies
        query = select(p.c.task, p.c.policy, p.c.created_at).where(p.c.tenant == self.tenant)
        if task is not None:
            query = query.where(p.c.task == task)
        with self.engine.connect() as c:
            rows = c.execute(query.order_by(p.c.task)).all()
        return [
            StoredPolicy(row.task, dict(row.policy), to_utc(row.created_at) or datetime.now(UTC))
            for row in rows
        ]
