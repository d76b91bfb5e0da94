"""The onboard shop: the menu in force (menu_items) and each order's status, total and currency.

Orders stored before this revision get status ``placed``, total 0 and no currency (their prices
were never recorded). The menu table starts empty: the service fills it with the packaged
default menu at its first start (appliance.content.menu.ensure_menu).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create menu_items; add status, total, currency and updated to orders."""
    op.create_table(
        "menu_items",
        sa.Column("sku", sa.String(32), primary_key=True),
        sa.Column("names", sa.JSON, nullable=False),
        sa.Column("price", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer),
        sa.Column("allergens", sa.JSON, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    with op.batch_alter_table("orders") as b:
        b.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="placed"))
        b.add_column(sa.Column("total", sa.Integer, nullable=False, server_default="0"))
        b.add_column(sa.Column("currency", sa.String(3), nullable=False, server_default=""))
        b.add_column(sa.Column("updated", sa.Float))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("orders") as b:
        b.drop_column("updated")
        b.drop_column("currency")
        b.drop_column("total")
        b.drop_column("status")
    op.drop_table("menu_items")
