"""Passenger orders: checked against the menu, stored and queued for the ground in one transaction.

An order is acknowledged only after its commit (WAL, ``synchronous=FULL``). The client's
idempotency key makes a retry safe: the same key returns the order already stored (even when the
stream is full). Every item must name a SKU of the menu (:func:`~appliance.content.catalog.load_menu`
by default), else :class:`~appliance.errors.OrderRefused` names it.

The ``orders`` stream is never dropped for the disk budget, so its growth is bounded here:
at most ``max_queued`` orders wait in the outbox for the ground; past that a new order raises
:class:`~appliance.errors.OrdersFull`. :attr:`Orders.queued` is an upper bound of that depth
(exact after :meth:`Orders.refresh`; our own orders add to it, the ground link's deliveries
lower it only at the next count). Near the bound every order counts the queue inside its own
write transaction, so the bound is exact whatever runs concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from ..errors import OrderRefused, OrdersFull, StoreError
from ..store.models import orders, outbox
from ..store.outbox import enqueue
from ..store.writer import Writer
from .catalog import load_menu

__all__ = ["OrderResult", "Orders", "menu_skus"]

log = logging.getLogger(__name__)

STREAM = "orders"
#: How often :meth:`Orders.watch` counts the orders waiting for the ground (s).
COUNT_PERIOD_S = 10.0


def menu_skus() -> frozenset[str]:
    """The SKUs of the menu shipped with the package."""
    return frozenset(str(item["sku"]) for item in load_menu())


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The stored order; ``created`` is False when the idempotency key was already known."""

    id: int
    idempotency_key: str
    outbox_key: str
    created: bool


def _queued(conn: Connection) -> int:
    """Records of the orders stream still in the outbox (not yet taken by the ground)."""
    q = select(func.count()).select_from(outbox).where(outbox.c.stream == STREAM)
    return int(conn.execute(q).scalar_one())


class Orders:
    """Order writes (through the single writer) and reads (own connections)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, str]], menu: Collection[str] | None = None,
                 max_queued: int | None = None) -> None:
        """``utc()`` gives the best-known UTC (epoch s) and its source.

        ``menu``: the SKUs an order may name (default: the package's menu). ``max_queued``: the
        bound on orders waiting in the outbox (None: unbounded).
        """
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc
        self.menu = frozenset(menu) if menu is not None else menu_skus()
        self.max_queued = max_queued
        #: Orders waiting for the ground: an upper bound (None until first counted).
        self.queued: int | None = None
        self.refused_full = 0  #: orders refused because the stream was at its bound
        self._in_flight = 0

    def check(self, items: list[dict[str, Any]]) -> None:
        """Raise OrderRefused naming the first item whose SKU is not on the menu."""
        for i, item in enumerate(items):
            sku = str(item.get("sku", ""))
            if sku not in self.menu:
                raise OrderRefused(f"{sku[:32]!r} is not on the menu", i)

    async def place(self, key: str, seat: str, items: list[dict[str, Any]]) -> OrderResult:
        """Check ``items`` against the menu, store the order, queue it on the ``orders`` stream.

        Returns once durable. Raises OrderRefused (an item not on the menu), OrdersFull (the
        stream holds ``max_queued`` orders; a retry of a stored order is still answered) and
        StoreError if the journal cannot commit (for example a full disk).
        """
        self.check(items)
        utc, source = self.utc()
        bound = self.max_queued
        # Count inside the transaction when our upper bound, with the orders in flight, could
        # reach the bound; otherwise the true depth is certainly below it.
        count = bound is not None and (self.queued is None
                                       or self.queued + self._in_flight + 1 > bound)

        def write(conn: Connection) -> tuple[OrderResult | None, int | None]:
            row = conn.execute(select(orders.c.id, orders.c.outbox_key)
                               .where(orders.c.idempotency_key == key)).first()
            if row is not None:
                return OrderResult(row.id, key, row.outbox_key, False), None
            depth = _queued(conn) if count else None
            if depth is not None and bound is not None and depth >= bound:
                return None, depth
            payload = {"idempotency_key": key, "seat": seat, "items": items, "utc": utc,
                       "time_source": source}
            okey = enqueue(conn, self.aircraft_id, STREAM, payload)
            oid = conn.execute(insert(orders).values(
                idempotency_key=key, seat=seat, items=items, utc=utc, time_source=source,
                outbox_key=okey, created=time.time()).returning(orders.c.id)).scalar_one()
            return OrderResult(oid, key, okey, True), depth

        self._in_flight += 1
        try:
            res, depth = await self.writer.run(write)
        finally:
            self._in_flight -= 1
        if depth is not None:
            self.queued = depth
        if res is None:
            self.refused_full += 1
            raise OrdersFull(f"{depth} orders are waiting for the ground link (the bound is "
                             f"{bound}); new orders are refused until it takes some")
        if res.created and self.queued is not None:
            self.queued += 1
        return res

    async def refresh(self) -> int:
        """Count the orders waiting in the outbox now (through the writer: exact); the count."""
        self.queued = await self.writer.run(_queued)
        return self.queued

    async def watch(self, period_s: float = COUNT_PERIOD_S) -> None:
        """Count the queue every ``period_s`` seconds until cancelled (BITE shows the figure)."""
        while True:
            try:
                await self.refresh()
            except StoreError as e:
                log.warning("orders: cannot count the queue: %s", e)
            await asyncio.sleep(period_s)

    def count(self) -> int:
        """Orders stored."""
        with self.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(orders)).scalar_one())
