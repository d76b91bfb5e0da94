"""Passenger content: installed titles and feedback survey answers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the content and feedback tables."""
    op.create_table(
        "content",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("dir", sa.String(200), nullable=False),
        sa.Column("manifest", sa.JSON, nullable=False),
        sa.Column("installed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("seat", sa.String(4)),
        sa.Column("answers", sa.JSON, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("utc", sa.Float, nullable=False),
        sa.Column("time_source", sa.String(16), nullable=False),
        sa.Column("outbox_key", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_table("feedback")
    op.drop_table("content")
