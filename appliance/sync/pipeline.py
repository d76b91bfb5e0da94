"""The uplink's batch pipeline: build the next batch, send it with retries, take the answer.

:class:`Pipeline` holds what outlives one session: the batch limits (halved when the receiver
takes smaller batches), the learnt compression ratio (to cut batches to a link's budget) and the
acknowledgement writes still queued. The session loop (:class:`~appliance.sync.uplink.Uplink`)
decides when to build and send; see the uplink's module doc for the protocol.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from ..settings import SyncSettings
from ..store.writer import Writer
from .batch import Batch, BatchLimits, build_batch
from .client import BatchAnswer, ReceiverClient
from .errors import ReceiverUnavailable
from .events import BatchAcknowledged, SyncEvent
from .policy import FlightHourBudget
from .queue import OutboxReader, apply_ack
from .status import UplinkStats
from .streams import StreamBook

__all__ = ["REQUEST_OVERHEAD", "InFlight", "OverBudget", "Pipeline", "log_failure", "retrying"]

log = logging.getLogger(__name__)
#: Request and answer overhead (headers, JSON answer) reserved on a budgeted link, bytes.
REQUEST_OVERHEAD = 1200

T = TypeVar("T")


class OverBudget(Exception):
    """The link's flight-hour budget cannot pay for the next request."""


class InFlight:
    """A batch on the wire: its task and the moment its body was handed to the socket."""

    def __init__(self, batch: Batch) -> None:
        """Not started yet: the caller sets :attr:`task`."""
        self.batch = batch
        self.sent = asyncio.Event()
        self.task: asyncio.Task[BatchAnswer]


async def retrying(settings: SyncSettings, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``await fn()`` with tenacity: jittered exponential backoff, bounded attempts.

    Only :class:`ReceiverUnavailable` is retried; the last one is raised when the attempts are
    used up.
    """
    async for attempt in AsyncRetrying(
            stop=stop_after_attempt(settings.retry_attempts),
            wait=wait_random_exponential(multiplier=settings.retry_initial_s,
                                         max=settings.retry_max_s),
            retry=retry_if_exception_type(ReceiverUnavailable), reraise=True,
            before_sleep=_log_retry):
        with attempt:
            return await fn()
    raise AssertionError("unreachable")  # pragma: no cover


class Pipeline:
    """Builds, sends and accounts for batches (see the module doc)."""

    def __init__(self, settings: SyncSettings, aircraft_id: str, writer: Writer,
                 reader: OutboxReader, book: StreamBook, budgets: Mapping[str, FlightHourBudget],
                 stats: UplinkStats, *, emit: Callable[[SyncEvent], None],
                 clock: Callable[[], float]) -> None:
        """Read through ``reader``, acknowledge through ``writer``, advance ``book``'s cursors."""
        self.s = settings
        self.aircraft_id = aircraft_id
        self.writer = writer
        self.reader = reader
        self.book = book
        self.budgets = budgets
        self.stats = stats
        self.emit = emit
        self.clock = clock
        self.limits = BatchLimits(settings.batch_max_records, settings.batch_max_bytes,
                                  settings.zstd_level)
        self.acks: list[concurrent.futures.Future[int]] = []
        self._ratio = 3.0  # raw / compressed, learnt from each batch
        #: The aircraft's state for the ground's fleet view, put in each batch (None: none).
        self.ground_status: Callable[[], Mapping[str, object] | None] = lambda: None

    def halve(self) -> None:
        """The receiver takes smaller batches: halve ours (records and bytes)."""
        self.limits = replace(self.limits, max_records=max(1, self.limits.max_records // 2),
                              max_bytes=max(1024, self.limits.max_bytes // 2))

    def affordable(self, link: str, nbytes: int) -> bool:
        """True if ``link``'s hour budget (if any) pays for a request of ``nbytes``."""
        budget = self.budgets.get(link)
        return budget is None or budget.remaining(self.clock()) >= nbytes + REQUEST_OVERHEAD

    async def build(self, streams: list[tuple[str, int]], link: str, first: bool = False,
                    ) -> Batch | None:
        """Build the next batch after the cursors and advance them; None if over budget.

        The first batch of a session is a quarter of the usual size: it is on the wire sooner,
        and the next, full one is built while it travels.
        """
        book = self.book
        async with book.lock:
            limits = self.limits
            if first:
                limits = replace(limits, max_records=max(1, limits.max_records // 4),
                                 max_bytes=max(1024, limits.max_bytes // 4))
            budget = self.budgets.get(link)
            left = 0
            while True:
                if budget is not None:
                    left = budget.remaining(self.clock()) - REQUEST_OVERHEAD
                    if left <= 0:
                        return None
                    limits = replace(limits, max_bytes=max(64, min(
                        limits.max_bytes, int(left * self._ratio * 0.9))))
                cursors = dict(book.cursors)
                t0 = time.monotonic()
                batch = await asyncio.to_thread(build_batch, self.reader, self.aircraft_id,
                                                streams, cursors, limits, None,
                                                self.ground_status())
                log.debug("built %s: %d records, %d -> %d bytes in %.3f s", batch.batch_id,
                          batch.records, batch.raw_bytes, len(batch.body), time.monotonic() - t0)
                if budget is None or batch.empty or len(batch.body) <= left:
                    break
                if batch.records <= 1:
                    return None
                limits = replace(limits, max_records=max(1, batch.records // 2))
            if batch.body:
                self._ratio = 0.8 * self._ratio + 0.2 * batch.raw_bytes / len(batch.body)
            book.cursors.update(batch.end)
            return batch

    async def send(self, client: ReceiverClient, batch: Batch, link: str,
                   on_sent: Callable[[], None] | None = None) -> BatchAnswer:
        """POST ``batch`` with retries; after a failure, skip the resend if it was taken.

        Raises ReceiverUnavailable when the retries are used up, ReceiverRejected, or
        OverBudget when the link's hour budget cannot pay for (another) attempt.
        """
        first = True

        async def attempt() -> BatchAnswer:
            nonlocal first
            if not self.affordable(link, len(batch.body)):
                raise OverBudget(link)
            if not first:
                wm = await client.watermarks()
                if all(wm.get(s, 0) >= e for s, e in batch.end.items()):
                    log.info("batch %s was taken before the interruption", batch.batch_id)
                    return BatchAnswer(watermarks=wm, applied=0, errors=[], resumed=True)
            first = False
            try:
                return await client.post(batch, on_sent)
            except ReceiverUnavailable:
                self.stats.batch_failures += 1
                raise

        return await retrying(self.s, attempt)

    def take_answer(self, link: str, batch: Batch, answer: BatchAnswer) -> bool:
        """Account for an answer; queue the deletes. True if every stream went as built."""
        wm = answer["watermarks"]
        self.book.refused(batch.batch_id, answer["errors"])
        went = self.book.went_through(batch, wm)
        fut = self.writer.submit(lambda conn: apply_ack(conn, wm, self.clock()))
        fut.add_done_callback(log_failure)
        self.acks = [f for f in self.acks if not f.done()] + [fut]
        st = self.stats
        st.batches += 1
        st.records_sent += batch.records
        st.records_applied += answer["applied"]
        st.wire_bytes += len(batch.body)
        st.raw_bytes += batch.raw_bytes
        st.last_batch_at = self.clock()
        self.emit(BatchAcknowledged(batch.batch_id, link, batch.records, len(batch.body),
                                    batch.raw_bytes, answer["applied"], wm, self.clock()))
        return went and not answer["errors"]


def _log_retry(state: RetryCallState) -> None:
    err = state.outcome.exception() if state.outcome is not None else None
    log.info("attempt %d failed (%s); retrying in %.2f s", state.attempt_number, err,
             state.upcoming_sleep)


def log_failure(fut: concurrent.futures.Future[Any]) -> None:
    """Done callback of a bookkeeping write: log its failure (nobody awaits it)."""
    if not fut.cancelled() and fut.exception() is not None:
        log.error("sync bookkeeping write failed: %s", fut.exception())
