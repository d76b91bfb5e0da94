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
The tables and journal rows are in :mod:`.records`, the files of the staging area in :mod:`.area`;
their calls block, and the service makes them from worker threads (``asyncio.to_thread``).

Policy: begin, write, finalize and content activation need ``hangar_intake`` of the current mode,
software activation ``software_activation``; otherwise :class:`~appliance.errors.PolicyError`
with the reason. A chunk being received when the mode turns to FLIGHT stops at once; the bytes
already received are kept and the client resumes after landing from ``received``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from ..errors import BundleRefused, InsufficientStorage, IntakeError, PolicyError
from ..modes.events import Event, ModeChanged
from ..modes.policy import Mode, PolicyTable
from ..store.files import fsync_dir
from ..store.writer import Writer
from .activators import Activator
from .archive import max_tar_bytes
from .area import StagingArea
from .bundle import Envelope, Trust, Verified, floor_clock, load_envelope, parse_time, verify
from .keyset import trust_from_row
from .receive import Progress, receive
from .records import IntakeRecords
from .slots import SoftwareSlots
from .space import Space, free_bytes, unpacked_bytes

__all__ = ["Activator", "IntakeConfig", "IntakeService"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    """Limits and paths: ``root`` (staging area), sizes in bytes, waits in seconds.

    ``journal_reserve_bytes``: free space on the staging area's filesystem the intake never
    takes (the journal's); ``idle_timeout_s``: an upload body that sends nothing for this long is
    dropped (its bytes kept) and the upload freed for a resuming push.
    """

    root: Path
    aircraft_id: str
    max_bundle_bytes: int = 8 << 30
    chunk_bytes: int = 1 << 20
    free_margin_bytes: int = 64 << 20
    quiet_wait_s: float = 300.0
    quiet_poll_s: float = 0.5
    journal_reserve_bytes: int = 16 << 20
    idle_timeout_s: float = 10.0


@dataclass
class IntakeService:
    """Uploads, staging and activation of signed bundles (see the module docstring).

    Its SQLite reads block; the async methods run them in worker threads (``asyncio.to_thread``),
    the plain ones (:meth:`status`, :meth:`installed`, ...) are for threads and tests.
    """

    cfg: IntakeConfig
    trust: Trust
    writer: Writer
    reader: Engine
    mode: Callable[[], Mode]
    policy: PolicyTable
    utc: Callable[[], tuple[float, str]]
    activators: dict[str, Activator]
    quiet: Callable[[], str | None] = lambda: None
    free_space: Callable[[Path], int] = free_bytes
    #: The local wall clock (epoch s) for the security time floor; tests set it.
    wall: Callable[[], float] = time.time
    slots: SoftwareSlots | None = None
    #: Bytes stored by :meth:`write` since start (tests count re-sent bytes with it).
    bytes_stored: int = 0
    records: IntakeRecords = field(init=False)
    area: StagingArea = field(init=False)
    space: Space = field(init=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _on_ground: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Build the records over ``reader`` and the staging area under ``cfg.root``."""
        self.records = IntakeRecords(self.reader, self.cfg.aircraft_id, self.utc)
        self.area = StagingArea(self.cfg.root)
        self.space = Space(self.cfg.root, self.cfg.journal_reserve_bytes, self.free_space)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def uploads(self) -> Path:
        """Where payloads are received (``<id>.part``)."""
        return self.area.uploads

    async def start(self) -> None:
        """Create the folders; bring every upload back to a consistent state after a cut."""
        await asyncio.to_thread(self.area.prepare)
        await asyncio.to_thread(lambda: self.area.recover(self.records.uploads()))
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
        current = await asyncio.to_thread(slots.current)
        info = await asyncio.to_thread(slots.info, current)

        def write(conn: Connection) -> None:
            if report is not None:
                self.records.journal(conn, f"software_{report.get('result')}",
                                     f"intake: software trial {report.get('result')}: {report}",
                                     report)
            if info is not None:
                self.records.install(conn, "software", {
                    "version": info["version"], "bundle_id": info["bundle_id"],
                    "name": info["name"], "keyids": info["keyids"],
                    "installed_at": info["installed_at"], "detail": {"slot": current}})
        if report is not None or info is not None:
            await self.writer.run(write)
        return report

    def on_event(self, ev: Event) -> None:
        """Chain listener: a ModeChanged pauses (FLIGHT) or resumes (ground) uploads."""
        if isinstance(ev, ModeChanged):
            self._mode_now()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = loop.create_task(self._journal_mode(ev.current))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _mode_now(self) -> None:
        if self.policy[self.mode()].hangar_intake:
            self._on_ground.set()
        else:
            self._on_ground.clear()

    async def _journal_mode(self, mode: str) -> None:
        n = await asyncio.to_thread(self.records.receiving)
        if n:
            what = "resumed" if self.policy[Mode(mode)].hangar_intake else "paused"
            await self.writer.run(lambda c: self.records.journal(
                c, f"uploads_{what}", f"intake: {n} upload(s) {what} ({mode})", {"mode": mode}))

    async def wait_ground(self) -> None:
        """Return once the mode allows intake again."""
        await self._on_ground.wait()

    # --- helpers ---------------------------------------------------------------------------
    def _check_mode(self, what: str, software: bool = False) -> None:
        mode = self.mode()
        p = self.policy[mode]
        if not (p.software_activation if software else p.hangar_intake):
            raise PolicyError(f"{what} is not allowed in {mode}: hangar intake and activation "
                              "only in GROUND (parked) or MAINTENANCE")

    def _lock(self, bid: str) -> asyncio.Lock:
        return self._locks.setdefault(bid, asyncio.Lock())

    async def _row(self, bid: str) -> Any:
        """The upload row of ``bid`` (read in a thread); UnknownUpload if there is none."""
        return await asyncio.to_thread(self.records.row, bid)

    def installed_version(self, kind: str) -> int:
        """The active version of ``kind`` (0 if none); blocking."""
        return self.records.installed_version(kind)

    def clock(self) -> tuple[float, str]:
        """The clock for security decisions (expiry): never below the stored time floor.

        ``max(stored floor, local wall clock)`` with the name of the one that won (see
        :func:`~.bundle.floor_clock`); bus (avionics) time never enters. Blocking (reads the floor).
        """
        return floor_clock(self.records.time_floor(), self.wall())

    def trust_in_force(self) -> Trust:
        """The newest key set installed by a ``keys`` bundle, else ``trust`` (config); blocking."""
        return trust_from_row(self.records.key_set(), self.trust)

    def _verify(self, env: Envelope) -> Verified:
        """Check ``env`` against the trust in force, the installed version and the clock; blocking."""
        now, clock = self.clock()
        return verify(env, self.trust_in_force(), self.installed_version(env.meta().kind), now, clock)

    async def _refuse(self, what: str, reason: str, data: dict[str, Any]) -> None:
        await self.writer.run(lambda c: self.records.journal(
            c, "refused", f"intake refused ({what}): {reason}", {"reason": reason, **data}))

    # --- begin / write ---------------------------------------------------------------------
    async def begin(self, metadata: Any, who: str = "hangar") -> dict[str, Any]:
        """Verify the signed metadata and open (or resume) its upload; returns :meth:`status`.

        Raises PolicyError (mode), BundleRefused (with the reason; journaled).
        """
        self._check_mode("hangar intake")
        try:
            admitted = await asyncio.to_thread(self._admit, metadata)
        except BundleRefused as e:
            await self._refuse("begin", str(e), {"by": who})
            raise
        if isinstance(admitted, str):  # a cut hid the activation's answer: not a replay
            return await self.get_status(admitted)
        env, v, existing = admitted
        meta = v.meta
        if existing is not None and existing.state in ("receiving", "complete", "staged"):
            return await self.get_status(v.bundle_id)
        now = time.time()
        # The floor rises to the signed issue time and to the clock this admission was judged by
        # (at most the bundle's own signed expiry: verify() refused it otherwise).
        floor = max(parse_time(meta.issued), v.now if v.now is not None else 0.0)
        values = dict(kind=meta.kind, name=meta.name, version=meta.version,
                      envelope=env.model_dump(mode="json"), length=meta.payload.length,
                      received=0, state="receiving", reason=None, keyids=list(v.keyids),
                      created=now, updated=now)
        await asyncio.to_thread(self.area.drop_part, v.bundle_id)

        def write(conn: Connection) -> None:
            self.records.open_upload(conn, v.bundle_id, values, existing is not None, floor)
            self.records.journal(
                conn, "begin", f"intake: upload of {meta.kind} {meta.name} v{meta.version} "
                f"({meta.payload.length} bytes) opened by {who}",
                {"bundle_id": v.bundle_id, "kind": meta.kind, "name": meta.name,
                 "version": meta.version, "keyids": list(v.keyids), "by": who, "clock": v.clock})

        await self.writer.run(write)
        return await self.get_status(v.bundle_id)

    def _admit(self, metadata: Any) -> str | tuple[Envelope, Verified, Any]:
        """Blocking checks of :meth:`begin` (run in a worker thread).

        Returns the bundle id if it is already active, else ``(envelope, verified, existing
        upload row or None)``; raises BundleRefused with the reason.
        """
        env = load_envelope(metadata)
        if self.records.is_active(env.bundle_id()):
            return env.bundle_id()
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
        free = self.space.available()
        existing = self.records.find(v.bundle_id)
        if existing is None and need > free:
            raise BundleRefused(f"larger than the free space: needs {need} bytes, {free} free in "
                                f"the staging area beside the journal's reserve")
        return env, v, existing

    def status(self, bid: str) -> dict[str, Any]:
        """``{id, kind, name, version, length, received, state, reason, paused, chunk_bytes}``.

        Blocking (see :meth:`get_status`); raises UnknownUpload.
        """
        r = self.records.row(bid)
        return {"id": r.id, "kind": r.kind, "name": r.name, "version": r.version,
                "length": r.length, "received": r.received, "state": r.state, "reason": r.reason,
                "keyids": r.keyids, "paused": not self._on_ground.is_set(),
                "chunk_bytes": self.cfg.chunk_bytes}

    async def get_status(self, bid: str) -> dict[str, Any]:
        """:meth:`status`, read in a worker thread; raises UnknownUpload."""
        return await asyncio.to_thread(self.status, bid)

    async def write(self, bid: str, offset: int, body: AsyncIterator[bytes]) -> dict[str, Any]:
        """Store the bytes of ``body`` at ``offset``; returns :meth:`status` (``received`` moved).

        ``offset`` must equal ``received`` (else IntakeError naming the right offset). Bytes that
        arrive before a link drop, a stall, a full disk or a switch to FLIGHT are kept (durable
        before this returns or raises). Waits at most ``idle_timeout_s`` for another connection
        writing the same upload. Raises PolicyError (mode), UnknownUpload, IntakeError (wrong
        state/offset, busy), UploadStalled (no byte for ``idle_timeout_s``), InsufficientStorage
        (the chunk does not fit beside the journal's reserve), BundleRefused (more bytes than the
        payload).
        """
        self._check_mode("upload")
        lock = self._lock(bid)
        try:
            await asyncio.wait_for(lock.acquire(), self.cfg.idle_timeout_s)
        except TimeoutError:
            raise IntakeError(f"upload {bid[:12]} is being written by another connection; "
                              "resume from received") from None
        try:
            r = await self._row(bid)
            if r.state != "receiving":
                raise IntakeError(f"upload {bid[:12]} is {r.state}, not receiving")
            if offset != r.received:
                raise IntakeError(f"offset {offset} is not the resume offset {r.received}")
            await asyncio.to_thread(self.space.require, min(self.cfg.chunk_bytes, r.length - offset),
                                    f"a chunk of upload {bid[:12]}")
            fd = os.open(self.area.part(bid), os.O_WRONLY | os.O_CREAT, 0o600)
            progress = Progress(offset)
            try:
                stopped = await receive(
                    body, fd, progress, r.length, ground=self._on_ground,
                    idle_timeout_s=self.cfg.idle_timeout_s,
                    room=lambda n: self.space.require(n, f"a chunk of upload {bid[:12]}"))
            finally:
                os.close(fd)
                if progress.end != offset:
                    await self._commit_received(bid, progress.end, r.length)
            self.bytes_stored += progress.end - offset
            if stopped is not None:
                log.warning("intake %s: upload stopped: %s", bid[:12], stopped)
                if isinstance(stopped, BundleRefused):
                    await self._refuse("upload", str(stopped), {"bundle_id": bid})
                raise stopped
            return await self.get_status(bid)
        finally:
            lock.release()

    async def _commit_received(self, bid: str, pos: int, length: int) -> None:
        def write(conn: Connection) -> None:
            values: dict[str, Any] = {"received": pos, "updated": time.time()}
            if pos == length:
                values["state"] = "complete"
                self.records.journal(conn, "received",
                                     f"intake: upload {bid[:12]} complete ({pos} bytes)",
                                     {"bundle_id": bid, "bytes": pos})
            self.records.set_upload(conn, bid, **values)

        await asyncio.to_thread(fsync_dir, self.uploads)  # the part file's name is durable too
        await self.writer.run(write)

    # --- finalize / activate ---------------------------------------------------------------
    async def _fail(self, bid: str, state_: str, reason: str) -> None:
        def write(conn: Connection) -> None:
            self.records.set_upload(conn, bid, state=state_, reason=reason, updated=time.time())
            self.records.journal(conn, state_, f"intake {bid[:12]} {state_}: {reason}",
                                 {"bundle_id": bid, "reason": reason})
        await self.writer.run(write)

    async def finalize(self, bid: str) -> dict[str, Any]:
        """Check the complete payload and stage it; returns :meth:`status` (state ``staged``).

        Raises PolicyError, UnknownUpload, IntakeError (not complete), BundleRefused (truncated
        upload, payload hash/length, archive contents, colliding paths; the upload is then
        ``refused`` and its files removed), InsufficientStorage (the unpacked files would not fit
        beside the journal's reserve, checked before unpacking, or the disk filled up meanwhile;
        nothing unpacked is kept and the upload stays ``complete`` for a retry).
        """
        self._check_mode("staging")
        async with self._lock(bid):
            r = await self._row(bid)
            if r.state == "staged":
                return await self.get_status(bid)
            if r.state != "complete":
                if r.state == "receiving":
                    raise BundleRefused(f"truncated upload: {r.received} of {r.length} bytes received")
                raise IntakeError(f"upload {bid[:12]} is {r.state}")
            try:
                meta = load_envelope(r.envelope).meta()  # stored before a rule was added?
                await asyncio.to_thread(self.space.require, unpacked_bytes(meta),
                                        f"unpacking {meta.kind} {meta.name} v{meta.version}")
                await asyncio.to_thread(self.area.stage, bid, meta)
            except BundleRefused as e:
                await asyncio.to_thread(self.area.drop_part, bid)
                await self._fail(bid, "refused", str(e))
                raise
            except InsufficientStorage as e:
                why = str(e)
                await self.writer.run(lambda c: self.records.journal(
                    c, "no_space", f"intake {bid[:12]}: {why}", {"bundle_id": bid, "reason": why}))
                raise

            def write(conn: Connection) -> None:
                self.records.set_upload(conn, bid, state="staged", updated=time.time())
                self.records.journal(conn, "staged", f"intake: {meta.kind} {meta.name} "
                                     f"v{meta.version} verified and staged",
                                     {"bundle_id": bid, "files": len(meta.files)})
            await self.writer.run(write)
            await asyncio.to_thread(self.area.drop_part, bid)
            return await self.get_status(bid)

    async def activate(self, bid: str, who: str = "hangar") -> dict[str, Any]:
        """Switch the staged bundle in (one atomic step); returns the installed record.

        Content waits up to ``quiet_wait_s`` for the quiet condition, then refuses. Raises
        PolicyError (mode, or not quiet), BundleRefused (version no longer above the installed one,
        expired since, package refused by the store), UnknownUpload, IntakeError (not staged).
        """
        r = await self._row(bid)
        software = r.kind == "software"
        self._check_mode(f"{r.kind} activation", software)
        async with self._lock(bid):
            r = await self._row(bid)
            if r.state == "active":
                return (await self.get_installed()).get(r.kind, {})
            if r.state != "staged":
                raise IntakeError(f"upload {bid[:12]} is {r.state}, not staged")
            env = load_envelope(r.envelope)
            try:
                v = await asyncio.to_thread(self._verify, env)
            except BundleRefused as e:
                await self._fail(bid, "refused", str(e))
                raise
            if r.kind == "content":
                await self._wait_quiet(bid)
            self._check_mode("activation", software)
            now = time.time()

            def extra(conn: Connection, detail: dict[str, Any]) -> None:
                self.records.install(conn, v.meta.kind, {
                    "version": v.meta.version, "bundle_id": bid, "name": v.meta.name,
                    "keyids": list(v.keyids), "installed_at": now, "detail": detail})
                self.records.set_upload(conn, bid, state="active", updated=now)
                self.records.journal(conn, "activated", f"intake: {v.meta.kind} {v.meta.name} "
                                     f"v{v.meta.version} activated by {who}, signed by "
                                     f"{len(v.keyids)} key(s)",
                                     {"bundle_id": bid, "kind": v.meta.kind,
                                      "version": v.meta.version, "by": who,
                                      "keyids": list(v.keyids), **detail})

            activator = self.activators.get(r.kind)
            if activator is None:
                raise IntakeError(f"no activator for {r.kind} bundles")
            try:
                await activator(self.area.staged(bid), v, extra)
            except BundleRefused as e:
                await self._fail(bid, "refused", str(e))
                raise
            await asyncio.to_thread(self.area.drop_staged, bid)
            return (await self.get_installed()).get(r.kind, {})

    async def _wait_quiet(self, bid: str) -> None:
        deadline = time.monotonic() + self.cfg.quiet_wait_s
        while (why := self.quiet()) is not None:
            if time.monotonic() >= deadline:
                await self._refuse("activation", f"not quiet: {why}", {"bundle_id": bid})
                raise PolicyError(f"content activation waits for a quiet cabin: {why}")
            await asyncio.sleep(self.cfg.quiet_poll_s)

    async def abort(self, bid: str) -> None:
        """Abandon an upload that is not active; its files are removed.

        Raises UnknownUpload, IntakeError (the bundle is active).
        """
        async with self._lock(bid):
            r = await self._row(bid)
            if r.state == "active":
                raise IntakeError("an active bundle cannot be aborted")
            await asyncio.to_thread(self.area.drop_part, bid)
            await asyncio.to_thread(self.area.drop_staged, bid)
            await self._fail(bid, "aborted", "aborted by the operator")

    # --- views -----------------------------------------------------------------------------
    def installed(self) -> dict[str, dict[str, Any]]:
        """Per kind: ``{kind, version, bundle_id, name, keyids, installed_at, detail}``; blocking."""
        return self.records.installed()

    async def get_installed(self) -> dict[str, dict[str, Any]]:
        """:meth:`installed`, read in a worker thread."""
        return await asyncio.to_thread(self.records.installed)

    def list_uploads(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest uploads (without their metadata); blocking."""
        return self.records.list_uploads(limit)

    async def get_uploads(self, limit: int = 50) -> list[dict[str, Any]]:
        """:meth:`list_uploads`, read in a worker thread."""
        return await asyncio.to_thread(self.records.list_uploads, limit)
