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
3. A failed request is retried (tenacity: exponential backoff with full jitter, bounded in
   attempts); before each retry the watermarks are asked again, and if the batch in flight was
   in fact taken, it is not sent again. When the retries are used up the link counts as down,
   and the loop waits (again with jittered, capped backoff, cut short when an interface comes
   back up) before the next session.

A link with ``bytes_per_flight_hour`` gets batches cut to what is left of the hour's budget, and
none when it is spent (the state says ``over_budget`` until the next hour).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ..modes.policy import Mode, PolicyTable
from ..settings import SyncSettings
from ..store.outbox import STREAM_PRIORITY
from ..store.writer import Writer
from .batch import Batch, BatchLimits, build_batch
from .client import ReceiverClient
from .errors import RejectedError, TransientError
from .events import AckedRecordsLost, BatchAcknowledged, LinkChanged, StreamBlocked, SyncEvent
from .link import SYSFS_NET, LinkState
from .policy import FlightHourBudget, allowed_streams, link_scope
from .queue import LostRange, OutboxReader, apply_ack, declare_lost
from .tables import sync_link_budget

__all__ = ["Uplink", "UplinkStats"]

log = logging.getLogger(__name__)
#: Request and answer overhead (headers, JSON answer) reserved on a budgeted link, bytes.
REQUEST_OVERHEAD = 1200
IDLE_POLL_S = 0.5


class UplinkStats:
    """Counters of the uplink (since start)."""

    def __init__(self) -> None:
        """All zero."""
        self.batches = 0
        self.batch_failures = 0
        self.records_sent = 0
        self.records_applied = 0
        self.wire_bytes = 0
        self.raw_bytes = 0
        self.sessions = 0
        self.last_batch_at: float | None = None
        self.last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The counters as a dict."""
        return dict(vars(self))


class Uplink:
    """Sends the outbox; see the module doc. Construct, then run :meth:`run` as a task."""

    def __init__(self, settings: SyncSettings, aircraft_id: str, writer: Writer,
                 reader: OutboxReader, policy: PolicyTable, mode: Callable[[], Mode], *,
                 emit: Callable[[SyncEvent], None] | None = None,
                 clock: Callable[[], float] = time.time, sysfs: Any = SYSFS_NET) -> None:
        """Wire to the writer and reader; ``mode()`` gives the current mode; ``clock()`` epoch s."""
        self.s = settings
        self.aircraft_id = aircraft_id
        self.writer = writer
        self.reader = reader
        self.policy = policy
        self.mode = mode
        self.emit = emit or (lambda _e: None)
        self.clock = clock
        self.links = {n: LinkState(n, ls.interfaces, sysfs) for n, ls in settings.links.items()}
        self.budgets = {n: FlightHourBudget(ls.bytes_per_flight_hour)
                        for n, ls in settings.links.items() if ls.bytes_per_flight_hour}
        self.clients: dict[str, ReceiverClient] = {}
        self.cursors: dict[str, int] = {}
        self.blocked: dict[str, str] = {}
        #: stream -> what the receiver lost after acknowledging it (kept for this process's life)
        self.lost: dict[str, str] = {}
        self._announced: dict[str, str] = {}  # last block reported per stream (no repeats)
        self.lock = asyncio.Lock()
        self.wake = asyncio.Event()
        self.state = "starting"
        self.active_link: str | None = None
        self.stats = UplinkStats()
        self.limits = BatchLimits(settings.batch_max_records, settings.batch_max_bytes,
                                  settings.zstd_level)
        self._acks: list[concurrent.futures.Future[Any]] = []
        self._ratio = 3.0  # raw / compressed, learnt from each batch

    # ------------------------------------------------------------------ plumbing
    def nudge(self) -> None:
        """Wake the loop now ("sync now"): skip the current wait."""
        self.wake.set()

    def protected(self) -> dict[str, int]:
        """Per stream, the seq at or below which rows must not be dropped (sent or in flight)."""
        return dict(self.cursors)

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
                on_bytes=(lambda n: budget.charge(n, self.clock())) if budget else None)
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

    def _streams(self, link: str) -> list[tuple[str, int]]:
        scope = link_scope(self.policy, self.mode(), link)
        ordered = sorted(STREAM_PRIORITY, key=lambda s: (STREAM_PRIORITY[s], s))
        names = allowed_streams(scope, ordered, self.s.priority_streams)
        return [(s, STREAM_PRIORITY[s]) for s in names if s not in self.blocked]

    # ------------------------------------------------------------------ main loop
    async def run(self) -> None:
        """Run sessions until cancelled."""
        await asyncio.to_thread(self._load_budgets)
        while True:
            name = self.pick_link()
            if name is None:
                self._set_active(None, "no_link")
                await self._wait(self.s.probe_interval_s)
                continue
            link = self.links[name]
            try:
                await self._session(name)
            except TransientError as e:
                self.stats.last_error = str(e)
                was_up = link.up
                link.probed(False, str(e), self.clock())
                if was_up:
                    self.emit(LinkChanged(name, False, str(e), self.clock()))
                log.warning("uplink over %s interrupted: %s", name, e)
                await self._drop_client(name)
                self._set_active(None, "backoff")
                await self._wait(self._backoff(link.failures))
            except RejectedError as e:
                self.stats.last_error = str(e)
                link.probed(True, None, self.clock())
                log.error("uplink over %s refused: %s", name, e)
                self._set_active(name, "rejected")
                if e.status == 413:  # the receiver takes smaller batches: halve ours
                    self.limits = replace(self.limits,
                                          max_records=max(1, self.limits.max_records // 2),
                                          max_bytes=max(1024, self.limits.max_bytes // 2))
                    continue
                await self._wait(self.s.retry_max_s)

    def _set_active(self, link: str | None, state: str) -> None:
        self.active_link, self.state = link, state

    async def _retrying(self, fn: Callable[[], Any]) -> Any:
        """Run ``await fn()`` with tenacity: jittered exponential backoff, bounded attempts."""
        async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.s.retry_attempts),
                wait=wait_random_exponential(multiplier=self.s.retry_initial_s,
                                             max=self.s.retry_max_s),
                retry=retry_if_exception_type(TransientError), reraise=True,
                before_sleep=_log_retry):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _resume(self, name: str) -> None:
        self._set_active(name, "connecting")
        await self._resync(name, unblock=True)
        self.stats.sessions += 1

    async def _resync(self, name: str, *, unblock: bool) -> None:
        """Ask the receiver's watermarks and continue from them (the batches in flight are gone).

        Rows they cover are deleted; streams where they went back get their loss declared
        (:func:`declare_lost`); the cursors become the watermarks. ``unblock``: give blocked
        streams another go.
        """
        client = self._client(name)
        wm = await self._retrying(client.watermarks)
        link = self.links[name]
        if not link.up:
            self.emit(LinkChanged(name, True, "receiver answered", self.clock()))
        link.probed(True, None, self.clock())
        now = self.clock()

        def resume(conn: Connection) -> list[LostRange]:
            lost = declare_lost(conn, wm, now)
            apply_ack(conn, wm, now)
            return lost

        for lr in await self.writer.run(resume):
            log.error("stream %s: %s", lr.stream, lr.detail)
            self.lost[lr.stream] = lr.detail
            self.emit(AckedRecordsLost(lr.stream, lr.lo, lr.hi, lr.acked, lr.watermark, now))
        async with self.lock:
            self.cursors = dict(wm)
            if unblock:
                self.blocked.clear()

    async def _over_budget(self, name: str) -> None:
        self._set_active(name, "over_budget")
        budget = self.budgets[name]
        await self._wait(min(budget.next_window_in(self.clock()) + 0.01, self.s.probe_interval_s))

    def _affordable(self, name: str, nbytes: int) -> bool:
        budget = self.budgets.get(name)
        return budget is None or budget.remaining(self.clock()) >= nbytes + REQUEST_OVERHEAD

    async def _session(self, name: str) -> None:
        if not self._affordable(name, REQUEST_OVERHEAD):
            await self._over_budget(name)
            return
        await self._resume(name)
        client = self._client(name)
        link = self.links[name]
        depth = 1 if name in self.budgets else self.s.pipeline_depth
        inflight: collections.deque[_InFlight] = collections.deque()
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
                                       else self._build(streams, name, first=not sent_any))
                        prepared = None
                    if batch is None or not self._affordable(name, len(batch.body)):
                        if not inflight:
                            await self._over_budget(name)
                            continue
                    elif batch.empty:
                        self._block_holes(batch)
                        batch = None
                        if inflight:
                            drained = True
                        else:
                            self._set_active(name, "idle")
                            if name not in self.budgets and \
                                    time.monotonic() - last_req > self.s.probe_interval_s:
                                if self.blocked:  # give the blocked streams another go
                                    await self._resync(name, unblock=True)
                                else:
                                    await self._retrying(client.watermarks)  # keep it fresh
                                    link.probed(True, None, self.clock())
                                last_req = time.monotonic()
                            await self._wait(IDLE_POLL_S)
                            continue
                    else:
                        self._set_active(name, "sending")
                        flight = _InFlight(batch)
                        log.debug("sending %s (%d bytes)", batch.batch_id, len(batch.body))
                        flight.task = asyncio.create_task(
                            self._send(client, batch, name, flight.sent.set))
                        inflight.append(flight)
                        batch = None
                        sent_any = True
                        if depth > 1:
                            prepared = asyncio.create_task(self._build(self._streams(name), name))
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
                except _OverBudget:
                    batch = head.batch  # send it when the next hour's budget allows
                    continue
                last_req = time.monotonic()
                link.probed(True, None, self.clock())
                if not self._take_answer(name, head.batch, answer):
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

    def _block_holes(self, batch: Batch) -> None:
        """Block the streams whose next seq is missing from the outbox."""
        for stream, seq in batch.holes.items():
            detail = (f"outbox lacks seq {seq} of {stream} (the receiver acknowledged up to "
                      f"{self.cursors.get(stream, 0)}): nothing after it can be sent in order")
            self._block(stream, detail)

    def _block(self, stream: str, detail: str) -> None:
        """Stop sending ``stream`` until the next resume; say so once per distinct reason."""
        self.blocked[stream] = detail
        if self._announced.get(stream) != detail:
            self._announced[stream] = detail
            log.error("stream %s blocked: %s", stream, detail)
            self.emit(StreamBlocked(stream, detail, self.clock()))

    async def _build(self, streams: list[tuple[str, int]], name: str, first: bool = False,
                     ) -> Batch | None:
        """Build the next batch after the cursors and advance them; None if over budget.

        The first batch of a session is a quarter of the usual size: it is on the wire sooner,
        and the next, full one is built while it travels.
        """
        async with self.lock:
            limits = self.limits
            if first:
                limits = replace(limits, max_records=max(1, limits.max_records // 4),
                                 max_bytes=max(1024, limits.max_bytes // 4))
            budget = self.budgets.get(name)
            while True:
                if budget is not None:
                    left = budget.remaining(self.clock()) - REQUEST_OVERHEAD
                    if left <= 0:
                        return None
                    limits = replace(limits, max_bytes=max(64, min(
                        limits.max_bytes, int(left * self._ratio * 0.9))))
                cursors = dict(self.cursors)
                t0 = time.monotonic()
                batch = await asyncio.to_thread(build_batch, self.reader, self.aircraft_id,
                                                streams, cursors, limits)
                log.debug("built %s: %d records, %d -> %d bytes in %.3f s", batch.batch_id,
                          batch.records, batch.raw_bytes, len(batch.body), time.monotonic() - t0)
                if budget is None or batch.empty or len(batch.body) <= left:
                    break
                if batch.records <= 1:
                    return None
                limits = replace(limits, max_records=max(1, batch.records // 2))
            if batch.body:
                self._ratio = 0.8 * self._ratio + 0.2 * batch.raw_bytes / len(batch.body)
            self.cursors.update(batch.end)
            return batch

    async def _send(self, client: ReceiverClient, batch: Batch, name: str,
                    on_sent: Callable[[], None] | None = None) -> dict[str, Any]:
        """POST ``batch`` with retries; after a failure, skip the resend if it was taken.

        Raises TransientError when the retries are used up, RejectedError, or _OverBudget when
        the link's hour budget cannot pay for (another) attempt.
        """
        first = True

        async def attempt() -> dict[str, Any]:
            nonlocal first
            if not self._affordable(name, len(batch.body)):
                raise _OverBudget(name)
            if not first:
                wm = await client.watermarks()
                if all(wm.get(s, 0) >= e for s, e in batch.end.items()):
                    log.info("batch %s was taken before the interruption", batch.batch_id)
                    return {"watermarks": wm, "applied": 0, "errors": [], "resumed": True}
            first = False
            try:
                return await client.post(batch, on_sent)
            except TransientError:
                self.stats.batch_failures += 1
                raise

        return dict(await self._retrying(attempt))

    def _take_answer(self, name: str, batch: Batch, answer: dict[str, Any]) -> bool:
        """Account for an answer; queue the deletes. True if every stream went as built."""
        wm = {str(k): int(v) for k, v in answer["watermarks"].items()}
        for err in answer.get("errors") or []:
            stream = str(err.get("stream"))
            detail = str(err.get("detail", err))
            if err.get("code") == "gap":
                # the receiver waited for an earlier seq that had not arrived (a batch overtaken
                # on the way, or this answer replayed for a resent batch id): resume from its
                # watermark, nothing is wrong with the stream
                log.info("receiver deferred part of %s: %s", batch.batch_id, detail)
            else:
                self._block(stream, f"receiver refused: {detail}")
        for stream, end in batch.end.items():
            if wm.get(stream, 0) >= end:
                self._announced.pop(stream, None)  # it goes again: a new block is news
        fut = self.writer.submit(lambda conn: apply_ack(conn, wm, self.clock()))
        fut.add_done_callback(_log_failure)
        self._acks = [f for f in self._acks if not f.done()] + [fut]
        st = self.stats
        st.batches += 1
        st.records_sent += batch.records
        st.records_applied += int(answer.get("applied", 0))
        st.wire_bytes += len(batch.body)
        st.raw_bytes += batch.raw_bytes
        st.last_batch_at = self.clock()
        self.emit(BatchAcknowledged(batch.batch_id, name, batch.records, len(batch.body),
                                    batch.raw_bytes, int(answer.get("applied", 0)), wm,
                                    self.clock()))
        return all(wm.get(s, 0) >= e for s, e in batch.end.items()) and not answer.get("errors")

    # ------------------------------------------------------------------ budgets, stop
    def on_mode(self, previous: str | None, current: str, now: float) -> None:
        """Mode change: a take-off starts the flight-hour budgets afresh; a landing ends them."""
        for name, b in self.budgets.items():
            if current == Mode.FLIGHT and previous != Mode.FLIGHT:
                b.take_off(now)
            elif previous == Mode.FLIGHT and current != Mode.FLIGHT:
                b.landed(now)
            self.writer.submit(self._budget_writer(name)).add_done_callback(_log_failure)
        self.nudge()

    def _budget_writer(self, name: str) -> Callable[[Connection], None]:
        b = self.budgets[name]
        values = {"anchor": b.anchor, "window": b.window, "used": b.used}

        def write(conn: Connection) -> None:
            conn.execute(sqlite_insert(sync_link_budget).values(link=name, **values)
                         .on_conflict_do_update(index_elements=["link"], set_=values))
        return write

    async def _save_budget(self, name: str) -> None:
        await self.writer.run(self._budget_writer(name))

    def _load_budgets(self) -> None:
        with self.reader.engine.connect() as conn:
            for row in conn.execute(sync_link_budget.select()):
                b = self.budgets.get(str(row.link))
                if b is not None:
                    b.anchor, b.window, b.used = float(row.anchor), int(row.window), int(row.used)

    async def close(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the queued deletes, save the budgets, close the connections."""
        pending = [asyncio.wrap_future(f) for f in self._acks if not f.done()]
        pending += [asyncio.wrap_future(self.writer.submit(self._budget_writer(n)))
                    for n in self.budgets]
        if pending:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), timeout)
        for name in list(self.clients):
            await self._drop_client(name)


class _InFlight:
    """A batch on the wire: its task and the moment its body was handed to the socket."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.sent = asyncio.Event()
        self.task: asyncio.Task[dict[str, Any]]


class _OverBudget(Exception):
    """The link's flight-hour budget cannot pay for the next request."""


def _log_retry(state: RetryCallState) -> None:
    err = state.outcome.exception() if state.outcome is not None else None
    log.info("attempt %d failed (%s); retrying in %.2f s", state.attempt_number, err,
             state.upcoming_sleep)


def _log_failure(fut: concurrent.futures.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("sync bookkeeping write failed: %s", fut.exception())
