"""Passenger orders.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the orders table."""
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("seat", sa.String(4), nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("utc", sa.Float, nullable=False),
        sa.Column("time_source", sa.String(16), nullable=False),
        sa.Column("outbox_key", sa.String(128), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("orders")
