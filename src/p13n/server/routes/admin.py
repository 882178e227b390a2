"""Tenants and their API keys, for the admin key only."""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request

from p13n.server.auth import get_state, require_admin
from p13n.server.routes.common import api_router
from p13n.server.schemas.fields import PathTenant
from p13n.server.schemas.requests import KeyIn, TenantIn
from p13n.server.schemas.responses import (
    AUTH_ERRORS,
    KeyOut,
    KeysOut,
    NewKeyOut,
    RevokedOut,
    TenantOut,
    TenantsOut,
    errors,
)
from p13n.server.tenants import ApiKey, Tenant, TenantSettings

router = api_router(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses=errors(*AUTH_ERRORS, 400, 422, 500),
)


def _tenant_out(tenant: Tenant) -> TenantOut:
    return TenantOut(
        name=tenant.name, settings=tenant.settings, created_at=tenant.created_at.isoformat()
    )


def _key_out(key: ApiKey) -> KeyOut:
    return KeyOut(
        key_id=key.key_id,
        tenant=key.tenant,
        label=key.label,
        created_at=key.created_at.isoformat(),
        revoked_at=None if key.revoked_at is None else key.revoked_at.isoformat(),
    )


def _checked(settings: TenantSettings) -> TenantSettings:
    """Settings that will work: a redaction asking for what cannot run here is refused now,
    not at the tenant's first ingest."""
    from p13n.privacy.redact import Redactor

    Redactor(settings.redaction)
    return settings


@router.post("/tenants", status_code=201, responses=errors(409))
def create_tenant(body: TenantIn, request: Request) -> TenantOut:
    settings = _checked(body.settings)
    return _tenant_out(get_state(request).tenants.create_tenant(body.name, settings))


@router.get("/tenants")
def list_tenants(request: Request) -> TenantsOut:
    return TenantsOut(tenants=[_tenant_out(t) for t in get_state(request).tenants.tenants()])


@router.put("/tenants/{tenant}", responses=errors(404))
def update_tenant(tenant: PathTenant, body: TenantSettings, request: Request) -> TenantOut:
    settings = _checked(body)
    return _tenant_out(get_state(request).tenants.update_tenant(tenant, settings))


@router.post("/tenants/{tenant}/keys", status_code=201, responses=errors(404))
def create_key(tenant: PathTenant, body: KeyIn, request: Request) -> NewKeyOut:
    """A new API key for the tenant; the key is shown only in this response."""
    key, record = get_state(request).tenants.create_key(tenant, body.label)
    return NewKeyOut(key=key, **dict(_key_out(record)))


@router.get("/tenants/{tenant}/keys", responses=errors(404))
def list_keys(tenant: PathTenant, request: Request) -> KeysOut:
    return KeysOut(keys=[_key_out(k) for k in get_state(request).tenants.keys(tenant)])


@router.delete("/keys/{key_id}", responses=errors(404))
def revoke_key(key_id: str, request: Request) -> RevokedOut:
    if not get_state(request).tenants.revoke(key_id):
        raise HTTPException(404, f"no live key {key_id!r}")
    return RevokedOut(revoked=key_id)
