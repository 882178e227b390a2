"""``SQLPersonas``: reading and deleting personas."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, delete, select, update

from p13n.data import Persona, Preference
from p13n.store import schema as s
from p13n.store.sql.core import SQLCore
from p13n.store.sql.rows import chunked


class SQLPersonas(SQLCore):
    """``PersonaStore`` on SQL."""

    def persona_preferences(self, persona_id: str) -> list[Preference]:
        return self._preferences(s.preferences.c.persona_id == persona_id)

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
            return delete_personas_in(c, self.tenant, persona_ids, uuid.uuid4().hex)


def delete_personas_in(c: Connection, tenant: str, persona_ids: Sequence[str], version: str) -> int:
    """Delete these personas of ``tenant`` inside transaction ``c``, with their memberships and
    adapters; their members' data version becomes ``version``. Returns how many were deleted."""
    m, p, u = s.persona_members, s.personas, s.users
    deleted = 0
    for chunk in chunked(sorted(set(persona_ids))):
        ids = list(chunk)
        members = list(
            c.execute(
                select(m.c.user_id).distinct().where(m.c.tenant == tenant, m.c.persona_id.in_(ids))
            ).scalars()
        )
        c.execute(delete(m).where(m.c.tenant == tenant, m.c.persona_id.in_(ids)))
        result = c.execute(delete(p).where(p.c.tenant == tenant, p.c.persona_id.in_(ids)))
        deleted += result.rowcount
        # After the personas: a put_adapter holding one of their rows has committed by now.
        a = s.adapters
        c.execute(delete(a).where(a.c.tenant == tenant, a.c.persona_id.in_(ids)))
        for users in chunked(members):  # membership is user data: their version moves
            c.execute(
                update(u)
                .where(u.c.tenant == tenant, u.c.user_id.in_(list(users)))
                .values(data_version=version)
            )
    return deleted
