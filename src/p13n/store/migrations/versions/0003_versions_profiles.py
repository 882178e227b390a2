"""A per-user data version (caches key on it) and stored LLM-written user profiles.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("data_version", sa.String(32), nullable=True))
    op.create_table(
        "profiles",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("profile_key", sa.String(200), nullable=False),
        sa.Column("data_version", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user_id", "profile_key", name="pk_profiles"),
    )


def downgrade() -> None:
    op.drop_table("profiles")
    op.drop_column("users", "data_version")
