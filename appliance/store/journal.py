"""The journal: the one writer of journal rows, one row schema, one payload shape for the ground.

Every mode, air/ground and phase change, BITE result, admin action, hangar intake step, cabin
network (WAP) event and sync loss gets a row, written by :func:`write_entry` and nothing else,
inside the caller's transaction (a function for the single writer). ``id`` is the sequence number.
Reads use their own connections (call them from a worker thread in async code).

Row (table ``journal``), the same for every kind::

    id           int          sequence number (autoincrement)
    kind         str          a JournalKind value (see below)
    t_card       float|None   interface card time, s (avionics events; None otherwise)
    utc          float        best-known UTC, epoch s
    time_source  str          a TimeSource value: "avionics" or "local"
    summary      str          one line for people
    data         JSON object  the kind's own fields, never repeating the columns above
    created      float        host clock when written, epoch s

``data`` by kind::

    mode, airground, phase  {"previous": str|None, "current": str, "evidence": {...}}
    bite                    {"subsystem": str, "state": "green"|"amber"|"red", "reason": str}
    admin                   {"user", "role", "action", "ok": bool, "client", "detail": {...}}
    intake                  {"action": str, ...the step's fields (bundle_id, kind, version, ...)}
    wap                     {"event": "job"|"device", ...the job's or the device's fields}
    sync_lost               {"stream", "seq_lo", "seq_hi", "records", "acked", "watermark"}
    gate                    {"event": "held"|"open"|"expired"|"reset"|"policy", ...} (cabin network
                            gate: "mac", "ip", "until" epoch s, "reason"; see appliance.cabinnet.gate)
    order                   {"order", "idempotency_key", "seat", "previous", "status", "by"} (a status
                            change; see appliance.content.order_status)

A row written with a ``stream`` also queues one outbox record for the ground in the same
transaction (mode changes on ``events``, BITE and WAP on ``health``, admin on ``audit``, intake on
``intake``, order status changes on ``order_status``), and every such record has one payload shape::

    {"journal_id": int, "kind": str, "utc": "2024-07-06T06:59:23.000+00:00" (ISO 8601, ms),
     "time_source": "avionics"|"local", "t_card": float|None, "summary": str, "data": {...}}

where ``data`` is the row's ``data``. Migration 0007 brought older rows to this schema; outbox
records queued before it keep the shape they were queued with (their content may already be on the
ground under their idempotency key, so it is never rewritten).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..modes.events import Event, ModeChanged, TimeSource
from .models import journal, state
from .outbox import enqueue
from .writer import Writer

__all__ = ["Journal", "JournalEntry", "JournalIds", "JournalKind", "TimeSource", "entry_payload",
           "event_entry", "iso_utc", "write_entry"]


class JournalKind(StrEnum):
    """The ``kind`` of a journal row (the values are what the table stores)."""

    MODE = "mode"
    AIR_GROUND = "airground"
    PHASE = "phase"
    BITE = "bite"
    ADMIN = "admin"
    INTAKE = "intake"
    WAP = "wap"
    SYNC_LOST = "sync_lost"
    GATE = "gate"
    ORDER = "order"


def iso_utc(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2024-07-06T06:59:23.000+00:00``."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journal row to write (the columns of the module docstring, less ``id``/``created``).

    ``data`` must be JSON-serialisable and must not repeat the other fields.
    """

    kind: JournalKind
    summary: str
    utc: float  #: best-known UTC, epoch s
    time_source: TimeSource
    data: Mapping[str, Any] = field(default_factory=dict)
    t_card: float | None = None  #: card time, s


@dataclass(frozen=True, slots=True)
class JournalIds:
    """What :func:`write_entry` wrote: the row's ``id`` and the outbox key (None without a stream)."""

    id: int
    outbox_key: str | None = None


def entry_payload(journal_id: int, entry: JournalEntry) -> dict[str, Any]:
    """The outbox payload of a journal row (the one shape of the module docstring)."""
    return {"journal_id": journal_id, "kind": entry.kind.value, "utc": iso_utc(entry.utc),
            "time_source": entry.time_source.value, "t_card": entry.t_card,
            "summary": entry.summary, "data": dict(entry.data)}


def write_entry(conn: Connection, entry: JournalEntry, aircraft_id: str | None = None,
                stream: str | None = None) -> JournalIds:
    """Insert ``entry`` in ``conn``'s transaction; with ``stream``, queue it for the ground too.

    ``aircraft_id`` goes into the outbox key (needed with ``stream``, else ValueError). Raises
    KeyError for a stream without a priority (see
    :data:`appliance.store.outbox.STREAM_PRIORITY`); SQLAlchemy errors pass through.
    """
    if stream is not None and not aircraft_id:
        raise ValueError(f"a journal entry queued on {stream!r} needs the aircraft id")
    jid = conn.execute(insert(journal).values(
        kind=entry.kind.value, t_card=entry.t_card, utc=entry.utc,
        time_source=entry.time_source.value, summary=entry.summary, data=dict(entry.data),
        created=time.time()).returning(journal.c.id)).scalar_one()
    key = None
    if stream is not None and aircraft_id:
        key = enqueue(conn, aircraft_id, stream, entry_payload(jid, entry))
    return JournalIds(jid, key)


def event_entry(ev: Event) -> JournalEntry:
    """The journal entry of a mode, air/ground or phase change (ValueError: unknown kind/source)."""
    evidence = dataclasses.asdict(ev)["evidence"]  # deep copy; nested dataclasses become dicts
    return JournalEntry(JournalKind(ev.kind), f"{ev.kind} {ev.previous} -> {ev.current}", ev.utc,
                        TimeSource(ev.time_source),
                        {"previous": ev.previous, "current": ev.current, "evidence": evidence},
                        ev.t_card)


class Journal:
    """Journal writes of the avionics, BITE and admin (through ``writer``) and reads (``reader``)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str) -> None:
        """Wire to the single writer and a read engine; ``aircraft_id`` goes into outbox keys."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id

    def _write_event(self, conn: Connection, ev: Event) -> JournalIds:
        is_mode = isinstance(ev, ModeChanged)
        out = write_entry(conn, event_entry(ev), self.aircraft_id, "events" if is_mode else None)
        if is_mode:
            conn.execute(sqlite_insert(state).values(key="mode", value=ev.current)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": ev.current}))
        return out

    async def record(self, ev: Event) -> JournalIds:
        """Journal ``ev`` (and queue a mode change on ``events``); returns the ids once durable.

        Raises ValueError for an event whose kind or time source is unknown.
        """
        return await self.writer.run(lambda conn: self._write_event(conn, ev))

    def record_sync(self, ev: Event) -> JournalIds:
        """As :meth:`record`, blocking (for threads and start-up)."""
        return self.writer.submit(lambda conn: self._write_event(conn, ev)).result()

    async def record_health(self, subsystem: str, colour: str, reason: str, utc: float,
                            time_source: str) -> JournalIds:
        """Journal a built-in-test result (green/amber/red) and queue it on the health stream.

        ``utc`` epoch s; ``time_source`` a TimeSource value (else ValueError).
        """
        entry = JournalEntry(JournalKind.BITE, f"bite {subsystem} {colour}: {reason}", utc,
                             TimeSource(time_source),
                             {"subsystem": subsystem, "state": colour, "reason": reason})
        return await self.writer.run(lambda conn: write_entry(conn, entry, self.aircraft_id,
                                                              "health"))

    async def record_admin(self, user: str, role: str, action: str, ok: bool, client: str,
                           detail: dict[str, Any], utc: float, time_source: str) -> JournalIds:
        """Journal an admin action (audit) and queue it on the audit stream; durable on return.

        ``utc`` epoch s; ``time_source`` a TimeSource value (else ValueError).
        """
        data = {"user": user, "role": role, "action": action, "ok": ok, "client": client,
                "detail": detail}
        summary = f"admin {action} by {user} ({role}) from {client}: {'ok' if ok else 'refused'}"
        entry = JournalEntry(JournalKind.ADMIN, summary, utc, TimeSource(time_source), data)
        return await self.writer.run(lambda conn: write_entry(conn, entry, self.aircraft_id,
                                                              "audit"))

    def query(self, kind: str | None = None, limit: int = 100, after_id: int = 0,
              since_utc: float | None = None, until_utc: float | None = None,
              ) -> list[dict[str, Any]]:
        """Journal rows oldest first (the row schema plus ``utc_iso``), blocking.

        Of one ``kind``, with id > ``after_id``, in a UTC range (epoch s, inclusive).
        """
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
        """The last journaled mode, or None on a new journal (blocking)."""
        with self.reader.connect() as conn:
            v = conn.execute(select(state.c.value).where(state.c.key == "mode")).scalar()
        return None if v is None else str(v)
