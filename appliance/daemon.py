"""The composition root: builds every part from the settings, starts them in order, stops in reverse.

Start: data directory -> recovery (integrity check; a corrupt journal moved aside, the newest good
backup restored) -> journal database (migrations after a backup) -> single writer -> journal
-> avionics chain (initial mode from the journal) -> bus sources -> passenger and admin web servers
-> READY=1. Serve: a health tick every 0.5 s checks the sources (silence, bad-input bursts), sends
WATCHDOG=1 while the journal commits (every half ``$WATCHDOG_USEC`` when systemd set a watchdog for
this process, else every tick) and STATUS= when it changes. Stop (SIGTERM/SIGINT): STOPPING=1, web
servers, sources, journal queue drained, writer stopped — each bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Generator
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI

from firmware_bridge.labels import LabelTable

from . import __version__
from .avionics.can_source import CanReader, open_bus
from .avionics.params import SourceStats
from .avionics.serial_source import SerialCardReader
from .bite import Bite
from .cabin.wiring import build_cabin_network
from .content.wiring import build_passenger_content
from .errors import ApplianceError, StartupError
from .export import export_logs
from .intake.wiring import build_intake
from .modes.airground import AirGroundConfig
from .modes.engine import AvionicsChain
from .modes.events import Event, ModeChanged
from .modes.policy import Mode, PolicyTable
from .notify import notify
from .orders import Orders
from .profile import FlightProfile
from .settings import Settings
from .store.engine import make_engine
from .store.files import ensure_dir
from .store.journal import Journal
from .store.migrate import upgrade
from .store.recovery import recover
from .store.writer import Writer
from .sync import SyncService
from .web import admin, passenger
from .web.admin_sync import sync_router
from .web.auth import AdminAuth, Role
from .web.dashboard import dashboard_html
from .web.metrics import ApplianceCollector, make_metrics
from .web.traffic import PassengerTraffic

__all__ = ["Daemon"]

log = logging.getLogger(__name__)
TICK_S = 0.5
#: Test-only hook (tests/systemd): while the file named by this environment variable exists, the
#: health tick blocks the event loop thread (``time.sleep``), so systemd's watchdog fires. Never set
#: it on an aircraft; unset, it costs one dictionary lookup at start.
TEST_HANG_ENV = "APPLIANCE_TEST_HANG_FILE"


def watchdog_period(environ: dict[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``, or None without a watchdog.

    ``sd_watchdog_enabled()`` semantics: the watchdog is ours only if ``$WATCHDOG_PID`` is unset or
    names this process.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    wd_pid = env.get("WATCHDOG_PID")
    if wd_pid:
        try:
            if int(wd_pid) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 2e6


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the daemon."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Daemon:
    """The service: ``await Daemon(settings).run()`` until SIGTERM; returns the exit status."""

    def __init__(self, settings: Settings) -> None:
        """Keep the settings; nothing starts before :meth:`run`."""
        self.settings = settings
        self.started = time.monotonic()
        self.policy = PolicyTable.default()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self._servers: list[_Server] = []
        self.readers: list[SerialCardReader] = []
        self.can_reader: CanReader | None = None
        self._started: list[Any] = []  #: parts with async start()/stop(), stopped in reverse
        self.journal_errors = 0
        self._hang_file = os.environ.get(TEST_HANG_ENV) or None

    async def run(self) -> int:
        """Start, serve until a stop signal, stop. Returns 0, or 1 if it could not start."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            try:
                await self.start()
            except (ApplianceError, OSError) as e:
                log.error("cannot start: %s", e)
                return 1
            notify("READY=1", wait_s=2.0)
            log.info("ready: passenger http://%s:%d  admin http://%s:%d",
                     self.settings.passenger.host, self.settings.passenger.port,
                     self.settings.admin.host, self.settings.admin.port)
            await self.serve(stop)
        finally:
            await self.stop()
        return 0

    async def start(self) -> None:
        """Build and start every part, in dependency order."""
        await self._start_store()
        await self._start_avionics()
        await self._start_services()
        await self._start_web()
        self._tasks.append(asyncio.create_task(self._tick(), name="health-tick"))

    async def _start_store(self) -> None:
        """Data directory, recovery, migrations, the single writer, the journal."""
        s = self.settings
        ensure_dir(s.data_dir)  # durably: a cut must not take the whole directory away
        db = s.journal_path
        self.recovery = await asyncio.to_thread(recover, db, s.integrity_budget_s)
        engine = make_engine(db, synchronous=s.journal_synchronous)
        backup = await asyncio.to_thread(upgrade, engine, db)
        if backup:
            log.info("journal migrated; backup %s", backup)
        self.writer = Writer(engine)
        self.writer.start()
        self.reader = make_engine(db, readonly=True)
        self.journal = Journal(self.writer, self.reader, s.aircraft_id)
        if self.recovery.state != "green" or self.recovery.removed_temp_files:
            await self.journal.record_health("journal", self.recovery.state, self.recovery.reason,
                                             time.time(), "local")

    async def _start_avionics(self) -> None:
        """The chain (initial mode from the journal), its journaling, the bus sources."""
        s = self.settings
        last = await asyncio.to_thread(self.journal.last_mode)
        initial = Mode(last) if last is not None and last in Mode.__members__ else Mode.GROUND
        ag = AirGroundConfig(**s.airground.model_dump())
        table = LabelTable.default(label_reversed=s.serial.label_reversed)
        self.chain = AvionicsChain(table, ag, initial)
        if last is None:
            await self.journal.record(ModeChanged(0.0, time.time(), "local", None, str(initial),
                                                  {"reason": "new journal: default mode"}))
        self.chain.listeners.append(self._events.put_nowait)
        self._tasks.append(asyncio.create_task(self._journal_events(), name="journal-events"))
        if s.serial.enabled:
            name = s.serial.channel_name
            reader = SerialCardReader(
                s.serial.port, lambda frames: self.chain.feed_frames(frames, name),
                self.chain.decoder(name).stats, baudrate=s.serial.baudrate,
                reconnect_s=s.serial.reconnect_s, name=name,
                on_lost=self.chain.store.expire_source)
            reader.start()
            self.readers.append(reader)
        if s.can.enabled:
            self.can_reader = CanReader(open_bus(s.can), self.chain.feed, SourceStats(), name="can")
            self.can_reader.start()

    def utc(self) -> tuple[float, str]:
        """Best-known UTC now (epoch s) and its source."""
        return self.chain.clock.utc(self.chain.store.now)

    async def _start_services(self) -> None:
        """Orders, profile, BITE, outbound sync."""
        s = self.settings
        self.orders = Orders(self.writer, self.reader, s.aircraft_id, self.utc)
        self.traffic = PassengerTraffic()
        self.profile = FlightProfile(self.chain)
        self.bite = Bite(self.chain, s.data_dir, self.recovery, self.writer.stats)
        self.sync = SyncService(s, self.writer, self.reader, self.chain, policy=self.policy)
        await self.sync.start()
        if s.sync.enabled:
            self.bite.add("sync", lambda: sync_bite(self.sync.status()))

    async def _start_web(self) -> None:
        """Content, the passenger and admin web servers, the subsystems behind the admin port.

        Content: store, catalog, media server. Behind the admin port: cabin network, intake.
        """
        s = self.settings
        content = build_passenger_content(s, self.chain, self.writer, self.reader, self.policy)
        for part in content.startables:
            await part.start()
            self._started.append(part)
            catalog = getattr(part, "catalog", None)
            if catalog is not None:
                self.bite.add("content", functools.partial(content_bite, catalog))
        await self._serve_web(passenger.create_app(self.chain, self.orders, self.policy,
                                                   self.traffic, routers=content.routers,
                                                   mounts=content.mounts),
                              s.passenger.host, s.passenger.port)
        token = s.admin_token.get_secret_value() if s.admin_token else None
        if token is None and not s.admin_users:
            log.warning("no admin_token and no admin_users configured: the admin API refuses all")
        auth = AdminAuth(s.admin_users, token, s.admin_auth)
        maintenance = [Depends(admin.require(auth, Role.MAINTENANCE))]
        cabin_router, self.cabin = build_cabin_network(s, self.chain, self.writer, self.reader, auth)
        await self.cabin.start()
        self._started.append(self.cabin)
        self.bite.add("cabin_network", self.cabin.status)
        usage = content.usage

        def quiet() -> str | None:  # content activation waits until nobody is watching
            if usage is None:
                return None
            busy = sum(1 for x in usage.sessions.values() if usage.clock() - x.last < 60)
            return f"{busy} passenger(s) playing content" if busy else None

        intake_router, self.intake = build_intake(s, self.chain, self.writer, self.reader,
                                                  content.store, auth, quiet=quiet)
        self.chain.listeners.append(self.intake.on_event)
        await self.intake.start()
        if self.intake.slots is not None:
            self.bite.add("software_slot", functools.partial(slot_bite, self.intake.slots))
        collector = ApplianceCollector(self.chain, self.writer.stats, self.traffic, s.data_dir)
        deps = admin.AdminDeps(
            chain=self.chain, journal=self.journal, auth=auth, status=self.status, utc=self.utc,
            profile=self.profile.view,
            export=lambda since, until: export_logs(self.journal, s.data_dir / "logs",
                                                    s.aircraft_id, since, until),
            metrics=make_metrics(collector, self.reader),
            dashboard_html=dashboard_html(),
            routers=[sync_router(self.sync, act_dependencies=maintenance), cabin_router,
                     intake_router],
            unaudited=(("PUT", "/admin/v1/intake/uploads/"),))
        await self._serve_web(admin.create_app(deps), s.admin.host, s.admin.port)

    async def _serve_web(self, app: FastAPI, host: str, port: int) -> None:
        # Bind here, so a taken port is a clear OSError (uvicorn would call sys.exit in a task).
        try:
            sock = socket.create_server((host, port), reuse_port=False)
        except OSError as e:
            raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", access_log=False,
                                log_level="warning", timeout_graceful_shutdown=3)
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"web-{host}:{port}")
        while not server.started:
            if task.done():
                raise StartupError(f"web server on {host}:{port} failed to start")
            await asyncio.sleep(0.01)
        self._servers.append(server)
        self._tasks.append(task)

    async def _journal_events(self) -> None:
        while True:
            ev = await self._events.get()
            try:
                await self.journal.record(ev)
            except Exception:  # supervisor boundary: log, count, keep the service up
                self.journal_errors += 1
                log.exception("could not journal %s", ev)
            finally:
                self._events.task_done()

    async def _tick(self) -> None:
        last_status = ""
        period = watchdog_period()
        tick = TICK_S if period is None else min(TICK_S, period)
        last_ping = -float("inf")
        while True:
            self._test_hang()
            now = time.monotonic()
            for r in self.readers:
                r.check(now, self.settings.source_lost_s)
            # Ping on the tick nearest each period (drift-free); only while the journal commits.
            if (period is None or now - last_ping >= period - tick / 2) \
                    and self.writer.stats.failed_commits == 0:
                notify("WATCHDOG=1")
                last_ping = now
            self.bite.sample()
            st = "STATUS=" + self.status_line()
            if st != last_status:
                notify(st)
                last_status = st
            await asyncio.sleep(tick)

    def status_line(self) -> str:
        """One line for systemd's STATUS=: mode, air/ground, phase, journal health, pending events."""
        c = self.chain
        return (f"mode {c.mode}, {c.ag.state}, phase {c.phase.phase}; {self.bite.summary()}; "
                f"{self._events.qsize()} events pending")

    def _test_hang(self) -> None:
        """Test-only (TEST_HANG_ENV): block the loop thread while the hang file exists."""
        if self._hang_file is None or not os.path.exists(self._hang_file):
            return
        log.warning("test hang hook: %s exists, blocking the main loop", self._hang_file)
        while os.path.exists(self._hang_file):
            time.sleep(0.1)  # deliberately blocking: no WATCHDOG=1 while this lasts
        log.warning("test hang hook: %s removed, main loop resumes", self._hang_file)

    async def serve(self, stop: asyncio.Event) -> None:
        """Wait for ``stop`` (or a crashed part, which is logged and ends the service)."""
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and not t.cancelled() and t.exception() is not None:
                log.error("%s stopped: %r", t.get_name(), t.exception())
        waiter.cancel()

    async def stop(self) -> None:
        """Stop in reverse order, each step bounded."""
        notify("STOPPING=1", wait_s=0.5)
        for server in self._servers:
            server.should_exit = True
        for r in self.readers:
            r.stop()
        if self.can_reader is not None:
            self.can_reader.stop()
            self.can_reader.bus.shutdown()  # the reader never closes the bus it was given
        if hasattr(self, "sync"):
            await self.sync.stop(5.0)
        for part in reversed(self._started):  # content, cabin network, intake
            try:
                await asyncio.wait_for(part.stop(), 5.0)
            except Exception:  # supervisor boundary: log and go on stopping
                log.exception("stopping %s failed", type(part).__name__)
        if hasattr(self, "writer"):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), 5.0)
        for t in self._tasks:
            if t.get_name().startswith("web-"):
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(t, 5.0)
            else:
                t.cancel()
        if hasattr(self, "writer"):
            await asyncio.to_thread(self.writer.stop, 10.0)

    def status(self) -> dict[str, Any]:
        """The service status for the admin API and the status command."""
        c = self.chain
        utc, source = c.clock.utc(c.store.now)
        w = self.writer.stats
        return {
            "version": __version__,
            "aircraft_id": self.settings.aircraft_id,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "mode": str(c.mode),
            "policy": {k: (dict(v) if k == "sync" else v)
                       for k, v in vars_policy(self.policy[c.mode]).items()},
            "air_ground": {"state": str(c.ag.state), "reason": c.ag.reason,
                           "candidate": None if c.ag.candidate is None else str(c.ag.candidate),
                           "votes": dict(c.votes(c.store.now))},
            "phase": str(c.phase.phase),
            "utc": {"value": utc, "source": source},
            "card_time_s": c.store.now,
            "sources": {r.name: {"port": r.port, "connected": r.stats.connected,
                                 "frames": r.stats.frames, "bad_words": r.stats.bad_words,
                                 "crc_errors": r.stats.crc_errors} for r in self.readers}
            | ({"can": {"channel": self.can_reader.channel_info, **self.can_reader.stats.as_dict()}}
               if self.can_reader is not None else {}),
            "bite": self.bite.assess(),
            "recovery": {"state": self.recovery.state, "reason": self.recovery.reason,
                         "moved_aside": self.recovery.moved_aside,
                         "restored_from": self.recovery.restored_from},
            "sync": self.sync.status() if hasattr(self, "sync") else None,
            "journal": {"path": str(self.settings.journal_path), "commits": w.commits,
                        "writes": w.writes, "failed_writes": w.failed_writes,
                        "failed_commits": w.failed_commits,
                        "last_commit_ms": round(w.last_commit_s * 1000, 3),
                        "pending_events": self._events.qsize(),
                        "event_errors": self.journal_errors},
        }


def content_bite(catalog: Any) -> dict[str, Any]:
    """BITE colour of the content store from the loaded catalog."""
    titles, generation = catalog.titles, catalog.generation
    if generation < 0:
        return {"state": "amber", "reason": "catalog not loaded yet"}
    if not titles:
        return {"state": "amber", "reason": "no content installed", "generation": generation}
    return {"state": "green", "reason": f"{len(titles)} titles, catalog generation {generation}",
            "generation": generation}


def slot_bite(slots: Any) -> dict[str, Any]:
    """BITE of the software slots: which one runs, and its version."""
    current = slots.current()
    if current is None:
        return {"state": "green", "reason": "installed package (no A/B slot activated yet)"}
    info = slots.info(current) or {}
    return {"state": "green", "reason": f"slot {current}, version {info.get('version', '?')}",
            "slot": current, "version": info.get("version")}


def sync_bite(st: dict[str, Any]) -> dict[str, Any]:
    """BITE colour of the outbound sync from its status.

    Red when the receiver lost records it had acknowledged, when a stream is blocked, or when
    the outbox is over 90 % of its budget; amber when the disk budget dropped records.
    """
    used = st["totals"]["budget_used"]
    dropped = st["totals"]["dropped_records"]
    extra = {"depth": st["totals"]["depth"], "link": st["active_link"], "uplink": st["state"]}
    lost = {n: v["lost"] for n, v in st["streams"].items() if v.get("lost")}
    blocked = {n: v["blocked"] for n, v in st["streams"].items() if v.get("blocked")}
    if lost or blocked:
        reasons = [f"{n}: {d}" for n, d in lost.items()]
        reasons += [f"{n} blocked: {d}" for n, d in blocked.items()]
        return {"state": "red", "reason": "; ".join(reasons), **extra}
    if used > 0.9 or dropped:
        return {"state": "red" if used > 0.9 else "amber",
                "reason": f"outbox at {used:.0%} of its budget, {dropped} records dropped", **extra}
    return {"state": "green", "reason": f"{st['totals']['depth']} records queued", **extra}


def vars_policy(p: Any) -> dict[str, Any]:
    """A policy dataclass (slots) as a dict."""
    return {name: getattr(p, name) for name in p.__slots__}
