"""Applying a batch: one transaction per batch, serialised per aircraft, idempotent.

Per stream, with ``W`` the stored watermark, the records and declared drop ranges are walked in
``seq`` order from ``W + 1``:

- a record with ``seq <= W`` is a duplicate: skipped (if its content differs from what is stored,
  it is kept in ``conflicts`` and counted, never applied);
- a record with ``seq == W + 1`` is stored and ``W`` moves on;
- a drop range reaching ``W + 1`` is stored as a gap and ``W`` jumps to its end;
- anything starting beyond ``W + 1`` is a hole. The batch first waits (up to
  ``reorder_wait_s``, its transaction rolled back meanwhile) for its predecessor, which an
  aircraft with two batches on the wire may not have delivered yet; then the rest of that
  stream is refused with a ``gap`` error naming the expected ``seq`` (the aircraft resumes
  from the watermark). Other streams of the batch are unaffected.

The answer (also stored with the batch id, so a repeated batch gets it again) carries the
watermark of every stream of the aircraft, after the commit: an acknowledged watermark is durable.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from .db import aircraft_state, batches, conflicts, gaps, records, watermarks
from .errors import BatchRejected
from .wire import Batch, Dropped, Record, StreamChunk

__all__ = ["BatchStore", "payload_sha256"]


class _Early(Exception):
    """A stream of the batch starts beyond its watermark: roll back and wait for the rest."""


#: One encoder for every record (``json.dumps`` with these options builds one per call).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _canonical(payload: Any) -> str:
    return _ENCODE(payload)


def payload_sha256(payload: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of ``payload`` (sorted keys, no spaces)."""
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


_INSERT_RECORDS = ("INSERT INTO records (aircraft, stream, seq, idempotency_key, created, received, "
                   "batch_id, sha256, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_COPY_RECORDS = ("COPY records (aircraft, stream, seq, idempotency_key, created, received, "
                 "batch_id, sha256, payload) FROM STDIN")


def _walk(chunk: StreamChunk, w: int) -> tuple[list[Record], list[tuple[int, Dropped]],
                                                 list[Record], int, dict[str, Any] | None]:
    """Walk one stream from watermark ``w``: (new records, gaps (from, range), dups, W, error)."""
    items: list[tuple[int, int, Record | Dropped]] = [(r.seq, 0, r) for r in chunk.records]
    items += [(d.lo, 1, d) for d in chunk.dropped]
    items.sort(key=lambda i: (i[0], i[1]))
    new: list[Record] = []
    new_gaps: list[tuple[int, Dropped]] = []
    dups: list[Record] = []
    expected = w + 1
    for start, _kind, item in items:
        if isinstance(item, Record):
            if item.seq < expected:
                dups.append(item)
                continue
            if item.seq > expected:
                return new, new_gaps, dups, expected - 1, _gap(chunk.stream, expected, start)
            new.append(item)
            expected += 1
        else:
            if item.hi < expected:
                continue
            if item.lo > expected:
                return new, new_gaps, dups, expected - 1, _gap(chunk.stream, expected, start)
            new_gaps.append((expected, item))
            expected = item.hi + 1
    return new, new_gaps, dups, expected - 1, None


def _gap(stream: str, expected: int, got: int) -> dict[str, Any]:
    return {"stream": stream, "code": "gap", "expected": expected, "got": got,
            "detail": f"stream {stream}: expected seq {expected}, batch continues at {got}; "
                      f"resume from the watermark"}


class BatchStore:
    """Batches in, watermarks out, over one SQLAlchemy engine (thread-safe; call from threads)."""

    def __init__(self, engine: Engine, reorder_wait_s: float = 5.0) -> None:
        """Use ``engine`` (tables created by :func:`ground_receiver.db.init_db`).

        ``reorder_wait_s``: how long a batch that starts beyond a stream's watermark waits for
        its predecessor (an aircraft may have two batches on the wire) before the hole is
        refused.
        """
        self.engine = engine
        self.reorder_wait_s = reorder_wait_s
        self._dialect = engine.dialect.name

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert(table) if self._dialect == "postgresql"
                else sqlite.insert(table))

    def watermarks(self, aircraft: str) -> dict[str, int]:
        """Every stream's acknowledged watermark for ``aircraft`` (0 for none yet)."""
        with self.engine.connect() as conn:
            return self._watermarks(conn, aircraft)

    @staticmethod
    def _watermarks(conn: Connection, aircraft: str) -> dict[str, int]:
        rows = conn.execute(select(watermarks.c.stream, watermarks.c.seq)
                            .where(watermarks.c.aircraft == aircraft)).all()
        return {r.stream: int(r.seq) for r in rows}

    def _lock_aircraft(self, conn: Connection, aircraft: str, now: float) -> None:
        """Make the aircraft's row and lock it, in one statement.

        A conflicting upsert locks the row like an UPDATE; SQLite's ``BEGIN IMMEDIATE`` already
        holds the whole file.
        """
        stmt = self._insert(aircraft_state).values(aircraft=aircraft, batches=0, records=0,
                                                   updated=now)
        if self._dialect == "postgresql":
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["aircraft"], set_={"updated": aircraft_state.c.updated}))
        else:
            conn.execute(stmt.on_conflict_do_nothing())

    def apply(self, aircraft: str, batch: Batch, body_sha256: str, body_bytes: int) -> dict[str, Any]:
        """Apply ``batch`` from ``aircraft`` (already authenticated) and return the answer.

        The answer: ``batch_id``, ``duplicate`` (this id was taken before: the stored answer is
        replayed with current watermarks), ``applied``, ``duplicates``, ``conflicts``,
        ``gaps`` (ranges recorded), ``watermarks`` {stream: seq}, ``errors`` [per-stream].
        Raises BatchRejected ``aircraft_mismatch`` or ``batch_id_reused``.
        """
        if batch.aircraft != aircraft:
            raise BatchRejected("aircraft_mismatch",
                                f"token is for {aircraft}, batch says {batch.aircraft}")
        deadline = time.monotonic() + self.reorder_wait_s
        while True:
            try:
                return self._apply_once(aircraft, batch, body_sha256, body_bytes,
                                        wait=time.monotonic() < deadline)
            except _Early:
                time.sleep(0.02)  # the transaction is rolled back: the predecessor can go in

    def _apply_once(self, aircraft: str, batch: Batch, body_sha256: str, body_bytes: int,
                    wait: bool) -> dict[str, Any]:
        now = time.time()
        with self.engine.begin() as conn:
            self._lock_aircraft(conn, aircraft, now)
            known = conn.execute(select(batches.c.sha256, batches.c.response).where(
                batches.c.aircraft == aircraft, batches.c.batch_id == batch.batch_id)).first()
            if known is not None:
                if known.sha256 != body_sha256:
                    raise BatchRejected("batch_id_reused",
                                        f"batch id {batch.batch_id} was taken with other content")
                return {**known.response, "duplicate": True,
                        "watermarks": self._watermarks(conn, aircraft)}
            answer = self._apply_streams(conn, aircraft, batch, now)
            if answer["errors"] and wait:
                raise _Early
            conn.execute(insert(batches).values(
                aircraft=aircraft, batch_id=batch.batch_id, sha256=body_sha256, received=now,
                body_bytes=body_bytes, records=batch.record_count, applied=answer["applied"],
                response={k: v for k, v in answer.items() if k != "watermarks"}))
            status = ({"status": batch.status.model_dump(exclude_none=True)}
                      if batch.status is not None else {})
            conn.execute(update(aircraft_state).where(aircraft_state.c.aircraft == aircraft).values(
                batches=aircraft_state.c.batches + 1,
                records=aircraft_state.c.records + answer["applied"], updated=now, **status))
        return answer

    def _apply_streams(self, conn: Connection, aircraft: str, batch: Batch, now: float,
                       ) -> dict[str, Any]:
        """Walk every stream, then write the batch's rows, one statement per table.

        One COPY (or one executemany) of the new records of all streams, one insert of the
        gaps, one upsert of the watermarks.

        The answer's ``watermarks`` are every stream's of the aircraft after this batch (the
        aircraft's row is locked: nobody else moves them before the commit).
        """
        current = self._watermarks(conn, aircraft)
        applied = dup_count = conflict_count = 0
        errors: list[dict[str, Any]] = []
        new_rows: list[tuple[str, list[Record]]] = []
        gap_rows: list[dict[str, Any]] = []
        moved: dict[str, int] = {}
        for chunk in batch.streams:
            w = current.get(chunk.stream, 0)
            new, new_gaps, dups, w_new, error = _walk(chunk, w)
            if error is not None:
                errors.append(error)
            if new:
                new_rows.append((chunk.stream, new))
            gap_rows += [{"aircraft": aircraft, "stream": chunk.stream, "seq_lo": lo,
                          "seq_hi": d.hi, "declared_records": d.records,
                          "declared_bytes": d.bytes, "dropped_at": d.at,
                          "batch_id": batch.batch_id, "received": now} for lo, d in new_gaps]
            if dups:
                conflict_count += self._check_duplicates(conn, aircraft, chunk.stream, dups,
                                                         batch.batch_id, now)
            if w_new != w:
                moved[chunk.stream] = w_new
            applied += len(new)
            dup_count += len(dups)
        if new_rows:
            self._insert_records(conn, aircraft, new_rows, batch.batch_id, now)
        if gap_rows:
            conn.execute(insert(gaps), gap_rows)
        if moved:
            stmt = self._insert(watermarks).values([
                {"aircraft": aircraft, "stream": st, "seq": seq, "updated": now}
                for st, seq in moved.items()])
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["aircraft", "stream"],
                set_={"seq": stmt.excluded.seq, "updated": stmt.excluded.updated}))
        current.update(moved)
        return {"batch_id": batch.batch_id, "duplicate": False, "applied": applied,
                "duplicates": dup_count, "conflicts": conflict_count, "gaps": len(gap_rows),
                "errors": errors, "watermarks": current}

    def _insert_records(self, conn: Connection, aircraft: str,
                        new: list[tuple[str, list[Record]]], batch_id: str, now: float) -> None:
        """Store the ``(stream, records)`` of a batch in its transaction, one statement.

        PostgreSQL COPY, SQLite executemany of plain tuples (no per-row statement compilation);
        one canonical JSON per record, hashed and stored as is.
        """
        rows = []
        for stream, recs in new:
            for r in recs:
                text = _canonical(r.payload)
                rows.append((aircraft, stream, r.seq, f"{aircraft}:{stream}:{r.seq}", r.created,
                             now, batch_id, hashlib.sha256(text.encode()).hexdigest(), text))
        if self._dialect == "postgresql":
            raw = conn.connection.driver_connection
            assert raw is not None
            dbapi_error = self.engine.dialect.loaded_dbapi.Error
            try:
                with raw.cursor() as cur, cur.copy(_COPY_RECORDS) as cp:
                    for row in rows:
                        cp.write_row(row)
            except dbapi_error as e:  # the driver's own error, as SQLAlchemy's (503 if down)
                raise DBAPIError.instance(_COPY_RECORDS, None, e, dbapi_error,
                                          dialect=self.engine.dialect) from e
            return
        conn.exec_driver_sql(_INSERT_RECORDS, rows)

    @staticmethod
    def _check_duplicates(conn: Connection, aircraft: str, stream: str, dups: list[Record],
                          batch_id: str, now: float) -> int:
        """Keep each duplicate whose content differs from the stored record; return how many."""
        stored: dict[int, str] = {}
        for i in range(0, len(dups), 5000):  # bounded IN lists
            stored.update(conn.execute(select(records.c.seq, records.c.sha256).where(
                records.c.aircraft == aircraft, records.c.stream == stream,
                records.c.seq.in_([d.seq for d in dups[i:i + 5000]]))).all())
        bad = []
        for d in dups:
            sha = payload_sha256(d.payload)
            if stored.get(d.seq) != sha:  # other content, or a seq inside a declared gap
                bad.append({"aircraft": aircraft, "stream": stream, "seq": d.seq,
                            "batch_id": batch_id, "sha256_stored": stored.get(d.seq),
                            "sha256_sent": sha, "payload": d.payload, "received": now})
        if bad:
            conn.execute(insert(conflicts), bad)
        return len(bad)
