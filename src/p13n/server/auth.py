"""Who is calling: an API key resolves to a tenant, or to the admin. Every tenant handler gets
its store already scoped to the caller's tenant, so no handler can name another tenant.

The API takes keys only from ``Authorization: Bearer``. The dashboard's login cookie is read by
the dashboard's pages alone: a cookie is sent by the browser on its own, so a page elsewhere
that gets the browser to call the API must not be acting with the user's key."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import HTTPException, Request

from p13n.server.state import ServerState
from p13n.server.tenants import TenantSettings
from p13n.store import Store

COOKIE = "p13n_key"


@dataclass(frozen=True)
class Caller:
    tenant: str | None
    key_id: str | None
    admin: bool = False


@dataclass(frozen=True)
class TenantScope:
    """A tenant caller with its scoped store."""

    caller: Caller
    tenant: str
    settings: TenantSettings
    store: Store
    state: ServerState


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.p13n
    return state


def presented_key(request: Request, *, cookie: bool = False) -> str | None:
    """The bearer token; with ``cookie``, else the dashboard's login cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (request.cookies.get(COOKIE) or None) if cookie else None


def identify(request: Request, *, cookie: bool = False) -> Caller | None:
    """The caller a request's key names; None without a valid key."""
    key = presented_key(request, cookie=cookie)
    if key is None:
        return None
    state = get_state(request)
    if hmac.compare_digest(key.encode(), state.admin_key.encode()):
        return Caller(None, None, admin=True)
    record = state.tenants.authenticate(key)
    return None if record is None else Caller(record.tenant, record.key_id)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def require_admin(request: Request) -> Caller:
    caller = identify(request)
    if caller is None:
        raise _unauthorized("a valid admin key is needed (Authorization: Bearer <key>)")
    if not caller.admin:
        raise HTTPException(403, "this endpoint needs the admin key")
    return caller


def require_tenant(request: Request) -> TenantScope:
    """Dependency of every tenant endpoint: a live tenant key, within its rate limit."""
    return tenant_scope(request, cookie=False)


def tenant_scope(request: Request, *, cookie: bool) -> TenantScope:
    """The tenant scope of the request's key (with ``cookie``, the dashboard's cookie counts)."""
    caller = identify(request, cookie=cookie)
    if caller is None:
        raise _unauthorized("a valid API key is needed (Authorization: Bearer <key>)")
    if caller.admin or caller.tenant is None:
        raise HTTPException(403, "the admin key manages tenants; use a tenant's key for data")
    state = get_state(request)
    assert caller.key_id is not None
    settings = state.tenant_settings(caller.tenant)  # read once per request
    state.limiter.take(caller.key_id, settings.rate_limit_per_minute)
    return TenantScope(caller, caller.tenant, settings, state.tenant_store(caller.tenant), state)
