"""Where user data lives: narrow store protocols (``RecordStore``, ``PersonaStore``,
``ProfileStore``, ``AdapterStore``, ``PolicyStore``, ``AdminStore``), ``Store`` composing them
all, and the ``sqlite`` and ``postgres`` backends."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from p13n.errors import StoreError
from p13n.registry import Registry
from p13n.store.base import (
    DEFAULT_TENANT,
    MAX_OFFSET,
    AdapterStore,
    AdminStore,
    EmbeddedDocuments,
    PersonaStore,
    PolicyStore,
    ProfileStore,
    RecordStore,
    Store,
    StoredAdapter,
    StoredPolicy,
    StoredProfile,
    UserCounts,
    UserSummary,
    WriteSet,
)
from p13n.store.migrate import head_revision
from p13n.store.postgres import open_postgres
from p13n.store.sql import SQLStore
from p13n.store.sqlite import open_sqlite

Opener = Callable[..., SQLStore]
backends: Registry[Opener] = Registry("store backend")
backends.register("sqlite", open_sqlite)
backends.register("postgres", open_postgres)

_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


def open_store(url: str, *, tenant: str = DEFAULT_TENANT, migrate: bool = True) -> Store:
    """Open the store at ``url`` (``sqlite:///file.db`` or ``postgresql://...``) as ``tenant``.

    With ``migrate`` (the default) an older schema is upgraded in place first.
    """
    try:
        scheme = make_url(url).get_backend_name()
    except ArgumentError:
        raise StoreError(
            f"store URL {url!r} does not parse: use sqlite:///path/to/p13n.db "
            "or postgresql://user@host:5432/database"
        ) from None
    if scheme not in _SCHEMES:
        raise StoreError(
            f"store URL {url!r} names {scheme!r}; p13n stores are sqlite:// or postgresql://"
        )
    return backends.get(_SCHEMES[scheme])(url, tenant=tenant, migrate=migrate)


__all__ = [
    "DEFAULT_TENANT",
    "MAX_OFFSET",
    "AdapterStore",
    "AdminStore",
    "EmbeddedDocuments",
    "PersonaStore",
    "PolicyStore",
    "ProfileStore",
    "RecordStore",
    "SQLStore",
    "Store",
    "StoredAdapter",
    "StoredPolicy",
    "StoredProfile",
    "UserCounts",
    "UserSummary",
    "WriteSet",
    "backends",
    "head_revision",
    "open_store",
]
