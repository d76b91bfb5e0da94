"""The receiver's tables and engines (SQLAlchemy Core; SQLite or PostgreSQL).

Tables (all keyed by aircraft):

- ``aircraft_state``: one row per aircraft; a batch locks it (``SELECT ... FOR UPDATE`` on
  PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` locks the whole file), so batches of one aircraft are
  applied one after the other even across receiver processes.
- ``watermarks``: per stream, the highest ``seq`` held with nothing missing below it.
- ``records``: every record once (unique ``(aircraft, stream, seq)`` and ``idempotency_key``);
  ``id`` order is arrival order, which is ``seq`` order within a stream.
- ``gaps``: ranges the aircraft declared dropped (its disk budget), with counts.
- ``batches``: every batch id taken, its content hash and the answer given (idempotent replay).
- ``conflicts``: a known key sent again with *different* content (kept, never applied).
- ``aircraft_keys``: each aircraft's Ed25519 public keys (``ground_receiver.identity``).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    text,
)

__all__ = ["aircraft_keys", "aircraft_state", "batches", "conflicts", "gaps", "init_db",
           "make_engine", "metadata", "records", "watermarks"]

metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrement needs INTEGER

aircraft_state = Table(
    "aircraft_state", metadata,
    Column("aircraft", String(64), primary_key=True),
    Column("batches", BigInteger, nullable=False, default=0),
    Column("records", BigInteger, nullable=False, default=0),
    Column("updated", Float, nullable=False),
)

watermarks = Table(
    "watermarks", metadata,
    Column("aircraft", String(64), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("updated", Float, nullable=False),
    PrimaryKeyConstraint("aircraft", "stream"),
)

records = Table(
    "records", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("aircraft", String(64), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("idempotency_key", String(160), nullable=False, unique=True),
    Column("created", Float, nullable=False),
    Column("received", Float, nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("aircraft", "stream", "seq", name="uq_records_aircraft_stream_seq"),
)

gaps = Table(
    "gaps", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("aircraft", String(64), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("seq_lo", BigInteger, nullable=False),
    Column("seq_hi", BigInteger, nullable=False),
    Column("declared_records", BigInteger, nullable=False),
    Column("declared_bytes", BigInteger, nullable=False),
    Column("dropped_at", Float),
    Column("batch_id", String(128), nullable=False),
    Column("received", Float, nullable=False),
)

batches = Table(
    "batches", metadata,
    Column("aircraft", String(64), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received", Float, nullable=False),
    Column("body_bytes", BigInteger, nullable=False),
    Column("records", BigInteger, nullable=False),
    Column("applied", BigInteger, nullable=False),
    Column("response", JSON, nullable=False),
    PrimaryKeyConstraint("aircraft", "batch_id"),
)

conflicts = Table(
    "conflicts", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("aircraft", String(64), nullable=False),
    Column("stream", String(32), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("batch_id", String(128), nullable=False),
    Column("sha256_stored", String(64)),
    Column("sha256_sent", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received", Float, nullable=False),
)

aircraft_keys = Table(
    "aircraft_keys", metadata,
    Column("key_id", String(16), primary_key=True),
    Column("aircraft", String(64), nullable=False, index=True),
    Column("public_key", String(64), nullable=False),  # base64 of the raw 32 bytes
    Column("created", Float, nullable=False),
    Column("expires", Float),  # set by a rotation: the end of the grace
    Column("revoked", Float),
)


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine for ``url``. SQLite: WAL, ``synchronous`` as given, ``BEGIN IMMEDIATE``.

    PostgreSQL: a small pool with pre-ping (a restarted database is reconnected quietly).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=60000")
            # Switching to WAL takes an exclusive lock and can answer "database is locked" without
            # waiting when another receiver opens the same new file at the same moment: retry.
            deadline = time.monotonic() + 60
            while True:
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                         pool_recycle=1800)


def init_db(engine: Engine) -> None:
    """Create the tables that are missing (safe when several receivers start together)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))  # one creator at a time
        metadata.create_all(conn, checkfirst=True)
