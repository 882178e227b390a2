"""An adapter registry: trained adapters (LoRA, DPO, embedding projectors) with their weights.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "adapters",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("adapter_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("persona_id", sa.String(200), nullable=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("base_model", sa.String(200), nullable=False),
        sa.Column("base_hash", sa.String(64), nullable=False),
        sa.Column("config", Json, nullable=False),
        sa.Column("data_size", sa.Integer, nullable=False),
        sa.Column("metrics", Json, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("weights", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "adapter_id", name="pk_adapters"),
    )
    op.create_index("ix_adapters_user", "adapters", ["tenant", "user_id"])
    op.create_index("ix_adapters_persona", "adapters", ["tenant", "persona_id"])


def downgrade() -> None:
    op.drop_index("ix_adapters_persona", table_name="adapters")
    op.drop_index("ix_adapters_user", table_name="adapters")
    op.drop_table("adapters")
