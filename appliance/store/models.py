"""Tables of the journal database (SQLAlchemy Core). Migrations in ``store/migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Text, UniqueConstraint

__all__ = ["journal", "metadata", "orders", "outbox", "state", "stream_seq"]

metadata = MetaData()

#: Every event, in order: ``id`` is its sequence number.
journal = Table(
    "journal", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False, index=True),
    Column("t_card", Float),
    Column("utc", Float, nullable=False),
    Column("time_source", String(16), nullable=False),
    Column("summary", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("created", Float, nullable=False),
)

#: Records for the ground, written in the same transaction as the change they report.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("priority", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Column("acked", Float),
    UniqueConstraint("stream", "seq"),
)

#: Last sequence number given out per outbox stream (never goes back, even after deletes).
stream_seq = Table(
    "stream_seq", metadata,
    Column("stream", String(32), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

#: Small durable key/value state (for example the last mode).
state = Table(
    "state", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", JSON, nullable=False),
)

#: Passenger orders; ``idempotency_key`` is the client's, so a retried order is stored once.
#: ``status``: placed -> preparing -> delivered / cancelled (appliance.content.order_status);
#: ``total`` in the currency's minor units (cents); ``updated``: epoch s of the last change.
orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("seat", String(4), nullable=False),
    Column("items", JSON, nullable=False),
    Column("utc", Float, nullable=False),
    Column("time_source", String(16), nullable=False),
    Column("outbox_key", String(128), nullable=False),
    Column("created", Float, nullable=False),
    Column("status", String(16), nullable=False, server_default="placed"),
    Column("total", Integer, nullable=False, server_default="0"),
    Column("currency", String(3), nullable=False, server_default=""),
    Column("updated", Float),
)
