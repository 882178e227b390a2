"""``SQLProfiles``: stored LLM-written profiles."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from p13n.errors import StoreError
from p13n.store import schema as s
from p13n.store.base import StoredProfile, to_utc
from p13n.store.sql.core import SQLCore


class SQLProfiles(SQLCore):
    """``ProfileStore`` on SQL."""

    def get_profile(self, user_id: str, profile_key: str) -> StoredProfile | None:
        p = s.profiles
        with self.engine.connect() as c:
            row = c.execute(
                select(p.c.data_version, p.c.model, p.c.text, p.c.created_at).where(
                    p.c.tenant == self.tenant,
                    p.c.user_id == user_id,
                    p.c.profile_key == profile_key,
                )
            ).first()
        if row is None:
            return None
        return StoredProfile(
            user_id=user_id,
            profile_key=profile_key,
            data_version=row.data_version,
            model=row.model,
            text=row.text,
            created_at=to_utc(row.created_at) or datetime.now(UTC),
        )

    def put_profile(self, profile: StoredProfile) -> None:
        with self._transaction() as c:
            if self._user_row_missing(c, profile.user_id):
                raise StoreError(f"cannot store a profile for unknown user {profile.user_id!r}")
            self._upsert(
                c,
                s.profiles,
                [
                    {
                        "tenant": self.tenant,
                        "user_id": profile.user_id,
                        "profile_key": profile.profile_key,
                        "data_version": profile.data_version,
                        "model": profile.model,
                        "text": profile.text,
                        "created_at": profile.created_at,
                    }
                ],
            )
