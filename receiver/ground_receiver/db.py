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
- ``downlink_docs``, ``downlink_state``: ground → aircraft documents and what each aircraft
  applied (``ground_receiver.downlink``).
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
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)

__all__ = ["aircraft_keys", "aircraft_state", "batches", "conflicts", "downlink_docs",
           "downlink_state", "gaps", "init_db",
           "make_engine", "metadata", "records", "watermarks"]

metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrement needs INTEGER

aircraft_state = Table(
    "aircraft_state", metadata,
    Column("aircraft", String(64), primary_key=True),
    Column("batches", BigInteger, nullable=False, default=0),
    Column("records", BigInteger, nullable=False, default=0),
    Column("updated", Float, nullable=False),
    Column("status", JSON),  # the aircraft's last AircraftStatus (wire.py), for the fleet view
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
    Index("ix_records_received", "received"),
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
    Index("ix_gaps_aircraft_stream", "aircraft", "stream"),
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
    Index("ix_batches_received", "received"),
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

downlink_docs = Table(
    "downlink_docs", metadata,
    Column("aircraft", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("issued", Float, nullable=False),
    Column("body", JSON, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("signature", String(100), nullable=False),
    PrimaryKeyConstraint("aircraft", "kind", "version"),
)

downlink_state = Table(
    "downlink_state", metadata,
    Column("aircraft", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("applied_version", BigInteger),
    Column("applied_at", Float),
    Column("applied_mode", String(16)),
    Column("acked_version", BigInteger),
    Column("status", String(16)),
    Column("detail", String(500)),
    Column("updated", Float, nullable=False),
    PrimaryKeyConstraint("aircraft", "kind"),
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


#: PostgreSQL: the two tables that grow with the fleet's traffic are partitioned by aircraft
#: (hash, fixed count: no partition to create ahead of time, every aircraft's rows and its
#: uniqueness checks in one partition). The unique ``idempotency_key`` of SQLite is implied by
#: ``(aircraft, stream, seq)`` (the key is ``{aircraft}:{stream}:{seq}``), and a partitioned
#: table's unique keys must hold the partition key: it is not repeated here.
PARTITIONS = 16
_PG_PARTITIONED = {
    "records": """
CREATE TABLE records (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY,
    aircraft VARCHAR(64) NOT NULL, stream VARCHAR(32) NOT NULL, seq BIGINT NOT NULL,
    idempotency_key VARCHAR(160) NOT NULL, created DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL, batch_id VARCHAR(128) NOT NULL,
    sha256 VARCHAR(64) NOT NULL, payload JSON NOT NULL,
    PRIMARY KEY (aircraft, id),
    CONSTRAINT uq_records_aircraft_stream_seq UNIQUE (aircraft, stream, seq)
) PARTITION BY HASH (aircraft);
CREATE INDEX ix_records_received ON records (received)""",
    "batches": """
CREATE TABLE batches (
    aircraft VARCHAR(64) NOT NULL, batch_id VARCHAR(128) NOT NULL, sha256 VARCHAR(64) NOT NULL,
    received DOUBLE PRECISION NOT NULL, body_bytes BIGINT NOT NULL, records BIGINT NOT NULL,
    applied BIGINT NOT NULL, response JSON NOT NULL,
    PRIMARY KEY (aircraft, batch_id)
) PARTITION BY HASH (aircraft);
CREATE INDEX ix_batches_received ON batches (received)""",
}


#: Columns added after the first release: (table, column, SQL type), added where missing.
_ADDED_COLUMNS = [("aircraft_state", "status", "JSON")]


def init_db(engine: Engine) -> None:
    """Create the tables that are missing (safe when several receivers start together).

    PostgreSQL: ``records`` and ``batches`` are made partitioned by aircraft (see
    :data:`PARTITIONS`); a database made before keeps its plain tables, which work the same.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))  # one creator at a time
            for name, ddl in _PG_PARTITIONED.items():
                if conn.dialect.has_table(conn, name):
                    continue
                for stmt in ddl.strip().split(";\n"):
                    conn.execute(text(stmt))
                for i in range(PARTITIONS):
                    conn.execute(text(f"CREATE TABLE {name}_p{i:02d} PARTITION OF {name} "
                                      f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {i})"))
        metadata.create_all(conn, checkfirst=True)
        for table, column, ddl_type in _ADDED_COLUMNS:  # databases made by an older receiver
            have = {c["name"] for c in inspect(conn).get_columns(table)}
            if column not in have:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl_type}"))
