"""The outbox as the uplink sees it: pending items per stream, statistics, acknowledgements.

Reads use the read engine (call them from a worker thread); writes are functions
``fn(conn)`` for the single writer (``await writer.run(fn)``).

An *item* of a stream is either a record (an outbox row) or a drop range (rows the disk budget
deleted unsent, see :mod:`appliance.sync.budget`). A stream's items cover consecutive sequence
numbers from the receiver's watermark + 1: the uplink sends them in that order, so the receiver
sees every number exactly once, as a record or inside a declared drop.

The size of a row, for the disk budget and "bytes queued", is
``len(payload JSON) + len(idempotency_key) + ROW_OVERHEAD`` bytes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Text, delete, func, insert, select, type_coerce, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..modes.events import TimeSource
from ..store.journal import JournalEntry, JournalKind, write_entry
from ..store.models import outbox, stream_seq
from .tables import sync_drop, sync_stream

__all__ = ["ROW_OVERHEAD", "DropRange", "LostRange", "OutboxReader", "Record", "StreamStats",
           "apply_ack", "declare_lost", "row_bytes"]

log = logging.getLogger(__name__)

#: Bytes counted per row besides its payload and key (ids, seq, times, index entries).
ROW_OVERHEAD = 48


def row_bytes() -> Any:
    """SQL expression: the budget size of an outbox row (see the module doc)."""
    return (func.length(type_coerce(outbox.c.payload, Text)) + func.length(outbox.c.idempotency_key)
            + ROW_OVERHEAD)


@dataclass(frozen=True, slots=True)
class Record:
    """One pending record: ``seq``, ``created`` (epoch s) and its payload as JSON text."""

    seq: int
    created: float
    payload_json: str


@dataclass(frozen=True, slots=True)
class DropRange:
    """Dropped, not yet reported: ``lo..hi`` inclusive, ``records`` rows of ``bytes`` bytes."""

    lo: int
    hi: int
    records: int
    bytes: int
    at: float


@dataclass(frozen=True, slots=True)
class LostRange:
    """Records ``lo..hi`` of ``stream`` the receiver acknowledged (up to ``acked``) and lost.

    Its watermark is now ``watermark`` (< ``acked``); the range was deleted here on the
    acknowledgement and is declared to the receiver as a drop range.
    """

    stream: str
    lo: int
    hi: int
    acked: int
    watermark: int

    @property
    def detail(self) -> str:
        """One line for the log, the journal and the status."""
        return (f"the receiver lost {self.stream} seq {self.lo}..{self.hi}: it had acknowledged "
                f"up to {self.acked} (deleted here), it now holds up to {self.watermark}; "
                f"declared as a gap, the stream goes on")


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One stream for the status: queue depth (rows), oldest row (epoch s), bytes, watermarks."""

    stream: str
    depth: int
    oldest: float | None
    bytes: int
    last_seq: int
    acked_seq: int
    acked_at: float | None
    dropped_records: int
    dropped_bytes: int
    last_drop_at: float | None
    pending_drop_ranges: int


class OutboxReader:
    """Reads of the outbox and the sync tables through a read engine (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        """Read through ``engine`` (read-only engine of the journal database)."""
        self.engine = engine

    def items(self, stream: str, after: int, max_records: int, max_bytes: int,
              ) -> tuple[list[Record | DropRange], int | None]:
        """Items of ``stream`` with seq > ``after``, consecutive, up to the limits.

        Returns (items, hole): ``hole`` is the first seq missing (neither a row nor a drop range)
        right after the last item returned, when the next present item is further on; None
        otherwise. At least one record is returned if any is pending, whatever its size.
        """
        out: list[Record | DropRange] = []
        nrec = nbytes = 0
        expected = after + 1
        with self.engine.connect() as conn:
            ranges = [DropRange(r.seq_lo, r.seq_hi, r.records, r.bytes, r.dropped_at)
                      for r in conn.execute(select(sync_drop).where(
                          sync_drop.c.stream == stream, sync_drop.c.seq_hi > after)
                          .order_by(sync_drop.c.seq_lo))]

            def rows() -> Any:
                last = after
                while True:
                    chunk = conn.execute(select(outbox.c.seq, outbox.c.created,
                                                type_coerce(outbox.c.payload, Text).label("p"))
                                         .where(outbox.c.stream == stream, outbox.c.seq > last)
                                         .order_by(outbox.c.seq)
                                         .limit(min(2000, max_records + 1))).all()
                    yield from chunk
                    if len(chunk) < min(2000, max_records + 1):
                        return
                    last = chunk[-1].seq

            it = rows()
            row = next(it, None)
            ri = 0
            while nrec < max_records and nbytes < max_bytes:
                r = ranges[ri] if ri < len(ranges) else None
                if r is not None and r.hi < expected:  # overtaken (cannot happen; be safe)
                    ri += 1
                elif r is not None and r.lo <= expected <= r.hi:
                    out.append(r)
                    expected = r.hi + 1
                    ri += 1
                elif row is not None and row.seq < expected:  # inside a range already sent
                    row = next(it, None)
                elif row is not None and row.seq == expected:
                    rec = Record(int(row.seq), float(row.created), str(row.p))
                    out.append(rec)
                    expected += 1
                    nrec += 1
                    nbytes += len(rec.payload_json) + 40
                    row = next(it, None)
                elif row is None and r is None:
                    break
                else:
                    return out, expected
        return out, None

    def pending_streams(self) -> dict[str, int]:
        """Streams with rows or unreported drops -> their priority (lowest number first)."""
        with self.engine.connect() as conn:
            rows = dict(conn.execute(select(outbox.c.stream, func.min(outbox.c.priority))
                                     .group_by(outbox.c.stream)).all())
            for (s,) in conn.execute(select(sync_drop.c.stream).distinct()):
                rows.setdefault(s, 99)
        return {str(k): int(v) for k, v in rows.items()}

    def total_bytes(self) -> int:
        """Budget size of the whole outbox (bytes)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(row_bytes()), 0))).scalar_one())

    def acked(self) -> dict[str, int]:
        """The last acknowledged watermark of each stream known locally."""
        with self.engine.connect() as conn:
            return {str(s): int(w) for s, w in conn.execute(
                select(sync_stream.c.stream, sync_stream.c.acked_seq))}

    def stats(self) -> dict[str, StreamStats]:
        """Every stream that ever had a record: depth, age, bytes, watermarks, drops."""
        with self.engine.connect() as conn:
            q = {str(r.stream): r for r in conn.execute(
                select(outbox.c.stream, func.count().label("n"), func.min(outbox.c.created)
                       .label("oldest"), func.sum(row_bytes()).label("bytes"))
                .group_by(outbox.c.stream))}
            last = {str(s): int(v) for s, v in conn.execute(
                select(stream_seq.c.stream, stream_seq.c.last_seq))}
            st = {str(r.stream): r for r in conn.execute(select(sync_stream))}
            ranges = {str(s): int(n) for s, n in conn.execute(
                select(sync_drop.c.stream, func.count()).group_by(sync_drop.c.stream))}
        out = {}
        for name in sorted(set(q) | set(last) | set(st)):
            row, srow = q.get(name), st.get(name)
            out[name] = StreamStats(
                stream=name, depth=int(row.n) if row else 0,
                oldest=float(row.oldest) if row else None,
                bytes=int(row.bytes or 0) if row else 0, last_seq=last.get(name, 0),
                acked_seq=int(srow.acked_seq) if srow else 0,
                acked_at=srow.acked_at if srow else None,
                dropped_records=int(srow.dropped_records) if srow else 0,
                dropped_bytes=int(srow.dropped_bytes) if srow else 0,
                last_drop_at=srow.last_drop_at if srow else None,
                pending_drop_ranges=ranges.get(name, 0))
        return out


def ensure_stream_row(conn: Connection, stream: str) -> None:
    """Create the ``sync_stream`` row of ``stream`` if missing (watermark 0, no drops)."""
    conn.execute(sqlite_insert(sync_stream).values(
        stream=stream, acked_seq=0, acked_at=None, dropped_records=0, dropped_bytes=0,
        last_drop_at=None).on_conflict_do_nothing())


def declare_lost(conn: Connection, watermarks: dict[str, int], now: float | None = None,
                 ) -> list[LostRange]:
    """Writer function: resume from the receiver's ``watermarks`` where they went back.

    Watermarks on the receiver only move up; one below a stream's ``acked_seq`` means the
    receiver lost records it had acknowledged (a restored or new database), which were deleted
    here on that acknowledgement: nobody can send them again. Each missing run of
    ``watermark + 1 .. acked_seq`` (rows or drop ranges still here are sent as usual) becomes a
    drop range, which the next batch declares (the receiver records the gap and its watermark
    moves on, so the stream does not stall), ``acked_seq`` goes back to the watermark, and a
    journal row (kind ``sync_lost``) says what was lost. Call it before :func:`apply_ack`.
    Returns the ranges declared (none in normal operation).
    """
    now = time.time() if now is None else now
    out: list[LostRange] = []
    for stream, acked in conn.execute(select(sync_stream.c.stream, sync_stream.c.acked_seq)).all():
        w = int(watermarks.get(stream, 0))
        acked = int(acked)
        if w >= acked:
            continue
        held = [(int(s), int(s)) for (s,) in conn.execute(
            select(outbox.c.seq).where(outbox.c.stream == stream, outbox.c.seq > w,
                                       outbox.c.seq <= acked))]
        held += [(int(lo), int(hi)) for lo, hi in conn.execute(
            select(sync_drop.c.seq_lo, sync_drop.c.seq_hi).where(
                sync_drop.c.stream == stream, sync_drop.c.seq_hi > w, sync_drop.c.seq_lo <= acked))]
        nxt = w + 1
        runs: list[tuple[int, int]] = []
        for lo, hi in sorted(held):
            if lo > nxt:
                runs.append((nxt, lo - 1))
            nxt = max(nxt, hi + 1)
        if nxt <= acked:
            runs.append((nxt, acked))
        for lo, hi in runs:
            lost = LostRange(stream, lo, hi, acked, w)
            out.append(lost)
            conn.execute(insert(sync_drop).values(stream=stream, seq_lo=lo, seq_hi=hi,
                                                  records=hi - lo + 1, bytes=0, dropped_at=now))
            write_entry(conn, JournalEntry(
                JournalKind.SYNC_LOST, f"sync: {lost.detail}", now, TimeSource.LOCAL,
                {"stream": stream, "seq_lo": lo, "seq_hi": hi, "records": hi - lo + 1,
                 "acked": acked, "watermark": w}))
        conn.execute(update(sync_stream).where(sync_stream.c.stream == stream)
                     .values(acked_seq=w, acked_at=now))
    return out


def apply_ack(conn: Connection, watermarks: dict[str, int], now: float | None = None) -> int:
    """Writer function: forget what the receiver acknowledged; returns outbox rows deleted.

    For each stream with watermark ``W``: outbox rows with ``seq <= W`` are deleted, drop ranges
    ending at or below ``W`` too (a range straddling ``W`` is cut to start after it), and the
    stream's ``acked_seq`` becomes ``max(acked_seq, W)``. If ``W`` is beyond the stream's last
    sequence number given out (the local journal went back, a restored backup), the sequence is
    moved up to ``W`` so new records never reuse numbers the ground already holds.
    """
    now = time.time() if now is None else now
    deleted = 0
    for stream, w in watermarks.items():
        ensure_stream_row(conn, stream)
        res = conn.execute(delete(outbox).where(outbox.c.stream == stream, outbox.c.seq <= w))
        deleted += res.rowcount or 0
        conn.execute(delete(sync_drop).where(sync_drop.c.stream == stream,
                                             sync_drop.c.seq_hi <= w))
        conn.execute(update(sync_drop).where(sync_drop.c.stream == stream, sync_drop.c.seq_lo <= w)
                     .values(seq_lo=w + 1))
        conn.execute(update(sync_stream).where(sync_stream.c.stream == stream,
                                               sync_stream.c.acked_seq < w)
                     .values(acked_seq=w, acked_at=now))
        last = conn.execute(select(stream_seq.c.last_seq).where(stream_seq.c.stream == stream)
                            ).scalar()
        if w > 0 and (last is None or last < w):
            log.warning("stream %s: receiver holds seq %d but the journal gave out only %s; "
                        "moving the sequence up", stream, w, last)
            conn.execute(sqlite_insert(stream_seq).values(stream=stream, last_seq=w)
                         .on_conflict_do_update(index_elements=["stream"], set_={"last_seq": w}))
    return deleted
