"""The composition root: builds every part from the settings, starts them in order, stops in reverse.

Start (each step a part on one ``AsyncExitStack``: setup, then its teardown pushed, so a failed
start unwinds exactly what started and a stop unwinds everything in reverse, each teardown bounded
in time, its errors logged and collected in ``stop_errors``):
data directory -> recovery (integrity check; a corrupt journal moved aside, the newest good backup
restored) -> journal database (migrations after a backup) -> single writer -> journal and the
event pump (chain events -> journal rows) -> avionics chain (initial mode from the journal) and
bus sources -> orders, profile, BITE, outbound sync -> passenger content and flight info ->
passenger web server -> cabin network -> hangar intake -> admin web server -> health tick ->
READY=1.

Serve: a health tick every 0.5 s checks the sources (silence, bad-input bursts), sends WATCHDOG=1
while the loop runs the tick and the journal is healthy *now* (:meth:`Writer.health`: the writer
thread runs, the latest group committed without a store failure, none is stalled; not a sticky
flag, so a disk full for a moment holds the pings back only until a commit goes through again),
every half ``$WATCHDOG_USEC`` when systemd set a watchdog for this process, else every tick, and
STATUS= when it changes. Stop (SIGTERM/SIGINT): STOPPING=1, then the
stack unwinds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn
from fastapi import Depends

from firmware_bridge.labels import LabelTable

from .. import __version__, compiled
from ..avionics.chain import AvionicsChain
from ..avionics.profile import FlightProfile
from ..avionics.source import Source
from ..avionics.summaries import SummaryAgents, SummaryConfig
from ..content.orders import Orders
from ..errors import ApplianceError, StartupError
from ..modes.airground import AirGroundConfig
from ..modes.events import Event, ModeChanged, TimeSource
from ..modes.policy import Mode, PolicyTable
from ..notify import notify
from ..running import running
from ..settings import Settings
from ..store.engine import make_engine
from ..store.export import export_logs
from ..store.files import ensure_dir
from ..store.journal import Journal
from ..store.migrate import upgrade
from ..store.recovery import RecoveryReport, recover
from ..store.writer import Writer
from ..sync import SyncService
from ..web import admin, passenger
from ..web.admin.auth import AdminAuth, Role
from ..web.admin.content import make_router as content_inventory
from ..web.admin.dashboard import dashboard_html
from ..web.admin.metrics import ApplianceCollector, make_metrics
from ..web.admin.sync import sync_router
from ..web.passenger.traffic import PassengerTraffic
from .bite import Bite, content_bite, orders_bite, slot_bite, sync_bite
from .build import build_cabin_network, build_intake, build_passenger_content
from .cabinnet import build_cabinnet, cabinnet_collectors, start_cabinnet
from .edge import AcceptErrorLog, WebPort, admin_rules, check_fd_budget, warm_imports, web_config
from .groundinfo import ground_info
from .shop import build_shop
from .sources import build_sources

__all__ = ["TICK_S", "Daemon", "watchdog_period"]

log = logging.getLogger(__name__)
TICK_S = 0.5
STOP_TIMEOUT_S = 5.0
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
    """The service: ``await Daemon(settings).run()`` until SIGTERM; returns the exit status.

    Parts are attributes set as they are built (``writer``, ``journal``, ``chain``, ``sync``, ...);
    what has not started yet has not been set, and nothing stops it.
    """

    def __init__(self, settings: Settings) -> None:
        """Keep the settings; nothing starts before :meth:`run`."""
        self.settings = settings
        self.started = time.monotonic()
        self.policy = PolicyTable.default()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []  #: long-running tasks; one ending ends the service
        self.sources: list[Source] = []  #: bus sources (serial card, CAN), started in order
        self.journal_errors = 0
        self.stop_errors: list[str] = []  #: teardowns that failed or timed out, in unwind order
        self._hang_file = os.environ.get(TEST_HANG_ENV) or None
        self.web_ports: dict[str, WebPort] = {}  #: "passenger"/"admin": config and edge counters
        self.accept_errors = AcceptErrorLog(settings.edge.accept_error_log_s)

    async def run(self) -> int:
        """Start, serve until a stop signal, stop. Returns 0, or 1 if it could not start."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.set_exception_handler(self.accept_errors)
        need, nofile = check_fd_budget(self.settings)
        warm_imports()
        log.info("descriptors: connection caps and reserve need %d, RLIMIT_NOFILE %d", need, nofile)
        async with contextlib.AsyncExitStack() as stack:
            try:
                await self.start(stack)
            except (ApplianceError, OSError) as e:
                log.error("cannot start: %s", e)
                notify("STOPPING=1", wait_s=0.5)
                return 1  # leaving the block unwinds what had started
            # What start built lives as long as the service: collected once and frozen, so the
            # collector's full passes (run from the loop) never walk it again (measured: a first
            # big request otherwise paid a 100-150 ms full collection on the loop).
            gc.collect()
            gc.freeze()
            notify("READY=1", wait_s=2.0)
            log.info("ready: passenger http://%s:%d  admin http://%s:%d",
                     self.settings.passenger.host, self.settings.passenger.port,
                     self.settings.admin.host, self.settings.admin.port)
            try:
                await self.serve(stop)
            finally:
                notify("STOPPING=1", wait_s=0.5)
        return 0

    # ------------------------------------------------------------------ lifecycle helpers
    def _teardown(self, stack: contextlib.AsyncExitStack, name: str,
                  fn: Callable[[], Awaitable[object]], timeout: float = STOP_TIMEOUT_S) -> None:
        """Push ``fn`` as the teardown of part ``name``: bounded, its error logged and collected."""
        async def teardown() -> None:
            try:
                await asyncio.wait_for(fn(), timeout)
            except Exception as e:  # supervisor boundary: log, collect, go on unwinding
                self.stop_errors.append(f"{name}: {e!r}")
                log.exception("stopping %s failed", name)
        stack.push_async_callback(teardown)

    def _task(self, stack: contextlib.AsyncExitStack, coro: Awaitable[Any], name: str) -> None:
        """A long-running task of the service, cancelled when the stack unwinds."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._teardown(stack, name, cancel)

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        """Build and start every part, in dependency order, each with its teardown on ``stack``."""
        await self._start_store(stack)
        await self._start_avionics(stack)
        await self._start_services(stack)
        await self._start_passenger(stack)
        await self._start_admin(stack)
        self._task(stack, self._tick(), "health-tick")

    async def _start_store(self, stack: contextlib.AsyncExitStack) -> None:
        """Data directory, recovery, migrations, the single writer, the journal and its pump."""
        s = self.settings
        ensure_dir(s.data_dir)  # durably: a cut must not take the whole directory away
        db = s.journal_path
        self.recovery: RecoveryReport = await asyncio.to_thread(recover, db, s.integrity_budget_s)
        engine = make_engine(db, synchronous=s.journal_synchronous)
        backup = await asyncio.to_thread(upgrade, engine, db)
        if backup:
            log.info("journal migrated; backup %s", backup)
        self.writer = Writer(engine)
        self.writer.start()
        self._teardown(stack, "journal writer",
                       lambda: asyncio.to_thread(self.writer.stop, 10.0), timeout=12.0)
        self.reader = make_engine(db, readonly=True)
        stack.callback(self.reader.dispose)
        self.journal = Journal(self.writer, self.reader, s.aircraft_id)
        if self.recovery.state != "green" or self.recovery.removed_temp_files:
            await self.journal.record_health("journal", self.recovery.state, self.recovery.reason,
                                             time.time(), TimeSource.LOCAL)
        self._task(stack, self._journal_events(), "journal-events")
        # Unwound before the pump is cancelled: what the chain sent is journaled first.
        self._teardown(stack, "journal events", self._events.join)

    async def _start_avionics(self, stack: contextlib.AsyncExitStack) -> None:
        """The chain (initial mode from the journal), its journaling, the bus sources."""
        s = self.settings
        last = await asyncio.to_thread(self.journal.last_mode)
        initial = Mode(last) if last is not None and last in Mode.__members__ else Mode.GROUND
        ag = AirGroundConfig(**s.airground.model_dump())
        table = LabelTable.default(label_reversed=s.serial.label_reversed)
        self.chain = AvionicsChain(table, ag, initial)
        if last is None:
            await self.journal.record(ModeChanged(0.0, time.time(), TimeSource.LOCAL, None, initial,
                                                  {"reason": "new journal: default mode"}))
        stack.callback(self.chain.subscribe(self._events.put_nowait))
        sources, closers = build_sources(s, self.chain)
        for close in closers:
            stack.callback(close)
        self.sources.extend(sources)
        for source in self.sources:
            source.start()
            stack.callback(source.stop)

    def utc(self) -> tuple[float, TimeSource]:
        """Best-known UTC now (epoch s) and its source."""
        return self.chain.utc()

    async def _start_services(self, stack: contextlib.AsyncExitStack) -> None:
        """Orders, profile, BITE, outbound sync."""
        s = self.settings
        self.orders = Orders(self.writer, self.reader, s.aircraft_id, self.utc,
                             max_queued=s.orders.max_queued)
        self.shop = await build_shop(self.writer, self.reader, s.aircraft_id, self.utc)
        o = s.orders
        self.order_limits = passenger.OrderLimits.per_minute(o.client_per_min, o.client_burst,
                                                             o.seat_per_min, o.seat_burst)
        self.traffic = PassengerTraffic()
        self.profile = FlightProfile(self.chain)
        stack.callback(self.profile.close)
        self.bite = Bite(self.chain, s.data_dir, self.recovery, self.writer.stats)
        self._task(stack, self.orders.watch(), "orders-count")
        self.bite.add("orders", lambda: orders_bite(self.orders.queued, s.orders.max_queued,
                                                    self.orders.refused_full,
                                                    self.order_limits.limited))
        summaries = (SummaryAgents(self.chain, self.writer, s.aircraft_id, SummaryConfig(
            s.sync.sample_period_s, s.sync.track_period_s, s.sync.track_turn_deg,
            s.sync.track_points_per_record)) if s.sync.summaries else None)
        self.summaries = summaries
        self.sync = SyncService(s, self.writer, self.reader, self.chain, summaries=summaries,
                                policy=self.policy,
                                ground_info=ground_info(self.bite, self._content_version))
        await self.sync.start()
        self._teardown(stack, "sync", functools.partial(self.sync.stop, STOP_TIMEOUT_S),
                       timeout=2 * STOP_TIMEOUT_S)
        if s.sync.enabled:
            self.bite.add("sync", lambda: sync_bite(self.sync.status()))

    def _content_version(self) -> str | None:
        """The installed content bundle's version, else the content store's generation."""
        intake = getattr(self, "intake", None)
        if intake is not None and (v := intake.installed_version("content")):
            return f"bundle {v}"
        content = getattr(self, "content", None)
        store = getattr(content, "store", None)
        if store is not None and (g := store.generation()):
            return f"generation {g}"
        return None

    async def _start_passenger(self, stack: contextlib.AsyncExitStack) -> None:
        """Passenger content (store, catalog, media server, flight info) and the passenger port."""
        s = self.settings
        self.cabinnet = build_cabinnet(s, self.chain, self.writer, self.reader, self.policy)
        self.content = build_passenger_content(s, self.chain, self.writer, self.reader,
                                               self.policy,
                                               self.cabinnet.gate if self.cabinnet else None,
                                               self.summaries.agent if self.summaries else None)
        for part in (self.content.service, self.content.flight_info):
            if part is not None:
                await part.start()
                self._teardown(stack, type(part).__name__, part.stop)
        if self.content.service is not None:
            self.bite.add("content", functools.partial(content_bite, self.content.service.catalog))
        app = passenger.create_app(self.chain, self.orders, self.policy, self.traffic,
                                   routers=[*self.content.routers, self.shop.passenger],
                                   mounts=self.content.mounts,
                                   order_limits=self.order_limits)
        await self._serve_web(stack, "passenger", web_config(app, s.passenger.host, s.passenger.port,
                                                             s.edge.passenger, http=s.edge.http))
        if self.cabinnet is not None:  # the captive API over HTTPS, the gate, DHCP and DNS
            media = self.content.service.media if self.content.service else None
            await start_cabinnet(self.cabinnet, s, app, self.chain, self.bite,
                                 media.port if media else None,
                                 functools.partial(self._serve_web, stack), stack)

    async def _start_admin(self, stack: contextlib.AsyncExitStack) -> None:
        """The subsystems behind the admin port (cabin network, intake) and the admin port."""
        s = self.settings
        token = s.admin_token.get_secret_value() if s.admin_token else None
        if token is None and not s.admin_users:
            log.warning("no admin_token and no admin_users configured: the admin API refuses all")
        auth = AdminAuth(s.admin_users, token, s.admin_auth)
        stack.callback(auth.close)
        maintenance = [Depends(admin.require(auth, Role.MAINTENANCE))]
        cabin_router, self.cabin = build_cabin_network(s, self.chain, self.writer, self.reader, auth)
        await self.cabin.start()
        self._teardown(stack, "cabin network", self.cabin.stop)
        self.bite.add("cabin_network", self.cabin.status)
        intake_router, self.intake = build_intake(s, self.chain, self.writer, self.reader,
                                                  self.content.store, auth,
                                                  quiet=self.content.quiet)
        stack.callback(self.chain.subscribe(self.intake.on_event))
        await self.intake.start()
        self._teardown(stack, "intake", self.intake.stop)
        if self.intake.slots is not None:
            self.bite.add("software_slot", functools.partial(slot_bite, self.intake.slots))
        collector = ApplianceCollector(self.chain, self.writer.stats, self.traffic, s.data_dir)
        deps = admin.AdminDeps(
            chain=self.chain, journal=self.journal, auth=auth, status=self.status, utc=self.utc,
            profile=self.profile.view,
            export=lambda since, until: export_logs(self.journal, s.data_dir / "logs",
                                                    s.aircraft_id, since, until),
            metrics=make_metrics(collector, self.reader, *cabinnet_collectors(self.cabinnet)),
            dashboard_html=dashboard_html(), pages=self.shop.pages,
            routers=[sync_router(self.sync, act_dependencies=maintenance), cabin_router,
                     self.shop.admin,
                     intake_router,
                     *([content_inventory(self.content.store)] if self.content.store else [])],
            unaudited=(("PUT", "/admin/v1/intake/uploads/"),))
        await self._serve_web(stack, "admin", web_config(admin.create_app(deps), s.admin.host,
                                                         s.admin.port, s.edge.admin,
                                                         admin_rules(s), http=s.edge.http))

    async def _serve_web(self, stack: contextlib.AsyncExitStack, name: str, web: WebPort) -> None:
        """Serve one port (its app behind the edge limits of :func:`.edge.web_config`)."""
        host, port = web.config.host, web.config.port
        # Bind here, so a taken port is a clear OSError (uvicorn would call sys.exit in a task).
        try:
            sock = socket.create_server((host, port), reuse_port=False, backlog=1024)
        except OSError as e:
            raise StartupError(f"cannot listen on {host}:{port}: {e.strerror}") from e
        self.web_ports[name] = web
        server = _Server(web.config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"web-{host}:{port}")
        self._tasks.append(task)

        async def shutdown() -> None:
            server.should_exit = True
            await task
        self._teardown(stack, f"web {host}:{port}", shutdown)
        while not server.started:
            if task.done():
                sock.close()
                raise StartupError(f"web server on {host}:{port} failed to start")
            await asyncio.sleep(0.01)

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
        held = ""  # why pings are held back now ("" while healthy)
        while True:
            self._test_hang()
            now = time.monotonic()
            for src in self.sources:
                src.check(now, self.settings.source_lost_s)
            healthy, why = self.writer.health(now)
            if not healthy and not held:
                log.error("watchdog pings held back: %s", why)
            elif healthy and held:
                log.warning("watchdog pings resume: the journal is healthy again")
            held = why
            # Ping on the tick nearest each period (drift-free); only while the journal is healthy.
            if healthy and (period is None or now - last_ping >= period - tick / 2):
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

    def status(self) -> dict[str, Any]:
        """The service status for the admin API and the status command."""
        c = self.chain
        utc, source = c.utc()
        w = self.writer.stats
        return {
            "version": __version__,
            "software": running(),
            # the avionics hot path: compiled with mypyc, or its pure-Python source
            "hot_path": "compiled" if all(compiled.status().values()) else "source",
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
            "sources": {src.name: src.status() for src in self.sources},
            "bite": self.bite.assess(),
            "recovery": {"state": self.recovery.state, "reason": self.recovery.reason,
                         "moved_aside": self.recovery.moved_aside,
                         "restored_from": self.recovery.restored_from},
            "sync": self.sync.status(),
            "edge": self.edge_status(),
            "journal": {"path": str(self.settings.journal_path), "commits": w.commits,
                        "writes": w.writes, "failed_writes": w.failed_writes,
                        "failed_commits": w.failed_commits, "failing": w.failing,
                        "faults": w.faults,
                        "last_commit_ms": round(w.last_commit_s * 1000, 3),
                        "pending_events": self._events.qsize(),
                        "event_errors": self.journal_errors,
                        "subscriber_errors": c.subscriber_errors},
        }


    def edge_status(self) -> dict[str, Any]:
        """Per web port: connections open/refused/evicted, head timeouts, bodies refused."""
        out: dict[str, Any] = {"accept_errors": self.accept_errors.count}
        for name, web in self.web_ports.items():
            b = web.body_limit.stats
            out[name] = {**web.guard.stats(), "body_too_large": b.by_length + b.while_streaming,
                         "body_too_slow": b.too_slow}
        return out


def vars_policy(p: Any) -> dict[str, Any]:
    """A policy dataclass (slots) as a dict."""
    return {name: getattr(p, name) for name in p.__slots__}
