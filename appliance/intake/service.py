"""The intake service: begin, chunked resumable upload, verify + stage, activate; policy; journal.

Life of a bundle (``id`` = bundle id): :meth:`IntakeService.begin` takes the signed metadata and
verifies it (signatures, threshold, version, expiry, paths, size limits, free space) before a
single payload byte is stored; :meth:`write` appends bytes at ``offset`` (must equal
``received``) to ``uploads/<id>.part``, fsyncs, then commits ``received`` (so the offset is
durable and never ahead of the data; at start a longer file is truncated back to it);
:meth:`finalize` checks the payload's length and SHA-256, unpacks into ``unpack/<id>`` checking
every file, then renames it to ``staged/<id>``; :meth:`activate` re-checks the version and the
mode, waits for the quiet condition (content), and switches in one step. Every step and refusal is
journaled (kind ``intake``) and queued for the ground (stream ``intake``) in the same transaction.

Policy: begin, write, finalize and content activation need ``hangar_intake`` of the current mode,
software activation ``software_activation``; otherwise :class:`~appliance.errors.PolicyError`
with the reason. A chunk being received when the mode turns to FLIGHT stops at once; the bytes
already received are kept and the client resumes after landing from ``received``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import BundleRefused, IntakeError, PolicyError
from ..modes.events import Event, ModeChanged
from ..modes.policy import Mode, PolicyTable
from ..store.files import ensure_dir, fsync_dir
from ..store.models import journal, state
from ..store.outbox import enqueue
from ..store.writer import Writer
from .archive import max_tar_bytes, unpack
from .bundle import Envelope, Trust, Verified, load_envelope, parse_time, verify
from .slots import SoftwareSlots
from .tables import TIME_FLOOR_KEY, intake_installed, intake_upload

__all__ = ["Activator", "IntakeConfig", "IntakeService"]

log = logging.getLogger(__name__)
_FLUSH = 1 << 20


class Activator(Protocol):
    """Switches a staged bundle in: ``extra(conn, detail)`` must run inside the switching transaction."""

    async def __call__(self, staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Switch ``staged`` in, running ``extra(conn, detail)`` in the switching transaction.

        ``detail`` says what was switched (titles, slot); it is also returned.
        """


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    """Limits and paths: ``root`` (staging area), sizes in bytes, waits in seconds."""

    root: Path
    aircraft_id: str
    max_bundle_bytes: int = 8 << 30
    chunk_bytes: int = 1 << 20
    free_margin_bytes: int = 64 << 20
    quiet_wait_s: float = 300.0
    quiet_poll_s: float = 0.5


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@dataclass
class IntakeService:
    """Uploads, staging and activation of signed bundles (see the module docstring)."""

    cfg: IntakeConfig
    trust: Trust
    writer: Writer
    reader: Engine
    mode: Callable[[], Mode]
    policy: PolicyTable
    utc: Callable[[], tuple[float, str]]
    activators: dict[str, Activator]
    quiet: Callable[[], str | None] = lambda: None
    free_space: Callable[[Path], int] = _free_bytes
    slots: SoftwareSlots | None = None
    #: Bytes stored by :meth:`write` since start (tests count re-sent bytes with it).
    bytes_stored: int = 0
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _on_ground: asyncio.Event = field(default_factory=asyncio.Event)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def uploads(self) -> Path:
        """Where payloads are received (``<id>.part``)."""
        return self.cfg.root / "uploads"

    def _dir(self, name: str, bid: str) -> Path:
        return self.cfg.root / name / bid

    async def start(self) -> None:
        """Create the folders; bring every upload back to a consistent state after a cut."""
        for d in ("uploads", "unpack", "staged"):
            ensure_dir(self.cfg.root / d)
        await asyncio.to_thread(self._recover_files)
        self._mode_now()
        if self.slots is not None:
            await asyncio.to_thread(self.slots.prepare)
            await self.sync_slots()

    async def sync_slots(self) -> dict[str, Any] | None:
        """Journal the last software trial's report; make ``intake_installed`` match ``current``."""
        slots = self.slots
        if slots is None:
            return None
        report = await asyncio.to_thread(slots.take_report)
        info = slots.info(slots.current())

        def write(conn: Connection) -> None:
            if report is not None:
                self._journal(conn, f"software_{report.get('result')}",
                              f"intake: software trial {report.get('result')}: {report}", report)
            if info is not None:
                row = {"version": info["version"], "bundle_id": info["bundle_id"],
                       "name": info["name"], "keyids": info["keyids"],
                       "installed_at": info["installed_at"], "detail": {"slot": slots.current()}}
                conn.execute(sqlite_insert(intake_installed).values(kind="software", **row)
                             .on_conflict_do_update(index_elements=["kind"], set_=row))
        if report is not None or info is not None:
            await self.writer.run(write)
        return report

    def _recover_files(self) -> None:
        shutil.rmtree(self.cfg.root / "unpack", ignore_errors=True)
        ensure_dir(self.cfg.root / "unpack")
        with self.reader.connect() as conn:
            rows = conn.execute(select(intake_upload)).all()
        live = set()
        for r in rows:
            part = self.uploads / f"{r.id}.part"
            if r.state == "receiving":
                live.add(part.name)
                if part.exists() and part.stat().st_size > r.received:
                    os.truncate(part, r.received)  # bytes beyond the durable offset: not trusted
                    log.info("intake %s: truncated the part file to %d bytes", r.id[:12], r.received)
            elif r.state in ("complete", "staged"):
                live.add(part.name)
            if r.state != "staged":
                shutil.rmtree(self._dir("staged", r.id), ignore_errors=True)
        for p in self.uploads.iterdir():
            if p.name not in live:
                p.unlink()
        fsync_dir(self.uploads)

    def on_event(self, ev: Event) -> None:
        """Chain listener: a ModeChanged pauses (FLIGHT) or resumes (ground) uploads."""
        if isinstance(ev, ModeChanged):
            self._mode_now()
            with_loop = asyncio.get_running_loop() if _has_loop() else None
            if with_loop is not None:
                with_loop.create_task(self._journal_mode(ev.current))

    def _mode_now(self) -> None:
        if self.policy[self.mode()].hangar_intake:
            self._on_ground.set()
        else:
            self._on_ground.clear()

    async def _journal_mode(self, mode: str) -> None:
        with self.reader.connect() as conn:
            n = len(conn.execute(select(intake_upload.c.id)
                                 .where(intake_upload.c.state == "receiving")).all())
        if n:
            what = "resumed" if self.policy[Mode(mode)].hangar_intake else "paused"
            await self.writer.run(lambda c: self._journal(
                c, f"uploads_{what}", f"intake: {n} upload(s) {what} ({mode})", {"mode": mode}))

    async def wait_ground(self) -> None:
        """Return once the mode allows intake again."""
        await self._on_ground.wait()

    # --- helpers ---------------------------------------------------------------------------
    def _journal(self, conn: Connection, action: str, summary: str, data: dict[str, Any]) -> None:
        utc, src = self.utc()
        body = {"action": action, **data}
        jid = conn.execute(insert(journal).values(
            kind="intake", t_card=None, utc=utc, time_source=src, summary=summary, data=body,
            created=time.time()).returning(journal.c.id)).scalar_one()
        enqueue(conn, self.cfg.aircraft_id, "intake",
                {"journal_id": jid, "kind": "intake", "utc": utc, "time_source": src, **body})

    def _check_mode(self, what: str, software: bool = False) -> None:
        mode = self.mode()
        p = self.policy[mode]
        if not (p.software_activation if software else p.hangar_intake):
            raise PolicyError(f"{what} is not allowed in {mode}: hangar intake and activation "
                              "only in GROUND (parked) or MAINTENANCE")

    def _lock(self, bid: str) -> asyncio.Lock:
        return self._locks.setdefault(bid, asyncio.Lock())

    def _row(self, bid: str) -> Any:
        with self.reader.connect() as conn:
            row = conn.execute(select(intake_upload).where(intake_upload.c.id == bid)).first()
        if row is None:
            raise IntakeError(f"no upload {bid}")
        return row

    def installed_version(self, kind: str) -> int:
        """The active version of ``kind`` (0 if none)."""
        with self.reader.connect() as conn:
            v = conn.execute(select(intake_installed.c.version)
                             .where(intake_installed.c.kind == kind)).scalar()
        return int(v or 0)

    def clock(self) -> tuple[float | None, str]:
        """The expiry clock: avionics UTC if valid, else the newest signed timestamp seen."""
        utc, src = self.utc()
        if src == "avionics":
            return utc, "avionics UTC"
        with self.reader.connect() as conn:
            floor = conn.execute(select(state.c.value).where(state.c.key == TIME_FLOOR_KEY)).scalar()
        return (float(floor), "newest signed timestamp seen") if floor is not None else (None, "none")

    def _verify(self, env: Envelope) -> Verified:
        now, clock = self.clock()
        meta = env.meta()
        return verify(env, self.trust, self.installed_version(meta.kind), now, clock)

    async def _refuse(self, what: str, reason: str, data: dict[str, Any]) -> None:
        await self.writer.run(lambda c: self._journal(
            c, "refused", f"intake refused ({what}): {reason}", {"reason": reason, **data}))

    # --- begin / write ---------------------------------------------------------------------
    async def begin(self, metadata: Any, who: str = "hangar") -> dict[str, Any]:
        """Verify the signed metadata and open (or resume) its upload; returns :meth:`status`.

        Raises PolicyError (mode), BundleRefused (with the reason; journaled).
        """
        self._check_mode("hangar intake")
        try:
            env = load_envelope(metadata)
            if self._is_active(env.bundle_id()):  # a cut hid the activation's answer: not a replay
                return self.status(env.bundle_id())
            v = self._verify(env)
            meta = v.meta
            if meta.payload.length > self.cfg.max_bundle_bytes:
                raise BundleRefused(f"too large: payload of {meta.payload.length} bytes, the limit "
                                    f"is {self.cfg.max_bundle_bytes}")
            if max_tar_bytes(meta) > 64 * meta.payload.length + (1 << 20):
                raise BundleRefused("decompression bomb: the manifest declares more than 64 times "
                                    "the payload's size")
            copies = 2 if meta.kind == "content" else 3  # unpacked + installed (+ slot rebuild)
            need = meta.payload.length + copies * meta.total_length() + self.cfg.free_margin_bytes
            free = self.free_space(self.cfg.root)
            existing = self._existing(v.bundle_id)
            if existing is None and need > free:
                raise BundleRefused(f"larger than the free space: needs {need} bytes, "
                                    f"{free} free in the staging area")
        except BundleRefused as e:
            await self._refuse("begin", str(e), {"by": who})
            raise
        if existing is not None and existing.state in ("receiving", "complete", "staged"):
            return self.status(v.bundle_id)
        now = time.time()
        issued = parse_time(meta.issued)
        values = dict(kind=meta.kind, name=meta.name, version=meta.version,
                      envelope=env.model_dump(mode="json"), length=meta.payload.length,
                      received=0, state="receiving", reason=None, keyids=list(v.keyids),
                      created=now, updated=now)
        part = self.uploads / f"{v.bundle_id}.part"
        part.unlink(missing_ok=True)

        def write(conn: Connection) -> None:
            if existing is None:
                conn.execute(insert(intake_upload).values(id=v.bundle_id, **values))
            else:
                conn.execute(update(intake_upload).where(intake_upload.c.id == v.bundle_id)
                             .values(**values))
            floor = conn.execute(select(state.c.value).where(state.c.key == TIME_FLOOR_KEY)).scalar()
            if floor is None or issued > float(floor):
                conn.execute(sqlite_insert(state).values(key=TIME_FLOOR_KEY, value=issued)
                             .on_conflict_do_update(index_elements=["key"], set_={"value": issued}))
            self._journal(conn, "begin", f"intake: upload of {meta.kind} {meta.name} v{meta.version} "
                          f"({meta.payload.length} bytes) opened by {who}",
                          {"bundle_id": v.bundle_id, "kind": meta.kind, "name": meta.name,
                           "version": meta.version, "keyids": list(v.keyids), "by": who,
                           "clock": v.clock})

        await self.writer.run(write)
        return self.status(v.bundle_id)

    def _is_active(self, bid: str) -> bool:
        """True if ``bid`` is the installed bundle of its kind (re-pushing it is not a replay)."""
        with self.reader.connect() as conn:
            return conn.execute(select(intake_installed.c.kind)
                                .where(intake_installed.c.bundle_id == bid)).first() is not None

    def _existing(self, bid: str) -> Any:
        try:
            return self._row(bid)
        except IntakeError:
            return None

    def status(self, bid: str) -> dict[str, Any]:
        """``{id, kind, name, version, length, received, state, reason, paused, chunk_bytes}``."""
        r = self._row(bid)
        return {"id": r.id, "kind": r.kind, "name": r.name, "version": r.version,
                "length": r.length, "received": r.received, "state": r.state, "reason": r.reason,
                "keyids": r.keyids, "paused": not self._on_ground.is_set(),
                "chunk_bytes": self.cfg.chunk_bytes}

    async def write(self, bid: str, offset: int, body: AsyncIterator[bytes]) -> dict[str, Any]:
        """Store the bytes of ``body`` at ``offset``; returns :meth:`status` (``received`` moved).

        ``offset`` must equal ``received`` (else IntakeError naming the right offset). Bytes that
        arrive before a link drop or a switch to FLIGHT are kept (durable before this returns or
        raises). Raises PolicyError (mode), IntakeError (unknown upload, wrong state/offset, more
        bytes than the payload).
        """
        self._check_mode("upload")
        async with self._lock(bid):
            r = self._row(bid)
            if r.state != "receiving":
                raise IntakeError(f"upload {bid[:12]} is {r.state}, not receiving")
            if offset != r.received:
                raise IntakeError(f"offset {offset} is not the resume offset {r.received}")
            part = self.uploads / f"{bid}.part"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o600)
            pos = offset
            buf = bytearray()
            stopped: str | None = None
            try:
                try:
                    async for piece in body:
                        if not self._on_ground.is_set():
                            stopped = "paused: the aircraft left the ground (FLIGHT)"
                            break
                        if pos + len(buf) + len(piece) > r.length:
                            stopped = (f"more bytes than the signed payload length {r.length}: "
                                       "not this bundle's payload")
                            break
                        buf += piece
                        if len(buf) >= _FLUSH:
                            pos += await asyncio.to_thread(os.pwrite, fd, bytes(buf), pos)
                            buf.clear()
                finally:  # a drop mid-body still keeps what arrived
                    if buf:
                        pos += await asyncio.to_thread(os.pwrite, fd, bytes(buf), pos)
                    await asyncio.to_thread(os.fsync, fd)
                    if pos != offset:
                        await self._commit_received(bid, pos, r.length)
            finally:
                os.close(fd)
            self.bytes_stored += pos - offset
            if stopped is not None:
                if stopped.startswith("paused"):
                    raise PolicyError(stopped)
                await self._refuse("upload", stopped, {"bundle_id": bid})
                raise BundleRefused(stopped)
            return self.status(bid)

    async def _commit_received(self, bid: str, pos: int, length: int) -> None:
        def write(conn: Connection) -> None:
            values: dict[str, Any] = {"received": pos, "updated": time.time()}
            if pos == length:
                values["state"] = "complete"
                self._journal(conn, "received", f"intake: upload {bid[:12]} complete ({pos} bytes)",
                              {"bundle_id": bid, "bytes": pos})
            conn.execute(update(intake_upload).where(intake_upload.c.id == bid).values(**values))

        await asyncio.to_thread(fsync_dir, self.uploads)  # the part file's name is durable too
        await self.writer.run(write)

    # --- finalize / activate ---------------------------------------------------------------
    async def _fail(self, bid: str, state_: str, reason: str) -> None:
        def write(conn: Connection) -> None:
            conn.execute(update(intake_upload).where(intake_upload.c.id == bid)
                         .values(state=state_, reason=reason, updated=time.time()))
            self._journal(conn, state_, f"intake {bid[:12]} {state_}: {reason}",
                          {"bundle_id": bid, "reason": reason})
        await self.writer.run(write)

    async def finalize(self, bid: str) -> dict[str, Any]:
        """Check the complete payload and stage it; returns :meth:`status` (state ``staged``).

        Raises PolicyError, IntakeError (not complete: truncated upload), BundleRefused (payload
        hash/length, archive contents; the upload is then ``refused`` and its files removed).
        """
        self._check_mode("staging")
        async with self._lock(bid):
            r = self._row(bid)
            if r.state == "staged":
                return self.status(bid)
            if r.state != "complete":
                if r.state == "receiving":
                    raise BundleRefused(f"truncated upload: {r.received} of {r.length} bytes received")
                raise IntakeError(f"upload {bid[:12]} is {r.state}")
            env = load_envelope(r.envelope)
            meta = env.meta()
            part = self.uploads / f"{bid}.part"
            unpack_dir = self._dir("unpack", bid)
            try:
                await asyncio.to_thread(self._check_payload, part, meta.payload.length,
                                        meta.payload.sha256)
                shutil.rmtree(unpack_dir, ignore_errors=True)
                await asyncio.to_thread(unpack, part, meta, unpack_dir)
            except BundleRefused as e:
                shutil.rmtree(unpack_dir, ignore_errors=True)
                part.unlink(missing_ok=True)
                await self._fail(bid, "refused", str(e))
                raise
            staged = self._dir("staged", bid)
            shutil.rmtree(staged, ignore_errors=True)
            os.replace(unpack_dir, staged)
            fsync_dir(staged.parent)
            fsync_dir(unpack_dir.parent)

            def write(conn: Connection) -> None:
                conn.execute(update(intake_upload).where(intake_upload.c.id == bid)
                             .values(state="staged", updated=time.time()))
                self._journal(conn, "staged", f"intake: {meta.kind} {meta.name} v{meta.version} "
                              "verified and staged", {"bundle_id": bid, "files": len(meta.files)})
            await self.writer.run(write)
            part.unlink(missing_ok=True)
            return self.status(bid)

    @staticmethod
    def _check_payload(part: Path, length: int, sha256: str) -> None:
        size = part.stat().st_size if part.exists() else 0
        if size != length:
            raise BundleRefused(f"truncated upload: payload has {size} of {length} bytes")
        h = hashlib.sha256()
        with open(part, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != sha256:
            raise BundleRefused("payload SHA-256 differs from the signed metadata (altered, or "
                                "files mixed from another bundle)")

    async def activate(self, bid: str, who: str = "hangar") -> dict[str, Any]:
        """Switch the staged bundle in (one atomic step); returns the installed record.

        Content waits up to ``quiet_wait_s`` for the quiet condition, then refuses. Raises
        PolicyError (mode, or not quiet), BundleRefused (version no longer above the installed one,
        expired since, package refused by the store), IntakeError (not staged).
        """
        r = self._row(bid)
        software = r.kind == "software"
        self._check_mode("software activation" if software else "content activation", software)
        async with self._lock(bid):
            r = self._row(bid)
            if r.state == "active":
                return self.installed().get(r.kind, {})
            if r.state != "staged":
                raise IntakeError(f"upload {bid[:12]} is {r.state}, not staged")
            env = load_envelope(r.envelope)
            try:
                v = self._verify(env)
            except BundleRefused as e:
                await self._fail(bid, "refused", str(e))
                raise
            if not software:
                await self._wait_quiet(bid)
            self._check_mode("activation", software)
            now = time.time()

            def extra(conn: Connection, detail: dict[str, Any]) -> None:
                row = dict(version=v.meta.version, bundle_id=bid, name=v.meta.name,
                           keyids=list(v.keyids), installed_at=now, detail=detail)
                conn.execute(sqlite_insert(intake_installed).values(kind=v.meta.kind, **row)
                             .on_conflict_do_update(index_elements=["kind"], set_=row))
                conn.execute(update(intake_upload).where(intake_upload.c.id == bid)
                             .values(state="active", updated=now))
                self._journal(conn, "activated", f"intake: {v.meta.kind} {v.meta.name} "
                              f"v{v.meta.version} activated by {who}, signed by "
                              f"{len(v.keyids)} key(s)", {"bundle_id": bid, "kind": v.meta.kind,
                                                         "version": v.meta.version, "by": who,
                                                         "keyids": list(v.keyids), **detail})

            activator = self.activators.get(r.kind)
            if activator is None:
                raise IntakeError(f"no activator for {r.kind} bundles")
            staged = self._dir("staged", bid)
            try:
                await activator(staged, v, extra)
            except BundleRefused as e:
                await self._fail(bid, "refused", str(e))
                raise
            shutil.rmtree(staged, ignore_errors=True)
            return self.installed().get(r.kind, {})

    async def _wait_quiet(self, bid: str) -> None:
        deadline = time.monotonic() + self.cfg.quiet_wait_s
        while (why := self.quiet()) is not None:
            if time.monotonic() >= deadline:
                await self._refuse("activation", f"not quiet: {why}", {"bundle_id": bid})
                raise PolicyError(f"content activation waits for a quiet cabin: {why}")
            await asyncio.sleep(self.cfg.quiet_poll_s)

    async def abort(self, bid: str) -> None:
        """Abandon an upload that is not active; its files are removed."""
        async with self._lock(bid):
            r = self._row(bid)
            if r.state == "active":
                raise IntakeError("an active bundle cannot be aborted")
            (self.uploads / f"{bid}.part").unlink(missing_ok=True)
            shutil.rmtree(self._dir("staged", bid), ignore_errors=True)
            await self._fail(bid, "aborted", "aborted by the operator")

    # --- views -----------------------------------------------------------------------------
    def installed(self) -> dict[str, dict[str, Any]]:
        """Per kind: ``{version, bundle_id, name, keyids, installed_at, detail}``."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(intake_installed)).mappings().all()
        return {r["kind"]: dict(r) for r in rows}

    def list_uploads(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest uploads (without their metadata)."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(intake_upload).order_by(intake_upload.c.updated.desc())
                                .limit(limit)).mappings().all()
        return [{k: v for k, v in r.items() if k != "envelope"} for r in rows]


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

