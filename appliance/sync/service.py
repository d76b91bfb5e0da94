"""SyncService: the outbound sync as one part of the service (the daemon wires it).

``SyncService(settings, writer, reader, chain)``; ``await start()``, ``await stop()``,
``status() -> dict`` (cheap: a snapshot refreshed in the background; its shape is
:class:`~appliance.sync.status.SyncStatus`), ``sync_now()``.

It runs, as asyncio tasks: the uplink (only with ``sync.enabled``), the disk budget check (every
``budget_check_s``) and the status snapshot (every ``status_refresh_s``). It listens to the chain's
domain events: mode changes start and end flight-hour budgets. The summaries agents (with
``sync.summaries``) sample the chain on card time themselves, inside the chain
(:class:`~appliance.avionics.summaries.SummarySampler`); the service flushes them when it stops and
shows their status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Engine

from ..modes.bus import Unsubscribe
from ..modes.events import Event, ModeChanged
from ..modes.policy import PolicyTable
from ..modes.state import FlightState
from ..settings import Settings
from ..store.outbox import STREAM_PRIORITY
from ..store.writer import Writer
from .budget import BudgetPolicy, enforce_budget
from .events import RecordsDropped, SyncEvent
from .link import SYSFS_NET
from .policy import allowed_streams, link_scope
from .queue import OutboxReader, StreamStats
from .status import (
    BudgetStatus,
    DropStatus,
    LinkStatus,
    StreamStatus,
    SyncNow,
    SyncStatus,
    TotalsStatus,
    UplinkState,
)
from .uplink import Uplink

__all__ = ["SummarySink", "SyncService"]

log = logging.getLogger(__name__)


class SummarySink(Protocol):
    """What the sync needs of the summaries agents (``appliance.avionics.summaries``)."""

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what is pending (bounded)."""

    def as_dict(self) -> Mapping[str, object]:
        """The agents' status."""


class SyncService:
    """Outbox budget, summaries and uplink, with their status (see the module doc)."""

    def __init__(self, settings: Settings, writer: Writer, reader: Engine, chain: FlightState,
                 *, summaries: SummarySink | None = None, policy: PolicyTable | None = None,
                 clock: Callable[[], float] = time.time, sysfs: Path = SYSFS_NET,
                 ground_info: Callable[[], Mapping[str, object]] | None = None) -> None:
        """Build the parts; nothing runs before :meth:`start`. ``reader``: a read-only engine.

        ``chain``: the flight state (mode, change events). ``summaries``: the flight-track and
        health agents (built by the daemon when ``sync.summaries`` is on, sampling the chain on
        card time); stopped (flushed) by :meth:`stop`. ``ground_info``: what the ground's fleet
        view shows beside the backlog (BITE, software and content versions:
        :func:`appliance.daemon.groundinfo.ground_info`), called on the loop at each refresh and
        sent in every batch's ``status``.
        """
        self.settings = settings
        self.s = settings.sync
        self.writer = writer
        self.chain = chain
        self.clock = clock
        self.policy = policy or PolicyTable.default()
        self.outbox = OutboxReader(reader)
        self.budget = BudgetPolicy(self.s.outbox_budget_bytes, self.s.budget_low_water,
                                   frozenset(self.s.never_drop))
        self.uplink = Uplink(self.s, settings.aircraft_id, writer, self.outbox, self.policy,
                             lambda: chain.mode, emit=self._record, clock=clock, sysfs=sysfs,
                             downlink_dir=Path(settings.data_dir) / "downlink")
        self.uplink.pipeline.ground_status = self._ground_status
        self.summaries = summaries
        self.events: collections.deque[SyncEvent] = collections.deque(maxlen=50)
        self.drops: list[RecordsDropped] = []
        self._streams: dict[str, StreamStats] = {}
        self._snapshot_at: float | None = None
        self.ground_info = ground_info
        self._ground: Mapping[str, object] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Unsubscribe = lambda: None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Take the first snapshot, listen to the chain, start the tasks."""
        await self.refresh()
        self._unsubscribe = self.chain.subscribe(self._on_chain_event)
        self._spawn("sync-budget", self._every(self.s.budget_check_s, self.check_budget))
        self._spawn("sync-status", self._every(self.s.status_refresh_s, self.refresh))
        if self.s.enabled:
            self._spawn("sync-uplink", self.uplink.run)
        else:
            self.uplink.state = UplinkState.DISABLED

    def _spawn(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        async def supervised() -> None:
            while True:
                try:
                    await fn()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # supervisor boundary: log, wait, start again
                    log.exception("%s failed; restarting in 5 s", name)
                    await asyncio.sleep(5.0)
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(supervised(), name=name))

    @staticmethod
    def _every(period: float, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(period)
                await fn()
        return loop

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the tasks, flush the summaries, wait for the bookkeeping writes (bounded)."""
        self._unsubscribe()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(t, timeout)
        self._tasks.clear()
        if self.summaries is not None:
            await self.summaries.stop(timeout)
        await self.uplink.close(timeout)

    # ------------------------------------------------------------------ actions
    def sync_now(self) -> dict[str, Any]:
        """Wake the uplink at once and check the budget; returns the state it was in.

        The answer's shape is :class:`~appliance.sync.status.SyncNow` (a plain dict at the edge).
        """
        self.uplink.nudge()

        async def check() -> None:
            await self.check_budget()
        self._spawn("sync-now", check)
        answer = SyncNow(requested=True, enabled=self.s.enabled, state=self.uplink.state,
                         active_link=self.uplink.active_link)
        return cast(dict[str, Any], answer)

    async def check_budget(self) -> list[RecordsDropped]:
        """Apply the disk budget now (rows in flight are kept); returns the drops made."""
        total = await asyncio.to_thread(self.outbox.total_bytes)
        if total <= self.budget.budget_bytes:
            return []
        async with self.uplink.book.lock:
            protected = self.uplink.protected()
            drops = await self.writer.run(
                lambda conn: enforce_budget(conn, self.budget, protected, self.clock()))
        for d in drops:
            log.warning("outbox over budget: dropped %d %s records (seq %d..%d, %d bytes)",
                        d.records, d.stream, d.seq_lo, d.seq_hi, d.bytes)
            self._record(d)
        if drops:
            await self.refresh()
        return drops

    async def refresh(self) -> None:
        """Read the per-stream statistics again (a worker thread)."""
        self._streams = await asyncio.to_thread(self.outbox.stats)
        if self.ground_info is not None:
            try:
                self._ground = self.ground_info()
            except Exception:  # the fleet view's extras must never stop the sync
                log.exception("ground status unavailable")
        self._snapshot_at = self.clock()

    def _ground_status(self) -> dict[str, object]:
        """The fleet view's state of this aircraft: backlog, BITE, software and content versions.

        Backlog: queue depth per stream; the rest from ``ground_info`` as of the last refresh.
        """
        return {**self._ground, "backlog": {s: st.depth for s, st in self._streams.items()}}

    def _record(self, ev: SyncEvent) -> None:
        self.events.append(ev)
        if isinstance(ev, RecordsDropped):
            self.drops.append(ev)

    def _on_chain_event(self, ev: Event) -> None:
        if isinstance(ev, ModeChanged):
            self.uplink.on_mode(ev.previous, ev.current, self.clock())

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The sync status (a dict for the admin API; its shape is :class:`SyncStatus`).

        Per stream: depth (rows), oldest record age (s), bytes queued, last acknowledged
        watermark, drops, ``blocked`` (why it cannot be sent now, or None) and ``lost`` (records
        the receiver lost after acknowledging them, since this process started, or None); per
        link: interfaces, probe, scope in this mode, budget; the uplink's state and counters;
        totals against the disk budget.
        """
        return cast(dict[str, Any], self.report())

    def report(self) -> SyncStatus:
        """The sync status, typed (see :meth:`status`)."""
        now = self.clock()
        mode = self.chain.mode
        up = self.uplink
        book = up.book
        streams: dict[str, StreamStatus] = {}
        for name, st in self._streams.items():
            streams[name] = StreamStatus(
                priority=STREAM_PRIORITY.get(name), depth=st.depth,
                oldest_age_s=None if st.oldest is None else round(now - st.oldest, 1),
                bytes_queued=st.bytes, last_seq=st.last_seq,
                acked_seq=st.acked_seq, acked_at=st.acked_at,
                drops=DropStatus(records=st.dropped_records, bytes=st.dropped_bytes,
                                 last_at=st.last_drop_at,
                                 unreported_ranges=st.pending_drop_ranges),
                blocked=book.blocked.get(name), lost=book.lost.get(name))
        links: dict[str, LinkStatus] = {}
        for name, ls in up.links.items():
            scope = link_scope(self.policy, mode, name)
            b = up.budgets.get(name)
            links[name] = LinkStatus(
                **ls.as_dict(), scope=scope,
                streams=allowed_streams(scope, sorted(STREAM_PRIORITY), self.s.priority_streams),
                budget=None if b is None else BudgetStatus(
                    bytes_per_flight_hour=b.per_hour, hour=b.window, used=b.used,
                    remaining=b.remaining(now)))
        total_bytes = sum(s.bytes for s in self._streams.values())
        return SyncStatus(
            enabled=self.s.enabled, state=up.state, active_link=up.active_link,
            mode=str(mode), receiver_url=self.s.receiver_url, links=links,
            streams=streams,
            totals=TotalsStatus(
                depth=sum(s.depth for s in self._streams.values()),
                bytes_queued=total_bytes, budget_bytes=self.budget.budget_bytes,
                budget_used=round(total_bytes / self.budget.budget_bytes, 4),
                dropped_records=sum(s.dropped_records for s in self._streams.values()),
                dropped_bytes=sum(s.dropped_bytes for s in self._streams.values()),
                drop_order="lowest priority first, oldest first; never: "
                           + ", ".join(sorted(self.budget.never_drop))),
            uplink=up.stats.as_dict(),
            summaries=None if self.summaries is None else self.summaries.as_dict(),
            recent_events=[{"type": type(e).__name__, **dataclasses.asdict(e)}
                           for e in list(self.events)[-10:]],
            snapshot_age_s=None if self._snapshot_at is None
            else round(now - self._snapshot_at, 1),
        )
