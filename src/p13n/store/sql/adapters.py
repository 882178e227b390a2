"""``SQLAdapters``: the adapter registry and its weights."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select

from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import StoredAdapter, to_utc
from p13n.store.sql.core import SQLCore
from p13n.store.sql.rows import chunked, to_adapter


class SQLAdapters(SQLCore):
    """``AdapterStore`` on SQL."""

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

    def _adapter_query(self) -> Any:
        a = s.adapters
        columns = [column for column in a.c if column.name not in ("tenant", "weights")]
        return select(*columns).where(a.c.tenant == self.tenant)

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
            return [to_adapter(row) for row in c.execute(query)]

    def get_adapter(self, adapter_id: str) -> StoredAdapter | None:
        query = self._adapter_query().where(s.adapters.c.adapter_id == adapter_id)
        with self.engine.connect() as c:
            row = c.execute(query).first()
        return None if row is None else to_adapter(row)

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
