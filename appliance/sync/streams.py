"""Per-stream bookkeeping of the uplink: cursors, blocked streams, losses, resync from watermarks.

A stream's *cursor* is the last seq built into a batch (sent or on its way); the receiver's
watermark is the truth it is reset to on each resync. A stream is *blocked* (not sent until the
next resume) when the outbox lacks its next seq or the receiver refused part of it for any
reason but a ``gap`` (which only means "resume from the watermark"). A stream whose watermark
went back below what the receiver had acknowledged has *lost* records: declared to the receiver
as a drop range, journalled, and kept here for the status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from sqlalchemy import Connection

from .batch import Batch
from .client import GAP, StreamRefusal
from .events import AckedRecordsLost, StreamBlocked, SyncEvent
from .queue import LostRange, apply_ack, declare_lost

__all__ = ["StreamBook", "resume_writer"]

log = logging.getLogger(__name__)


def resume_writer(watermarks: Mapping[str, int], now: float,
                  ) -> Callable[[Connection], list[LostRange]]:
    """Writer function: declare what the receiver lost, then forget what it holds."""
    wm = dict(watermarks)

    def resume(conn: Connection) -> list[LostRange]:
        lost = declare_lost(conn, wm, now)
        apply_ack(conn, wm, now)
        return lost
    return resume


class StreamBook:
    """Cursors, blocks and losses per stream; ``lock`` guards the cursors while a batch is built."""

    def __init__(self, emit: Callable[[SyncEvent], None], clock: Callable[[], float]) -> None:
        """Report blocks and losses through ``emit``; ``clock()`` gives epoch s."""
        self.emit = emit
        self.clock = clock
        self.cursors: dict[str, int] = {}
        #: stream -> why it cannot be sent until the next resume
        self.blocked: dict[str, str] = {}
        #: stream -> what the receiver lost after acknowledging it (kept for this process's life)
        self.lost: dict[str, str] = {}
        self._announced: dict[str, str] = {}  # last block reported per stream (no repeats)
        self.lock = asyncio.Lock()

    def protected(self) -> dict[str, int]:
        """Per stream, the seq at or below which rows must not be dropped (sent or in flight)."""
        return dict(self.cursors)

    def block(self, stream: str, detail: str) -> None:
        """Stop sending ``stream`` until the next resume; say so once per distinct reason."""
        self.blocked[stream] = detail
        if self._announced.get(stream) != detail:
            self._announced[stream] = detail
            log.error("stream %s blocked: %s", stream, detail)
            self.emit(StreamBlocked(stream, detail, self.clock()))

    def block_holes(self, batch: Batch) -> None:
        """Block the streams whose next seq is missing from the outbox."""
        for stream, seq in batch.holes.items():
            detail = (f"outbox lacks seq {seq} of {stream} (the receiver acknowledged up to "
                      f"{self.cursors.get(stream, 0)}): nothing after it can be sent in order")
            self.block(stream, detail)

    def refused(self, batch_id: str, errors: list[StreamRefusal]) -> None:
        """The receiver did not take these parts of a batch: block them, unless it deferred them."""
        for err in errors:
            if err["code"] == GAP:
                # the receiver waited for an earlier seq that had not arrived (a batch overtaken
                # on the way, or this answer replayed for a resent batch id): resume from its
                # watermark, nothing is wrong with the stream
                log.info("receiver deferred part of %s: %s", batch_id, err["detail"])
            else:
                self.block(err["stream"], f"receiver refused: {err['detail']}")

    def went_through(self, batch: Batch, watermarks: Mapping[str, int]) -> bool:
        """True if ``watermarks`` cover every stream of ``batch``; those that went may block anew."""
        for stream, end in batch.end.items():
            if watermarks.get(stream, 0) >= end:
                self._announced.pop(stream, None)  # it goes again: a new block is news
        return all(watermarks.get(s, 0) >= e for s, e in batch.end.items())

    def declare_lost(self, ranges: list[LostRange], now: float) -> None:
        """Report records the receiver lost after acknowledging them (log, status, event)."""
        for lr in ranges:
            log.error("stream %s: %s", lr.stream, lr.detail)
            self.lost[lr.stream] = lr.detail
            self.emit(AckedRecordsLost(lr.stream, lr.lo, lr.hi, lr.acked, lr.watermark, now))

    async def resume_from(self, watermarks: Mapping[str, int], *, unblock: bool) -> None:
        """The cursors become the receiver's watermarks; ``unblock``: blocked streams go again."""
        async with self.lock:
            self.cursors = dict(watermarks)
            if unblock:
                self.blocked.clear()
