"""The store's tables (SQLAlchemy Core). Migrations under ``migrations/`` create exactly these;
a test compares the two so they cannot drift.

Every per-user table starts its primary key with (tenant, user_id), so one user's rows are one
index range: reads are scoped by construction and fetching a user's data is a range scan.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

TENANT = 64
ID = 200
HASH = 32

Json = JSON().with_variant(JSONB(), "postgresql")


def _timestamps() -> list[Column[object]]:
    return [Column("ingested_at", DateTime(timezone=True), nullable=False)]


users = Table(
    "users",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("user_id", String(ID), nullable=False),
    Column("attributes", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    # Revision 0003: a fresh token on every write that touches the user's data (NULL before).
    Column("data_version", String(HASH), nullable=True),
    PrimaryKeyConstraint("tenant", "user_id", name="pk_users"),
)

documents = Table(
    "documents",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("user_id", String(ID), nullable=False),
    Column("document_id", String(ID), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("title", Text, nullable=True),
    Column("text", Text, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=True),
    Column("meta", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "user_id", "document_id", name="pk_documents"),
    Index("ix_documents_user_time", "tenant", "user_id", "timestamp"),
)

interactions = Table(
    "interactions",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("user_id", String(ID), nullable=False),
    Column("interaction_id", String(ID), nullable=False),
    Column("item_id", String(ID), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("value", Float, nullable=True),
    Column("timestamp", DateTime(timezone=True), nullable=True),
    Column("meta", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "user_id", "interaction_id", name="pk_interactions"),
    Index("ix_interactions_item", "tenant", "item_id"),
)

preferences = Table(
    "preferences",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("preference_id", String(ID), nullable=False),
    Column("user_id", String(ID), nullable=True),
    Column("persona_id", String(ID), nullable=True),
    Column("prompt", Text, nullable=False),
    Column("chosen", Text, nullable=False),
    Column("rejected", Text, nullable=False),
    Column("timestamp", DateTime(timezone=True), nullable=True),
    Column("meta", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "preference_id", name="pk_preferences"),
    Index("ix_preferences_user", "tenant", "user_id"),
    Index("ix_preferences_persona", "tenant", "persona_id"),
)

items = Table(
    "items",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("item_id", String(ID), nullable=False),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("attributes", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "item_id", name="pk_items"),
)

personas = Table(
    "personas",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("persona_id", String(ID), nullable=False),
    Column("description", Text, nullable=False),
    Column("meta", Json, nullable=False),
    Column("content_hash", String(HASH), nullable=False),
    *_timestamps(),
    PrimaryKeyConstraint("tenant", "persona_id", name="pk_personas"),
)

persona_members = Table(
    "persona_members",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("persona_id", String(ID), nullable=False),
    Column("user_id", String(ID), nullable=False),
    PrimaryKeyConstraint("tenant", "persona_id", "user_id", name="pk_persona_members"),
    Index("ix_persona_members_user", "tenant", "user_id"),
)

# Revision 0002: vectors live beside their rows, keyed by the row and the encoder that made them.
document_embeddings = Table(
    "document_embeddings",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("user_id", String(ID), nullable=False),
    Column("document_id", String(ID), nullable=False),
    Column("encoder_id", String(ID), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    PrimaryKeyConstraint(
        "tenant", "user_id", "encoder_id", "document_id", name="pk_document_embeddings"
    ),
)

item_embeddings = Table(
    "item_embeddings",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("item_id", String(ID), nullable=False),
    Column("encoder_id", String(ID), nullable=False),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tenant", "encoder_id", "item_id", name="pk_item_embeddings"),
)

# Revision 0003: LLM-written user profiles, valid for the data version they were written from.
profiles = Table(
    "profiles",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("user_id", String(ID), nullable=False),
    Column("profile_key", String(ID), nullable=False),
    Column("data_version", String(HASH), nullable=False),
    Column("model", String(ID), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", "user_id", "profile_key", name="pk_profiles"),
)

# Revision 0004: the adapter registry. An adapter belongs to one user, to one persona, or (neither
# set) to the whole tenant; its weights (safetensors bytes) sit in the row, read only on demand.
adapters = Table(
    "adapters",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("adapter_id", String(ID), nullable=False),
    Column("user_id", String(ID), nullable=True),
    Column("persona_id", String(ID), nullable=True),
    Column("task", String(ID), nullable=False),
    Column("method", String(64), nullable=False),
    Column("base_model", String(ID), nullable=False),
    Column("base_hash", String(64), nullable=False),
    Column("config", Json, nullable=False),
    Column("data_size", Integer, nullable=False),
    Column("metrics", Json, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("weights_sha256", String(64), nullable=False),
    Column("weights", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", "adapter_id", name="pk_adapters"),
    Index("ix_adapters_user", "tenant", "user_id"),
    Index("ix_adapters_persona", "tenant", "persona_id"),
)

PER_USER_TABLES = (
    users,
    documents,
    document_embeddings,
    interactions,
    preferences,
    persona_members,
    profiles,
    adapters,
)
"""Tables with a ``user_id`` column: ``forget`` empties each of them for the user."""

# Revision 0006: learned personalization policies, one per tenant and task (task-wide: no user's
# rows, only aggregate validation evidence).
policies = Table(
    "policies",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("task", String(ID), nullable=False),
    Column("policy", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", "task", name="pk_policies"),
)

# Revision 0005: the service's tenants and their API keys. Keys are stored as SHA-256 digests of
# high-entropy secrets (a slow password hash buys nothing for 256-bit random tokens).
tenants = Table(
    "tenants",
    metadata,
    Column("tenant", String(TENANT), nullable=False),
    Column("settings", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", name="pk_tenants"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), nullable=False),
    Column("tenant", String(TENANT), nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    Column("label", String(ID), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    Index("ix_api_keys_tenant", "tenant"),
)
