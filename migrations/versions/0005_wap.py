"""Cabin network: access point inventory and the per-device job queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the wap_device and wap_job tables (see appliance.cabin.tables)."""
    op.create_table(
        "wap_device",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("driver", sa.String(16), nullable=False),
        sa.Column("address", sa.String(256), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("last_seen", sa.Float),
        sa.Column("last_status", sa.JSON),
        sa.Column("added", sa.Float, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
        sa.Column("retired", sa.Float),
    )
    op.create_table(
        "wap_job",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(160), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(16)),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("started", sa.Float),
        sa.Column("finished", sa.Float),
        sa.Column("expected_end", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("resumed", sa.Integer, nullable=False),
        sa.Column("failure", sa.String(16)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_wap_job_device_state", "wap_job", ["device", "state"])
    op.create_index("ix_wap_job_state", "wap_job", ["state"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_wap_job_state", "wap_job")
    op.drop_index("ix_wap_job_device_state", "wap_job")
    op.drop_table("wap_job")
    op.drop_table("wap_device")
