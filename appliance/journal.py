"""The journal: every mode, air/ground and phase change with its evidence, durably, in order.

Writes go through the single writer (group commit); a mode change and its outbox record are one
transaction. Reads use their own connections (call them from a worker thread in async code).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .modes.events import Event, ModeChanged
from .store.models import journal, state
from .store.outbox import enqueue
from .store.writer import Writer

__all__ = ["Journal"]


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """Journal writes (through ``writer``) and reads (through ``reader``, its own engine)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str) -> None:
        """Wire to the single writer and a read engine; ``aircraft_id`` goes into outbox keys."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id

    def _write_event(self, conn: Connection, ev: Event) -> dict[str, Any]:
        data = dataclasses.asdict(ev)
        summary = f"{ev.kind} {ev.previous} -> {ev.current}"
        row = conn.execute(insert(journal).values(
            kind=ev.kind, t_card=ev.t_card, utc=ev.utc, time_source=ev.time_source,
            summary=summary, data=data, created=time.time()).returning(journal.c.id)).scalar_one()
        out: dict[str, Any] = {"id": row}
        if isinstance(ev, ModeChanged):
            payload = {"journal_id": row, "utc": _iso(ev.utc), **data}
            out["outbox_key"] = enqueue(conn, self.aircraft_id, "events", payload)
            conn.execute(sqlite_insert(state).values(key="mode", value=ev.current)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": ev.current}))
        return out

    def _write_health(self, conn: Connection, subsystem: str, colour: str, reason: str,
                      utc: float, time_source: str) -> dict[str, Any]:
        data = {"subsystem": subsystem, "state": colour, "reason": reason}
        row = conn.execute(insert(journal).values(
            kind="bite", t_card=None, utc=utc, time_source=time_source,
            summary=f"bite {subsystem} {colour}: {reason}", data=data,
            created=time.time()).returning(journal.c.id)).scalar_one()
        key = enqueue(conn, self.aircraft_id, "health",
                      {"journal_id": row, "utc": _iso(utc), **data})
        return {"id": row, "outbox_key": key}

    async def record_health(self, subsystem: str, colour: str, reason: str, utc: float,
                            time_source: str) -> dict[str, Any]:
        """Journal a built-in-test result (green/amber/red) and queue it on the health stream."""
        return await self.writer.run(
            lambda conn: self._write_health(conn, subsystem, colour, reason, utc, time_source))

    async def record(self, ev: Event) -> dict[str, Any]:
        """Journal ``ev`` (and queue a mode change for the ground); returns ids once durable."""
        return await self.writer.run(lambda conn: self._write_event(conn, ev))

    def record_sync(self, ev: Event) -> dict[str, Any]:
        """As :meth:`record`, blocking (for threads and start-up)."""
        return self.writer.submit(lambda conn: self._write_event(conn, ev)).result()

    def query(self, kind: str | None = None, limit: int = 100, after_id: int = 0,
              ) -> list[dict[str, Any]]:
        """Journal rows oldest first, optionally of one ``kind``, with id > ``after_id``."""
        q = select(journal).where(journal.c.id > after_id).order_by(journal.c.id).limit(limit)
        if kind:
            q = q.where(journal.c.kind == kind)
        with self.reader.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**r, "utc_iso": _iso(r["utc"])} for r in rows]

    def last_mode(self) -> str | None:
        """The last journaled mode, or None on a new journal."""
        with self.reader.connect() as conn:
            v = conn.execute(select(state.c.value).where(state.c.key == "mode")).scalar()
        return None if v is None else str(v)
