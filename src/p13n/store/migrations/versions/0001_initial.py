"""Initial schema: users, documents, interactions, preferences, items, personas.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _common(*columns: sa.Column) -> list:  # type: ignore[type-arg]
    return [
        sa.Column("tenant", sa.String(64), nullable=False),
        *columns,
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        *_common(
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("attributes", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "user_id", name="pk_users"),
    )
    op.create_table(
        "documents",
        *_common(
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("document_id", sa.String(200), nullable=False),
            sa.Column("kind", sa.String(64), nullable=False),
            sa.Column("title", sa.Text, nullable=True),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("timestamp", sa.DateTime(timezone=True), nullable=True),
            sa.Column("meta", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "user_id", "document_id", name="pk_documents"),
    )
    op.create_index("ix_documents_user_time", "documents", ["tenant", "user_id", "timestamp"])
    op.create_table(
        "interactions",
        *_common(
            sa.Column("user_id", sa.String(200), nullable=False),
            sa.Column("interaction_id", sa.String(200), nullable=False),
            sa.Column("item_id", sa.String(200), nullable=False),
            sa.Column("kind", sa.String(64), nullable=False),
            sa.Column("value", sa.Float, nullable=True),
            sa.Column("timestamp", sa.DateTime(timezone=True), nullable=True),
            sa.Column("meta", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "user_id", "interaction_id", name="pk_interactions"),
    )
    op.create_index("ix_interactions_item", "interactions", ["tenant", "item_id"])
    op.create_table(
        "preferences",
        *_common(
            sa.Column("preference_id", sa.String(200), nullable=False),
            sa.Column("user_id", sa.String(200), nullable=True),
            sa.Column("persona_id", sa.String(200), nullable=True),
            sa.Column("prompt", sa.Text, nullable=False),
            sa.Column("chosen", sa.Text, nullable=False),
            sa.Column("rejected", sa.Text, nullable=False),
            sa.Column("timestamp", sa.DateTime(timezone=True), nullable=True),
            sa.Column("meta", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "preference_id", name="pk_preferences"),
    )
    op.create_index("ix_preferences_user", "preferences", ["tenant", "user_id"])
    op.create_index("ix_preferences_persona", "preferences", ["tenant", "persona_id"])
    op.create_table(
        "items",
        *_common(
            sa.Column("item_id", sa.String(200), nullable=False),
            sa.Column("title", sa.Text, nullable=False),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("attributes", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "item_id", name="pk_items"),
    )
    op.create_table(
        "personas",
        *_common(
            sa.Column("persona_id", sa.String(200), nullable=False),
            sa.Column("description", sa.Text, nullable=False),
            sa.Column("meta", Json, nullable=False),
        ),
        sa.PrimaryKeyConstraint("tenant", "persona_id", name="pk_personas"),
    )
    op.create_table(
        "persona_members",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("persona_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "persona_id", "user_id", name="pk_persona_members"),
    )
    op.create_index("ix_persona_members_user", "persona_members", ["tenant", "user_id"])


def downgrade() -> None:
    for table in (
        "persona_members",
        "personas",
        "items",
        "preferences",
        "interactions",
        "documents",
        "users",
    ):
        op.drop_table(table)
