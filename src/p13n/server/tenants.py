"""Tenants and their API keys. A key is ``p13n_<key id>_<secret>``; only the secret's SHA-256 is
stored, and a key is looked up by its id and checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from p13n.errors import TenantExistsError, UnknownTenantError
from p13n.privacy.redact import RedactionConfig
from p13n.store import schema as s
from p13n.store.base import check_tenant

KEY_PREFIX = "p13n_"


def integral(value: Any) -> Any:
    """JSON Schema's integers include 4.0, which strict validation would refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class TenantSettings(BaseModel):
    """What an admin configures per tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redaction: RedactionConfig = RedactionConfig()
    rate_limit_per_minute: Annotated[int, BeforeValidator(integral)] = Field(
        600, gt=0, strict=True, description="requests per key per minute"
    )


@dataclass(frozen=True)
class Tenant:
    name: str
    settings: TenantSettings
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key; None otherwise."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, _, secret = key[len(KEY_PREFIX) :].partition("_")
    if not key_id or not secret or len(key_id) > 32:
        return None
    return key_id, secret


class TenantRegistry:
    """Tenants and keys, in the same database as the tenants' data."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Unknown key ids are checked against this digest, so a miss costs what a hit costs.
        self._decoy = _digest(secrets.token_urlsafe(32))

    def create_tenant(self, name: str, settings: TenantSettings | None = None) -> Tenant:
        tenant = Tenant(check_tenant(name), settings or TenantSettings(), datetime.now(UTC))
        try:
            with self.engine.begin() as c:
                c.execute(
                    insert(s.tenants).values(
                        tenant=tenant.name,
                        settings=tenant.settings.model_dump(mode="json"),
                        created_at=tenant.created_at,
                    )
                )
        except IntegrityError:
            raise TenantExistsError(f"tenant {name!r} exists already") from None
        return tenant

    def update_tenant(self, name: str, settings: TenantSettings) -> Tenant:
        with self.engine.begin() as c:
            done = c.execute(
                update(s.tenants)
                .where(s.tenants.c.tenant == name)
                .values(settings=settings.model_dump(mode="json"))
            ).rowcount
        if not done:
            raise UnknownTenantError(name)
        tenant = self.tenant(name)
        assert tenant is not None
        return tenant

    def tenant(self, name: str) -> Tenant | None:
        with self.engine.connect() as c:
            row = c.execute(select(s.tenants).where(s.tenants.c.tenant == name)).first()
        return None if row is None else _tenant(row._mapping)

    def tenants(self) -> list[Tenant]:
        with self.engine.connect() as c:
            rows = c.execute(select(s.tenants).order_by(s.tenants.c.tenant)).all()
        return [_tenant(row._mapping) for row in rows]

    def create_key(self, tenant: str, label: str = "") -> tuple[str, ApiKey]:
        """A new key for ``tenant``: (the key, shown once; its stored record)."""
        if self.tenant(tenant) is None:
            raise UnknownTenantError(tenant)
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        record = ApiKey(key_id, tenant, label, datetime.now(UTC), None)
        with self.engine.begin() as c:
            c.execute(
                insert(s.api_keys).values(
                    key_id=key_id,
                    tenant=tenant,
                    secret_sha256=_digest(secret),
                    label=label,
                    created_at=record.created_at,
                    revoked_at=None,
                )
            )
        return f"{KEY_PREFIX}{key_id}_{secret}", record

    def keys(self, tenant: str) -> list[ApiKey]:
        if self.tenant(tenant) is None:
            raise UnknownTenantError(tenant)
        k = s.api_keys
        with self.engine.connect() as c:
            rows = c.execute(select(k).where(k.c.tenant == tenant).order_by(k.c.created_at)).all()
        return [_key(row._mapping) for row in rows]

    def revoke(self, key_id: str) -> bool:
        k = s.api_keys
        with self.engine.begin() as c:
            done = c.execute(
                update(k)
                .where(k.c.key_id == key_id, k.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
        return bool(done)

    def authenticate(self, key: str) -> ApiKey | None:
        """The live key record ``key`` belongs to; None for an unknown, wrong or revoked key."""
        parts = split_key(key)
        key_id, secret = parts if parts is not None else ("", key)
        k = s.api_keys
        with self.engine.connect() as c:
            row = c.execute(select(k).where(k.c.key_id == key_id)).first() if key_id else None
        expected = row._mapping["secret_sha256"] if row is not None else self._decoy
        matches = hmac.compare_digest(_digest(secret), expected)
        if row is None or not matches or row._mapping["revoked_at"] is not None:
            return None
        return _key(row._mapping)


def _tenant(row: Any) -> Tenant:
    return Tenant(
        row["tenant"], TenantSettings.model_validate(row["settings"]), _utc(row["created_at"])
    )


def _key(row: Any) -> ApiKey:
    revoked = row["revoked_at"]
    return ApiKey(
        row["key_id"],
        row["tenant"],
        row["label"],
        _utc(row["created_at"]),
        None if revoked is None else _utc(revoked),
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
