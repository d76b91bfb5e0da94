"""The journal: transitions with their evidence, BITE results and admin actions, durably, in order.

Every mode, air/ground and phase change, BITE result and admin action gets a row (``id`` is the
sequence number). Writes go through the single writer (group commit); a record for the ground
(mode changes on the ``events`` stream, BITE on ``health``, admin actions on ``audit``) is written
in the same transaction as its journal row. Reads use their own connections (call them from a
worker thread in async code).
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

__all__ = ["Journal", "iso_utc"]


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    """Journal writes (through ``writer``) and reads (through ``reader``, its own engine)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str) -> None:
        """Wire to the single writer and a read engine; ``aircraft_id`` goes into outbox keys."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id

    def _insert(self, conn: Connection, kind: str, summary: str, data: dict[str, Any], utc: float,
                time_source: str, t_card: float | None = None, stream: str | None = None,
                ) -> dict[str, Any]:
        row = conn.execute(insert(journal).values(
            kind=kind, t_card=t_card, utc=utc, time_source=time_source, summary=summary,
            data=data, created=time.time()).returning(journal.c.id)).scalar_one()
        out: dict[str, Any] = {"id": row}
        if stream is not None:
            payload = {"journal_id": row, "kind": kind, "utc": iso_utc(utc), **data}
            out["outbox_key"] = enqueue(conn, self.aircraft_id, stream, payload)
        return out

    def _write_event(self, conn: Connection, ev: Event) -> dict[str, Any]:
        is_mode = isinstance(ev, ModeChanged)
        out = self._insert(conn, ev.kind, f"{ev.kind} {ev.previous} -> {ev.current}",
                           dataclasses.asdict(ev), ev.utc, ev.time_source, ev.t_card,
                           "events" if is_mode else None)
        if is_mode:
            conn.execute(sqlite_insert(state).values(key="mode", value=ev.current)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": ev.current}))
        return out

    async def record(self, ev: Event) -> dict[str, Any]:
        """Journal ``ev`` (and queue a mode change for the ground); returns ids once durable."""
        return await self.writer.run(lambda conn: self._write_event(conn, ev))

    def record_sync(self, ev: Event) -> dict[str, Any]:
        """As :meth:`record`, blocking (for threads and start-up)."""
        return self.writer.submit(lambda conn: self._write_event(conn, ev)).result()

    async def record_health(self, subsystem: str, colour: str, reason: str, utc: float,
                            time_source: str) -> dict[str, Any]:
        """Journal a built-in-test result (green/amber/red) and queue it on the health stream."""
        data = {"subsystem": subsystem, "state": colour, "reason": reason}
        return await self.writer.run(lambda conn: self._insert(
            conn, "bite", f"bite {subsystem} {colour}: {reason}", data, utc, time_source,
            stream="health"))

    async def record_admin(self, user: str, role: str, action: str, ok: bool, client: str,
                           detail: dict[str, Any], utc: float, time_source: str) -> dict[str, Any]:
        """Journal an admin action (audit) and queue it on the audit stream; durable on return."""
        data = {"user": user, "role": role, "action": action, "ok": ok, "client": client,
                "detail": detail}
        summary = f"admin {action} by {user} ({role}) from {client}: {'ok' if ok else 'refused'}"
        return await self.writer.run(lambda conn: self._insert(
            conn, "admin", summary, data, utc, time_source, stream="audit"))

    def query(self, kind: str | None = None, limit: int = 100, after_id: int = 0,
              since_utc: float | None = None, until_utc: float | None = None,
              ) -> list[dict[str, Any]]:
        """Journal rows oldest first: of one ``kind``, with id > ``after_id``, in a UTC range."""
        q = select(journal).where(journal.c.id > after_id).order_by(journal.c.id).limit(limit)
        if kind:
            q = q.where(journal.c.kind == kind)
        if since_utc is not None:
            q = q.where(journal.c.utc >= since_utc)
        if until_utc is not None:
            q = q.where(journal.c.utc <= until_utc)
        with self.reader.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [{**r, "utc_iso": iso_utc(r["utc"])} for r in rows]

    def last_mode(self) -> str | None:
        """The last journaled mode, or None on a new journal."""
        with self.reader.connect() as conn:
            v = conn.execute(select(state.c.value).where(state.c.key == "mode")).scalar()
        return None if v is None else str(v)
