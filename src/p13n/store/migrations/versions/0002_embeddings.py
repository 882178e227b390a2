"""Embeddings beside their rows: one float32 vector per (row, encoder).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_embeddings",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("document_id", sa.String(200), nullable=False),
        sa.Column("encoder_id", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant", "user_id", "encoder_id", "document_id", name="pk_document_embeddings"
        ),
    )
    op.create_table(
        "item_embeddings",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("encoder_id", sa.String(200), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "encoder_id", "item_id", name="pk_item_embeddings"),
    )


def downgrade() -> None:
    op.drop_table("item_embeddings")
    op.drop_table("document_embeddings")
