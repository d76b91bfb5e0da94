"""The cabin network's persistence: jobs, inventory and journal rows, in the journal database.

Every write goes through the single writer and is durable when the call returns; a record for the
ground (stream ``health``) is written in the same transaction as the journal row it reports.
Reads (``load_active``, ``query``, ``devices``) use the read engine and block: call them from a
worker thread in async code.

Job lifecycle (``wap_job.state``)::

    queued ──► running ──► done | failed | needs_attention
       │          │
       │          └─(restart while running)─► queued (resumed += 1; the device is checked first)
       └─(superseded, too old, device gone)─► stale
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..modes.events import TimeSource
from ..store.journal import JournalEntry, JournalKind, write_entry
from ..store.writer import Writer
from .tables import wap_device, wap_job

__all__ = ["ACTIVE", "TERMINAL", "Job", "JobState", "JobStore", "KeyConflict"]


class JobState(enum.StrEnum):
    """A job's state: queued -> running -> one of the terminal states (or back to queued)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    STALE = "stale"  #: the device is no longer configured, or the job no longer applies
    NEEDS_ATTENTION = "needs_attention"  #: a person must act (credentials refused)


ACTIVE = (JobState.QUEUED, JobState.RUNNING)
TERMINAL = (JobState.DONE, JobState.FAILED, JobState.STALE, JobState.NEEDS_ATTENTION)
#: Ground stream of device events (job failures, device state changes).
STREAM = "health"


class KeyConflict(ValueError):
    """An idempotency key already names a job for another device or of another kind."""


@dataclass(slots=True)
class Job:
    """One job (a row of ``wap_job``; see :mod:`.tables` for the fields and units)."""

    id: int
    device: str
    kind: str
    key: str
    state: JobState
    mode: str | None
    spec: dict[str, Any]
    requested_by: str
    created: float
    started: float | None = None
    finished: float | None = None
    expected_end: float | None = None
    attempts: int = 0
    resumed: int = 0
    failure: str | None = None
    detail: str | None = None

    @classmethod
    def from_row(cls, r: Any) -> Job:
        """From a ``wap_job`` row mapping."""
        return cls(r["id"], r["device"], r["kind"], r["idempotency_key"], JobState(r["state"]),
                   r["mode"],
                   dict(r["spec"] or {}), r["requested_by"], r["created"], r["started"],
                   r["finished"], r["expected_end"], r["attempts"], r["resumed"], r["failure"],
                   r["detail"])

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for the admin API (``key`` is the idempotency key)."""
        return asdict(self)


class JobStore:
    """Jobs, inventory and journal rows (see the module doc)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, str]] = lambda: (time.time(), "local"),
                 clock: Callable[[], float] = time.time) -> None:
        """``utc()`` gives (best-known UTC epoch s, its source) for journal rows."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc
        self.clock = clock

    # ------------------------------------------------------------------ journal rows
    def _journal(self, conn: Connection, summary: str, data: dict[str, Any], ground: bool) -> None:
        utc, src = self.utc()
        write_entry(conn, JournalEntry(JournalKind.WAP, summary, utc, TimeSource(src), data),
                    self.aircraft_id, STREAM if ground else None)

    # ------------------------------------------------------------------ jobs
    async def submit(self, device: str, kind: str, key: str, spec: dict[str, Any],
                     requested_by: str, mode: str | None) -> tuple[Job, bool]:
        """Queue a job; returns (job, True) — or (the existing job, False) if ``key`` is known.

        Raises KeyConflict if ``key`` names a job for another device or of another kind.
        """
        now = self.clock()

        def fn(conn: Connection) -> tuple[Job, bool]:
            row = conn.execute(select(wap_job).where(wap_job.c.idempotency_key == key)
                               ).mappings().first()
            if row is not None:
                if row["device"] != device or row["kind"] != kind:
                    raise KeyConflict(f"key {key!r} is job {row['id']} ({row['kind']} on "
                                      f"{row['device']})")
                return Job.from_row(row), False
            jid = conn.execute(insert(wap_job).values(
                device=device, kind=kind, idempotency_key=key, state=JobState.QUEUED, mode=mode,
                spec=spec, requested_by=requested_by, created=now, attempts=0, resumed=0,
            ).returning(wap_job.c.id)).scalar_one()
            return Job(jid, device, kind, key, JobState.QUEUED, mode, spec, requested_by, now), True
        return await self.writer.run(fn)

    async def _set(self, job: Job, **values: Any) -> None:
        await self.writer.run(lambda conn: conn.execute(
            update(wap_job).where(wap_job.c.id == job.id).values(**values)))
        for k, v in values.items():
            setattr(job, k, v)

    async def mark_running(self, job: Job, expected_end: float) -> None:
        """Mark it running: queued -> running (durable before the first command is sent)."""
        await self._set(job, state=JobState.RUNNING, started=job.started or self.clock(),
                        expected_end=expected_end)

    async def attempt(self, job: Job, attempts: int, expected_end: float) -> None:
        """Record the attempt number and the new expected end (epoch s)."""
        await self._set(job, attempts=attempts, expected_end=expected_end)

    async def requeue(self, job: Job, detail: str) -> None:
        """Queue it again: running -> queued after a restart (``resumed`` + 1)."""
        await self._set(job, state=JobState.QUEUED, resumed=job.resumed + 1, detail=detail)

    async def finish(self, job: Job, state: str, failure: str | None, detail: str) -> None:
        """Terminal state, with a journal row (and a ``health`` record unless it is done)."""
        if state not in TERMINAL:
            raise ValueError(f"{state!r} is not a terminal job state")
        now = self.clock()
        values = {"state": state, "finished": now, "failure": failure, "detail": detail[:2000]}
        data = {"event": "job", "job_id": job.id, "device": job.device, "job_kind": job.kind,
                "key": job.key, "state": state, "failure": failure, "detail": detail[:500],
                "attempts": job.attempts, "requested_by": job.requested_by}

        def fn(conn: Connection) -> None:
            conn.execute(update(wap_job).where(wap_job.c.id == job.id).values(**values))
            self._journal(conn, f"wap job {job.id} {job.kind} on {job.device}: {state}", data,
                          ground=state != JobState.DONE)
        await self.writer.run(fn)
        for k, v in values.items():
            setattr(job, k, v)

    def load_active(self) -> list[Job]:
        """Queued and running jobs, oldest first (blocking)."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(wap_job).where(wap_job.c.state.in_(ACTIVE))
                                .order_by(wap_job.c.id)).mappings().all()
        return [Job.from_row(r) for r in rows]

    def query(self, device: str | None = None, state: str | None = None, limit: int = 100,
              before_id: int | None = None) -> list[dict[str, Any]]:
        """Jobs newest first, optionally of one device and/or state (blocking)."""
        q = select(wap_job).order_by(wap_job.c.id.desc()).limit(limit)
        if device is not None:
            q = q.where(wap_job.c.device == device)
        if state is not None:
            q = q.where(wap_job.c.state == state)
        if before_id is not None:
            q = q.where(wap_job.c.id < before_id)
        with self.reader.connect() as conn:
            return [Job.from_row(r).as_dict() for r in conn.execute(q).mappings().all()]

    # ------------------------------------------------------------------ inventory
    async def sync_inventory(self, devices: list[tuple[str, str, str]]) -> None:
        """Upsert (name, driver, address) of the configured devices; retire the others."""
        now = self.clock()
        names = [d[0] for d in devices]

        def fn(conn: Connection) -> None:
            for name, driver, address in devices:
                conn.execute(sqlite_insert(wap_device).values(
                    name=name, driver=driver, address=address, state="unknown", added=now,
                    updated=now).on_conflict_do_update(
                    index_elements=["name"], set_={"driver": driver, "address": address,
                                                   "updated": now, "retired": None}))
            conn.execute(update(wap_device).where(wap_device.c.name.not_in(names),
                                                  wap_device.c.retired.is_(None))
                         .values(retired=now, updated=now))
        await self.writer.run(fn)

    async def device_state(self, name: str, state: str, reason: str, last_seen: float | None,
                           last_status: dict[str, Any] | None, previous: str | None) -> None:
        """Store the device's state; a change of state is also journaled and sent to the ground."""
        now = self.clock()
        values: dict[str, Any] = {"state": state, "reason": reason, "updated": now}
        if last_seen is not None:
            values["last_seen"] = last_seen
        if last_status is not None:
            values["last_status"] = last_status

        def fn(conn: Connection) -> None:
            conn.execute(update(wap_device).where(wap_device.c.name == name).values(**values))
            if previous != state:
                self._journal(conn, f"wap {name}: {previous} -> {state} ({reason})",
                              {"event": "device", "device": name, "previous": previous,
                               "state": state, "reason": reason}, ground=True)
        await self.writer.run(fn)

    def devices(self) -> list[dict[str, Any]]:
        """The inventory rows (blocking)."""
        with self.reader.connect() as conn:
            return [dict(r) for r in conn.execute(select(wap_device).order_by(wap_device.c.name))
                    .mappings().all()]
