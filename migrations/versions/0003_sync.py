"""Outbound sync: acknowledged watermarks, drop counters and ranges, link budgets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the sync tables."""
    op.create_table(
        "sync_stream",
        sa.Column("stream", sa.String(32), primary_key=True),
        sa.Column("acked_seq", sa.Integer, nullable=False),
        sa.Column("acked_at", sa.Float),
        sa.Column("dropped_records", sa.Integer, nullable=False),
        sa.Column("dropped_bytes", sa.Integer, nullable=False),
        sa.Column("last_drop_at", sa.Float),
    )
    op.create_table(
        "sync_drop",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("seq_lo", sa.Integer, nullable=False),
        sa.Column("seq_hi", sa.Integer, nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("dropped_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sync_drop_stream", "sync_drop", ["stream", "seq_lo"])
    op.create_table(
        "sync_link_budget",
        sa.Column("link", sa.String(32), primary_key=True),
        sa.Column("anchor", sa.Float, nullable=False),
        sa.Column("window", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_sync_drop_stream", "sync_drop")
    for name in ("sync_link_budget", "sync_drop", "sync_stream"):
        op.drop_table(name)
