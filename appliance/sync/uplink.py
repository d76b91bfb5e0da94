"""The uplink: sends the outbox to the ground receiver over whichever link is up and allowed.

One asyncio task (:meth:`Uplink.run`). A *session* over a link:

1. **resume**: ``GET /v1/watermarks`` (the probe). The answer is the truth: outbox rows at or
   below each watermark are deleted (through the single writer), and sending continues from
   there. So after any interruption (link cut, receiver restart, appliance restart) nothing is
   sent again except, at most, the batch that was in flight. A watermark *below* what the
   receiver acknowledged before means it lost acknowledged records (its database went back):
   they were deleted here, so the loss is declared to it as a drop range (a gap on the ground),
   journalled, reported (:class:`AckedRecordsLost`, BITE red), and the stream goes on from the
   watermark with the records still here (:func:`~appliance.sync.queue.declare_lost`).
2. **send**: build a batch of the streams the mode policy lets through this link (priority
   order), POST it (zstd, batch id as ``Idempotency-Key``), take the answer's watermarks: delete
   what they cover, move on. While one batch is on the wire the next one is built, and it is
   sent as soon as the previous body has left (``pipeline_depth`` 2): the link carries it while
   the receiver commits the previous one, so a slow link never idles for the database, the
   compressor or the round trip. Answers are taken in order; if one shows that a stream did not
   go through as built, the batches behind it are abandoned and sending resumes from the
   receiver's watermark, asked again (``GET``): an answer's own watermarks may be older than
   the answer before it (its batch overtook its predecessor on the way, or it is the stored
   answer replayed for a resent batch id). The receiver waits briefly for a batch's predecessor
   and otherwise refuses the stream's part with a ``gap`` error: that only means "resume from
   the watermark", never a block. Other refusals block their stream (status, BITE red) until
   the next resume, at most ``probe_interval_s`` once the uplink is idle.
   (Building, sending and taking answers: :mod:`.pipeline`; cursors, blocks and losses per
   stream: :mod:`.streams`.)
3. A failed request is retried (tenacity: exponential backoff with full jitter, bounded in
   attempts); before each retry the watermarks are asked again, and if the batch in flight was
   in fact taken, it is not sent again. When the retries are used up the link counts as down,
   and the loop waits (again with jittered, capped backoff, cut short when an interface comes
   back up) before the next session.

A link with ``bytes_per_flight_hour`` gets batches cut to what is left of the hour's budget, and
none when it is spent (the state says ``over_budget`` until the next hour); the budgets are
saved and restored through :mod:`.link_budget`. A receiver that refuses a batch for its size
(:class:`~appliance.sync.errors.BatchTooLarge`) gets batches half as big from then on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..modes.policy import Mode, PolicyTable
from ..settings import SyncSettings
from ..store.outbox import STREAM_PRIORITY
from ..store.writer import Writer
from .batch import Batch
from .client import ReceiverClient
from .downlink import Ack, Downlink, FleetConfig
from .errors import BatchTooLarge, ReceiverRejected, ReceiverUnavailable
from .events import LinkChanged, SyncEvent
from .identity import AircraftKey
from .link import SYSFS_NET, LinkState
from .link_budget import budget_writer, load_budgets, mode_changed
from .pipeline import REQUEST_OVERHEAD, InFlight, OverBudget, Pipeline, log_failure, retrying
from .policy import FlightHourBudget, allowed_streams, link_scope
from .queue import OutboxReader
from .status import UplinkState, UplinkStats
from .streams import StreamBook, resume_writer

__all__ = ["Uplink", "UplinkState", "UplinkStats"]

log = logging.getLogger(__name__)
IDLE_POLL_S = 0.5
#: Sockets are paced at this share of a link's known rate: IP packets at 97 % stay under the
#: rate once the link layer adds its own header (1514 / 1500 on Ethernet-like links).
PACING = 0.97


class Uplink:
    """Sends the outbox; see the module doc. Construct, then run :meth:`run` as a task."""

    def __init__(self, settings: SyncSettings, aircraft_id: str, writer: Writer,
                 reader: OutboxReader, policy: PolicyTable, mode: Callable[[], Mode], *,
                 emit: Callable[[SyncEvent], None] | None = None,
                 clock: Callable[[], float] = time.time, sysfs: Path = SYSFS_NET,
                 downlink_dir: Path | None = None) -> None:
        """Wire to the writer and reader; ``mode()`` gives the current mode; ``clock()`` epoch s.

        ``downlink_dir``: where applied ground documents are kept (None: no downlink).
        """
        self.s = settings
        self.writer = writer
        self.reader = reader
        self.policy = policy
        self.mode = mode
        self.emit: Callable[[SyncEvent], None] = emit or (lambda _e: None)
        self.clock = clock
        self.links = {n: LinkState(n, ls.interfaces, sysfs) for n, ls in settings.links.items()}
        self.budgets = {n: FlightHourBudget(ls.bytes_per_flight_hour)
                        for n, ls in settings.links.items() if ls.bytes_per_flight_hour}
        self.clients: dict[str, ReceiverClient] = {}
        #: The aircraft's signing key (``signing_key_file``); None: the legacy bearer token.
        self.key: AircraftKey | None = None
        if settings.signing_key_file is not None:
            try:
                self.key = AircraftKey.load(aircraft_id, settings.signing_key_file)
            except (OSError, ValueError) as e:
                raise ConfigError(f"sync.signing_key_file: {e}") from e
        self.book = StreamBook(self.emit, clock)
        self.wake = asyncio.Event()
        self.state = UplinkState.STARTING
        self.active_link: str | None = None
        self.stats = UplinkStats()
        self.downlink: Downlink | None = None
        self._acks: list[Ack] = []  # downlink acknowledgements still to send
        if downlink_dir is not None:
            try:
                self.downlink = Downlink(aircraft_id, downlink_dir, settings.ground_public_key,
                                         policy, mode, clock)
            except ValueError as e:
                raise ConfigError(str(e)) from e
            self.downlink.on_config = self._apply_config
            if self.downlink.config is not None:
                self._apply_config(self.downlink.config)
        self.pipeline = Pipeline(settings, aircraft_id, writer, reader, self.book, self.budgets,
                                 self.stats, emit=self.emit, clock=clock)

    # ------------------------------------------------------------------ plumbing
    def nudge(self) -> None:
        """Wake the loop now ("sync now"): skip the current wait."""
        self.wake.set()

    def protected(self) -> dict[str, int]:
        """Per stream, the seq at or below which rows must not be dropped (sent or in flight)."""
        return self.book.protected()

    def _client(self, name: str) -> ReceiverClient:
        c = self.clients.get(name)
        if c is None:
            ls = self.s.links[name]
            token = self.s.token.get_secret_value() if self.s.token else ""
            device = self.links[name].up_interface if ls.bind_device else None
            budget = self.budgets.get(name)
            c = self.clients[name] = ReceiverClient(
                ls.receiver_url or self.s.receiver_url, token,
                connect_timeout_s=self.s.connect_timeout_s,
                request_timeout_s=self.s.request_timeout_s, bind_device=device,
                on_bytes=(lambda n: budget.charge(n, self.clock())) if budget else None,
                key=self.key, pacing_bps=int(ls.rate_bps * PACING) if ls.rate_bps else None)
        return c

    async def _drop_client(self, name: str) -> None:
        c = self.clients.pop(name, None)
        if c is not None:
            with contextlib.suppress(Exception):
                await c.aclose()

    async def _wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` s; cut short by :meth:`nudge` or an interface coming up."""
        deadline = time.monotonic() + timeout
        down = {n for n, ls in self.links.items() if not ls.refresh_interfaces()}
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(left, 0.25))
            if self.wake.is_set():
                self.wake.clear()
                return
            if any(self.links[n].refresh_interfaces() for n in down):
                return

    def _backoff(self, failures: int) -> float:
        """Full-jitter exponential backoff (s), capped by ``retry_max_s``."""
        cap = min(self.s.retry_max_s, self.s.retry_initial_s * 2 ** min(failures, 16))
        return random.uniform(cap / 4, cap)

    def pick_link(self) -> str | None:
        """The first configured link whose interfaces are up and that the mode lets carry data."""
        mode = self.mode()
        for name, ls in self.links.items():
            if link_scope(self.policy, mode, name) != "none" and ls.refresh_interfaces():
                return name
        return None

    def _apply_config(self, config: FleetConfig) -> None:
        """A fleet configuration came into force: link budgets, priority streams."""
        for link, per_hour in config.link_budgets.items():
            if link not in self.links:
                continue
            if link in self.budgets:
                self.budgets[link].per_hour = per_hour
            else:
                self.budgets[link] = FlightHourBudget(per_hour)
                self.clients.pop(link, None)  # its byte counting starts with the next client

    def _priority_streams(self) -> tuple[str, ...]:
        cfg = self.downlink.config if self.downlink is not None else None
        if cfg is not None and cfg.priority_streams is not None:
            return cfg.priority_streams
        return self.s.priority_streams

    async def _probe(self, client: ReceiverClient) -> dict[str, int]:
        """``GET /v1/watermarks`` (retried); take its downlink documents and send the acks."""
        wm = await retrying(self.s, client.watermarks)
        if self.downlink is not None:
            self._acks += self.downlink.take(client.last_downlink)
            while self._acks:
                try:
                    await client.ack(self._acks[0].body())
                except ReceiverRejected as e:
                    log.error("downlink ack %s refused: %s", self._acks[0], e)
                except ReceiverUnavailable:
                    break  # sent again after the next probe (the document comes again too)
                self._acks.pop(0)
        return wm

    def _streams(self, link: str) -> list[tuple[str, int]]:
        scope = link_scope(self.policy, self.mode(), link)
        ordered = sorted(STREAM_PRIORITY, key=lambda s: (STREAM_PRIORITY[s], s))
        names = allowed_streams(scope, ordered, self._priority_streams())
        return [(s, STREAM_PRIORITY[s]) for s in names if s not in self.book.blocked]

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Run sessions until cancelled."""
        await asyncio.to_thread(load_budgets, self.reader.engine, self.budgets)
        while True:
            name = self.pick_link()
            if name is None:
                self._set_active(None, UplinkState.NO_LINK)
                await self._wait(self.s.probe_interval_s)
                continue
            link = self.links[name]
            try:
                await self._session(name)
            except ReceiverUnavailable as e:
                self.stats.last_error = str(e)
                was_up = link.up
                link.probed(False, str(e), self.clock())
                if was_up:
                    self.emit(LinkChanged(name, False, str(e), self.clock()))
                log.warning("uplink over %s interrupted: %s", name, e)
                await self._drop_client(name)
                self._set_active(None, UplinkState.BACKOFF)
                await self._wait(self._backoff(link.failures))
            except ReceiverRejected as e:
                self.stats.last_error = str(e)
                link.probed(True, None, self.clock())
                log.error("uplink over %s refused: %s", name, e)
                self._set_active(name, UplinkState.REJECTED)
                if isinstance(e, BatchTooLarge):
                    self.pipeline.halve()
                    continue
                await self._wait(self.s.retry_max_s)

    def _set_active(self, link: str | None, state: UplinkState) -> None:
        self.active_link, self.state = link, state

    async def _resume(self, name: str) -> None:
        self._set_active(name, UplinkState.CONNECTING)
        await self._resync(name, unblock=True)
        self.stats.sessions += 1

    async def _resync(self, name: str, *, unblock: bool) -> None:
        """Ask the receiver's watermarks and continue from them (the batches in flight are gone).

        Rows they cover are deleted; streams where they went back get their loss declared
        (:func:`~appliance.sync.queue.declare_lost`); the cursors become the watermarks.
        ``unblock``: give blocked streams another go.
        """
        client = self._client(name)
        wm = await self._probe(client)
        link = self.links[name]
        if not link.up:
            self.emit(LinkChanged(name, True, "receiver answered", self.clock()))
        link.probed(True, None, self.clock())
        now = self.clock()
        self.book.declare_lost(await self.writer.run(resume_writer(wm, now)), now)
        await self.book.resume_from(wm, unblock=unblock)

    async def _over_budget(self, name: str) -> None:
        self._set_active(name, UplinkState.OVER_BUDGET)
        budget = self.budgets[name]
        await self._wait(min(budget.next_window_in(self.clock()) + 0.01, self.s.probe_interval_s))

    async def _session(self, name: str) -> None:
        if not self.pipeline.affordable(name, REQUEST_OVERHEAD):
            await self._over_budget(name)
            return
        await self._resume(name)
        client = self._client(name)
        link = self.links[name]
        depth = 1 if name in self.budgets else self.s.pipeline_depth
        inflight: collections.deque[InFlight] = collections.deque()
        prepared: asyncio.Task[Batch | None] | None = None
        batch: Batch | None = None  # built, not yet sent (kept across over-budget waits)
        drained = False  # the last build found nothing: wait for the head before building again
        sent_any = False
        last_req = time.monotonic()
        try:
            while True:
                if self.pick_link() != name:
                    return  # a preferred link came up, this one went down, or the mode closed it
                if (len(inflight) < depth and not drained
                        and (not inflight or inflight[-1].sent.is_set())):
                    if batch is None:
                        streams = self._streams(name)
                        batch = await (prepared if prepared is not None
                                       else self.pipeline.build(streams, name, first=not sent_any))
                        prepared = None
                    if batch is None or not self.pipeline.affordable(name, len(batch.body)):
                        if not inflight:
                            await self._over_budget(name)
                            continue
                    elif batch.empty:
                        self.book.block_holes(batch)
                        batch = None
                        if inflight:
                            drained = True
                        else:
                            self._set_active(name, UplinkState.IDLE)
                            if name not in self.budgets and \
                                    time.monotonic() - last_req > self.s.probe_interval_s:
                                if self.book.blocked:  # give the blocked streams another go
                                    await self._resync(name, unblock=True)
                                else:
                                    await self._probe(client)  # keep it fresh
                                    link.probed(True, None, self.clock())
                                last_req = time.monotonic()
                            await self._wait(IDLE_POLL_S)
                            continue
                    else:
                        self._set_active(name, UplinkState.SENDING)
                        flight = InFlight(batch)
                        log.debug("sending %s (%d bytes)", batch.batch_id, len(batch.body))
                        flight.task = asyncio.create_task(
                            self.pipeline.send(client, batch, name, flight.sent.set))
                        inflight.append(flight)
                        batch = None
                        sent_any = True
                        if depth > 1:
                            prepared = asyncio.create_task(
                                self.pipeline.build(self._streams(name), name))
                        continue
                head = inflight[0]
                waiters: set[asyncio.Future[Any]] = {head.task}
                sent_wait = None
                if len(inflight) < depth and not drained and not inflight[-1].sent.is_set():
                    sent_wait = asyncio.ensure_future(inflight[-1].sent.wait())
                    waiters.add(sent_wait)
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                if sent_wait is not None and not sent_wait.done():
                    sent_wait.cancel()
                if not head.task.done():
                    continue
                inflight.popleft()
                log.debug("answer for %s", head.batch.batch_id)
                drained = False
                try:
                    answer = head.task.result()
                except OverBudget:
                    batch = head.batch  # send it when the next hour's budget allows
                    continue
                last_req = time.monotonic()
                link.probed(True, None, self.clock())
                if not self.pipeline.take_answer(name, head.batch, answer):
                    # the batches behind it were built on the assumption that it all went through
                    for t in [f.task for f in inflight] + ([prepared] if prepared else []):
                        t.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await t
                    inflight.clear()
                    prepared = batch = None
                    # not from this answer's watermarks: they may predate the answer before it
                    await self._resync(name, unblock=False)
                    last_req = time.monotonic()
                if name in self.budgets:
                    await self._save_budget(name)
        finally:
            for t in [f.task for f in inflight] + ([prepared] if prepared else []):
                t.cancel()

    # ------------------------------------------------------------------ budgets, stop
    def on_mode(self, previous: str | None, current: str, now: float) -> None:
        """Mode change: a take-off starts the flight-hour budgets afresh; a landing ends them."""
        for name, b in self.budgets.items():
            mode_changed(b, previous, current, now)
            self.writer.submit(budget_writer(name, b)).add_done_callback(log_failure)
        if self.downlink is not None:
            self._acks += self.downlink.on_mode()  # deferred documents the new mode allows
        self.nudge()

    async def _save_budget(self, name: str) -> None:
        await self.writer.run(budget_writer(name, self.budgets[name]))

    async def close(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the queued deletes, save the budgets, close the connections."""
        pending: list[asyncio.Future[Any]] = [
            asyncio.wrap_future(f) for f in self.pipeline.acks if not f.done()]
        pending += [asyncio.wrap_future(self.writer.submit(budget_writer(n, b)))
                    for n, b in self.budgets.items()]
        if pending:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout)
        for name in list(self.clients):
            await self._drop_client(name)
