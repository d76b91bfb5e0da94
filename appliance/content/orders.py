"""Passenger orders: stored and queued for the ground in one durable transaction.

An order is acknowledged only after its commit (WAL, ``synchronous=FULL``). The client's
idempotency key makes a retry safe: the same key returns the order already stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from ..store.models import orders
from ..store.outbox import enqueue
from ..store.writer import Writer

__all__ = ["OrderResult", "Orders"]


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The stored order; ``created`` is False when the idempotency key was already known."""

    id: int
    idempotency_key: str
    outbox_key: str
    created: bool


class Orders:
    """Order writes (through the single writer) and reads (own connections)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, str]]) -> None:
        """``utc()`` gives the best-known UTC (epoch s) and its source."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc

    async def place(self, key: str, seat: str, items: list[dict[str, Any]]) -> OrderResult:
        """Store an order and queue it on the ``orders`` stream; returns once durable.

        Raises StoreError if the journal cannot commit (for example a full disk).
        """
        utc, source = self.utc()

        def write(conn: Connection) -> OrderResult:
            row = conn.execute(select(orders.c.id, orders.c.outbox_key)
                               .where(orders.c.idempotency_key == key)).first()
            if row is not None:
                return OrderResult(row.id, key, row.outbox_key, False)
            payload = {"idempotency_key": key, "seat": seat, "items": items, "utc": utc,
                       "time_source": source}
            okey = enqueue(conn, self.aircraft_id, "orders", payload)
            oid = conn.execute(insert(orders).values(
                idempotency_key=key, seat=seat, items=items, utc=utc, time_source=source,
                outbox_key=okey, created=time.time()).returning(orders.c.id)).scalar_one()
            return OrderResult(oid, key, okey, True)

        return await self.writer.run(write)

    def count(self) -> int:
        """Orders stored."""
        with self.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(orders)).scalar_one())
