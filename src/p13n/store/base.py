"""The store protocols (``Store`` and the narrow ones it composes) and the values they return.

Every read takes the user it is about (the store itself is bound to one tenant): there is no call
that returns another user's rows. Tenant-wide reads exist only for tenant-wide data (the item
catalog, personas) and for listing users.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from p13n.data import Document, Interaction, Item, Persona, Preference, User
from p13n.errors import StoreError

DEFAULT_TENANT = "default"
MAX_OFFSET = 2**63 - 1
"""Largest listing offset: both backends count rows in signed 64-bit integers."""
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""Tenant names: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit."""
_TENANT = re.compile(TENANT_PATTERN)

Vector = npt.NDArray[np.float32]
UserKey = tuple[str, str]
"""(user_id, record id) for per-user records."""


def check_tenant(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise StoreError(
            f"tenant {tenant!r} is malformed: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return tenant


@dataclass(frozen=True, eq=False)
class EmbeddedDocuments:
    """One user's documents with their vectors from one encoder, in columns: row i of
    ``vectors`` belongs to ``ids[i]``. ``missing`` lists documents with no vector from it.

    Columns make the fetch cheap; ``document(i)`` or ``documents`` build ``Document`` objects only
    for the rows a caller actually uses (a retriever scores all rows, then keeps k).
    """

    encoder_id: str
    user_id: str
    ids: list[str]
    kinds: list[str]
    titles: list[str | None]
    texts: list[str]
    vectors: Vector
    missing: list[str] = field(default_factory=list)
    raw_timestamps: list[object] = field(default_factory=list, repr=False)
    raw_metadata: list[str] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def timestamps(self) -> list[datetime | None]:
        return [to_utc(value) for value in self.raw_timestamps]

    def document(self, row: int) -> Document:
        return Document.model_construct(
            id=self.ids[row],
            user_id=self.user_id,
            kind=self.kinds[row],
            title=self.titles[row],
            text=self.texts[row],
            timestamp=self.timestamps[row],
            metadata=json.loads(self.raw_metadata[row]),
        )

    @cached_property
    def documents(self) -> list[Document]:
        return [self.document(row) for row in range(len(self))]


def to_utc(value: object) -> datetime | None:
    """A stored timestamp (a datetime, or SQLite's text form) as an aware UTC datetime."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class StoredProfile:
    """An LLM-written profile of a user, valid while the user's data is at ``data_version``."""

    user_id: str
    profile_key: str
    """What wrote it: builder, model and instruction (a different key is a different profile)."""
    data_version: str
    model: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class StoredAdapter:
    """A trained adapter's registry entry; its weights (safetensors bytes) are read separately.

    An adapter belongs to one user, to one persona, or (neither set) to the whole tenant.
    """

    adapter_id: str
    """e.g. ``"user:u1:headline:lora"``; the key within the tenant."""
    user_id: str | None
    """The user it belongs to (None for persona and tenant-wide adapters)."""
    persona_id: str | None
    """The persona it belongs to (None otherwise)."""
    task: str
    method: str
    """``"lora"``, ``"dpo"``, ``"embedding"``."""
    base_model: str
    """The base model's name."""
    base_hash: str
    """sha256 of the base model's weights."""
    config: dict[str, Any]
    """PEFT or projector config (JSON-able)."""
    data_size: int
    """Training examples."""
    metrics: dict[str, Any]
    """Training metrics (JSON-able)."""
    size_bytes: int
    """``len(weights)``."""
    weights_sha256: str
    """sha256 hex digest of the weights bytes."""
    created_at: datetime


@dataclass(frozen=True)
class StoredPolicy:
    """A task's learned personalization policy (``p13n.personalize.policy.Policy`` as JSON)."""

    task: str
    policy: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class UserCounts:
    documents: int
    interactions: int
    preferences: int
    embeddings: int
    personas: int


@dataclass(frozen=True)
class UserSummary:
    user: User
    counts: UserCounts


@dataclass(frozen=True)
class WriteSet:
    """Rows one ingest batch writes, in one transaction. Built by ``p13n.ingest``."""

    users: Sequence[User] = ()
    implicit_user_ids: Sequence[str] = ()
    """Users named by other records: created without attributes if missing, never overwritten."""
    documents: Sequence[Document] = ()
    interactions: Sequence[Interaction] = ()
    preferences: Sequence[Preference] = ()
    items: Sequence[Item] = ()
    personas: Sequence[Persona] = ()
    deleted_personas: Sequence[str] = ()
    """Persona ids deleted (with their memberships) before ``personas`` are written."""
    encoder_id: str | None = None
    document_vectors: dict[UserKey, Vector] = field(default_factory=dict)
    item_vectors: dict[str, Vector] = field(default_factory=dict)


class TenantScoped(Protocol):
    """What every store protocol shares: the backend's name and the one tenant it is bound to."""

    backend: str
    tenant: str


@runtime_checkable
class RecordStore(TenantScoped, Protocol):
    """Users and their records: documents, interactions, preferences, items, vectors, versions."""

    def write(self, changes: WriteSet) -> None:
        """Upsert every row of ``changes`` in one transaction: all of it lands or none does."""
        ...

    def content_hashes(self, record_type: str, keys: Iterable[object]) -> dict[object, str]:
        """Stored content hashes of these records (``UserKey`` for per-user types, else id)."""
        ...

    def embedded(self, record_type: str, keys: Iterable[object], encoder_id: str) -> set[object]:
        """Which of these documents (``UserKey``) or items (id) have a vector from the encoder."""
        ...

    def get_user(self, user_id: str) -> User | None: ...

    def list_users(self, *, limit: int = 100, offset: int = 0) -> list[UserSummary]: ...

    def count_users(self) -> int: ...

    def data_version(self, user_id: str) -> str | None:
        """A token that changes whenever the user's data changes; None for an unknown user.
        Caches of anything derived from a user's data (indexes, profiles) key on it."""
        ...

    def user_counts(self, user_id: str) -> UserCounts: ...

    def documents(
        self, user_id: str, *, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Document]:
        """The user's documents, newest first."""
        ...

    def document_embeddings(
        self, user_id: str, encoder_id: str, *, kinds: Sequence[str] | None = None
    ) -> EmbeddedDocuments: ...

    def interactions(
        self, user_id: str, *, kinds: Sequence[str] | None = None, limit: int | None = None
    ) -> list[Interaction]:
        """The user's interactions, newest first."""
        ...

    def all_interactions(self, *, kinds: Sequence[str] | None = None) -> list[Interaction]:
        """Every interaction of the tenant, by user, then oldest first (undated last), then id.
        For tenant-wide training and evaluation (a recommender's whole interaction matrix)."""
        ...

    def preferences(self, user_id: str) -> list[Preference]: ...

    def items(self, item_ids: Sequence[str]) -> list[Item]: ...

    def catalog(self) -> list[Item]:
        """Every item of the tenant, by id."""
        ...

    def all_users(self) -> list[User]:
        """Every user of the tenant, with attributes, by id."""
        ...

    def item_vectors(self, item_ids: Sequence[str], encoder_id: str) -> dict[str, Vector]: ...

    def delete_items(self, item_ids: Sequence[str]) -> int:
        """Delete these catalog items with their vectors; returns how many were deleted. Users'
        interactions with them stay: they are the users' history, not the catalog's."""
        ...

    def delete_records(self, user_id: str, record_type: str, record_ids: Sequence[str]) -> int:
        """Delete some of a user's documents (with their vectors), interactions or preferences in
        one transaction; the user's data version moves. Returns how many records were deleted."""
        ...


@runtime_checkable
class PersonaStore(TenantScoped, Protocol):
    """Personas (written with ``RecordStore.write``): their members, preferences and deletion."""

    def persona_preferences(self, persona_id: str) -> list[Preference]: ...

    def personas(self) -> list[Persona]: ...

    def personas_of(self, user_id: str) -> list[str]: ...

    def delete_personas(self, persona_ids: Sequence[str]) -> int:
        """Delete these personas, their memberships (members get a new data version) and their
        adapters; returns how many personas were deleted."""
        ...


@runtime_checkable
class ProfileStore(TenantScoped, Protocol):
    """LLM-written user profiles, keyed by user and profile key."""

    def get_profile(self, user_id: str, profile_key: str) -> StoredProfile | None: ...

    def put_profile(self, profile: StoredProfile) -> None:
        """Store (replace) a profile; refused for a user the store does not know."""
        ...


@runtime_checkable
class AdapterStore(TenantScoped, Protocol):
    """The adapter registry: trained adapters' entries and their weights."""

    def put_adapter(self, adapter: StoredAdapter, weights: bytes) -> None:
        """Store (replace) an adapter and its weights in one transaction. Refused, storing
        nothing, when it names both a user and a persona, an unknown user or persona, or when
        ``size_bytes`` or ``weights_sha256`` do not describe ``weights``."""
        ...

    def adapters(
        self,
        *,
        user_id: str | None = None,
        persona_id: str | None = None,
        task: str | None = None,
        method: str | None = None,
    ) -> list[StoredAdapter]:
        """Registry entries (without weights) matching every filter given, by adapter id."""
        ...

    def get_adapter(self, adapter_id: str) -> StoredAdapter | None: ...

    def adapter_weights(self, adapter_id: str) -> bytes | None:
        """The adapter's weights exactly as stored; None for an unknown adapter."""
        ...

    def delete_adapters(self, adapter_ids: Sequence[str]) -> int:
        """Delete these adapters; returns how many were deleted."""
        ...


@runtime_checkable
class PolicyStore(TenantScoped, Protocol):
    """Learned personalization policies, one per task of the tenant."""

    def put_policy(self, policy: StoredPolicy) -> None:
        """Store (replace) the task's policy."""
        ...

    def get_policy(self, task: str) -> StoredPolicy | None: ...

    def policies(self) -> list[StoredPolicy]:
        """Every task's policy, by task."""
        ...

    def delete_policy(self, task: str) -> bool:
        """Delete the task's policy; whether there was one."""
        ...


@runtime_checkable
class AdminStore(TenantScoped, Protocol):
    """The whole store's housekeeping: other tenants, the schema, erasure, closing."""

    def with_tenant(self, tenant: str) -> Store:
        """The same database seen as another tenant (shares the connection pool)."""
        ...

    def forget(self, user_id: str) -> dict[str, int]:
        """Delete every row of the user in every table (their adapters too); returns rows
        deleted per table. Call ``scrub`` next so that no copy stays in the store's files."""
        ...

    def scrub(self) -> str | None:
        """Erase from the store's files what deleted rows leave behind, where the backend can do
        it now; returns None when nothing is left, else what is and how an operator removes it."""
        ...

    def vacuum(self) -> list[str]:
        """Rewrite the whole store (every tenant) so that no deleted row is left in its files,
        locking tables meanwhile (an operator's task); returns what is still left."""
        ...

    def schema_revision(self) -> str | None: ...

    def close(self) -> None: ...


@runtime_checkable
class Store(
    RecordStore, PersonaStore, ProfileStore, AdapterStore, PolicyStore, AdminStore, Protocol
):
    """Where user data lives: every narrow protocol at once. Implementations: ``sqlite`` and
    ``postgres`` (``p13n.store.sql``). A caller that needs less asks for the narrow one."""
