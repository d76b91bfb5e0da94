"""The sync's own tables in the journal database (created by migration 0003).

- ``sync_stream``: per outbox stream, the receiver's last acknowledged watermark (``acked_seq``,
  ``acked_at`` epoch s) and the cumulative drop counters of the disk budget.
- ``sync_drop``: sequence ranges dropped unsent and not yet reported to (acknowledged by) the
  receiver; each batch declares them, and a range is deleted once the watermark passes its end.
- ``sync_link_budget``: per budgeted link, the flight-hour window in use and its bytes used, so a
  restart in flight does not hand out the hour's budget twice.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

__all__ = ["sync_drop", "sync_link_budget", "sync_metadata", "sync_stream"]

sync_metadata = MetaData()

sync_stream = Table(
    "sync_stream", sync_metadata,
    Column("stream", String(32), primary_key=True),
    Column("acked_seq", Integer, nullable=False),
    Column("acked_at", Float),
    Column("dropped_records", Integer, nullable=False),
    Column("dropped_bytes", Integer, nullable=False),
    Column("last_drop_at", Float),
)

sync_drop = Table(
    "sync_drop", sync_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(32), nullable=False),
    Column("seq_lo", Integer, nullable=False),
    Column("seq_hi", Integer, nullable=False),
    Column("records", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("dropped_at", Float, nullable=False),
    Index("ix_sync_drop_stream", "stream", "seq_lo"),
)

sync_link_budget = Table(
    "sync_link_budget", sync_metadata,
    Column("link", String(32), primary_key=True),
    Column("anchor", Float, nullable=False),
    Column("window", Integer, nullable=False),
    Column("used", Integer, nullable=False),
)
