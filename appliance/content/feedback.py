"""The passenger feedback survey: answers stored and queued for the ground in one durable transaction.

Like orders (:mod:`appliance.content.orders`): acknowledged only after the commit (WAL,
``synchronous=FULL``),
idempotent on the client's key (a retry returns the stored answer), and queued on the ``orders``
outbox stream — the passenger-writes stream, first to be sent and never dropped — as a record with
``"record": "feedback"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, insert, select

from ..store.outbox import enqueue
from ..store.writer import Writer
from .tables import feedback

__all__ = ["QUESTIONS", "Feedback", "FeedbackResult"]

#: The survey: question id -> text; each answer is a score from 1 (poor) to 5 (excellent).
QUESTIONS = {
    "overall": "How was your flight overall?",
    "crew": "How was the cabin crew?",
    "entertainment": "How were the films and books?",
    "food": "How were the food and drinks?",
}
STREAM = "orders"


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """The stored answer; ``created`` is False when the idempotency key was already known."""

    id: int
    outbox_key: str
    created: bool


class Feedback:
    """Survey writes (through the single writer) and reads (own connections)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, str]]) -> None:
        """``utc()`` gives the best-known UTC (epoch s) and its source."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc

    async def submit(self, key: str, seat: str | None, answers: dict[str, int],
                     comment: str) -> FeedbackResult:
        """Store one survey answer and queue it; returns once durable. Raises StoreError."""
        utc, source = self.utc()

        def write(conn: Connection) -> FeedbackResult:
            row = conn.execute(select(feedback.c.id, feedback.c.outbox_key)
                               .where(feedback.c.idempotency_key == key)).first()
            if row is not None:
                return FeedbackResult(row.id, row.outbox_key, False)
            payload = {"record": "feedback", "idempotency_key": key, "seat": seat,
                       "answers": answers, "comment": comment, "utc": utc, "time_source": source}
            okey = enqueue(conn, self.aircraft_id, STREAM, payload)
            fid = conn.execute(insert(feedback).values(
                idempotency_key=key, seat=seat, answers=answers, comment=comment, utc=utc,
                time_source=source, outbox_key=okey, created=time.time())
                .returning(feedback.c.id)).scalar_one()
            return FeedbackResult(fid, okey, True)

        return await self.writer.run(write)

    def count(self) -> int:
        """Survey answers stored."""
        with self.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(feedback)).scalar_one())
