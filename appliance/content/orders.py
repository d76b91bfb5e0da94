"""Passenger orders: checked against the menu, stored and queued for the ground in one transaction.

An order is acknowledged only after its commit (WAL, ``synchronous=FULL``). The client's
idempotency key makes a retry safe: the same key returns the order already stored (even when the
stream is full). Every item is checked against the menu in force (table ``menu_items``, see
:mod:`.menu`) inside the order's own write transaction: a SKU not on the menu, more than the
stock left, or more than :data:`MAX_PER_ITEM` of one item raises
:class:`~appliance.errors.OrderRefused` (with a code and the item); otherwise the stock of each
item goes down, the total (minor units) is computed from the menu's prices, and the order is
stored with status ``placed`` and queued for the ground, all in that one commit. On a journal that
never had a menu the first order installs the packaged default (:func:`.menu.ensure_menu`).
Status changes are :mod:`.order_status`'s.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from ..errors import OrderRefused, OrdersFull, StoreError
from ..store.models import orders, outbox
from ..store.outbox import enqueue
from ..store.writer import Writer
from .menu import ensure_menu
from .tables import menu_items

__all__ = ["MAX_PER_ITEM", "OrderResult", "Orders", "price_items"]

log = logging.getLogger(__name__)

STREAM = "orders"
#: How often :meth:`Orders.watch` counts the orders waiting for the ground (s).
COUNT_PERIOD_S = 10.0


#: At most this many of one item in an order (lines of the same SKU added up).
MAX_PER_ITEM = 10


@dataclass(frozen=True, slots=True)
class OrderResult:
    """The stored order; ``created`` is False when the idempotency key was already known.

    ``id`` is the order number shown to the passenger; ``total`` in minor units of ``currency``.
    """

    id: int
    idempotency_key: str
    outbox_key: str
    created: bool
    total: int = 0
    currency: str = ""
    status: str = "placed"


def price_items(conn: Connection, items: list[dict[str, Any]]
                ) -> tuple[list[dict[str, Any]], int, str] | OrderRefused:
    """Check ``items`` (``[{sku, qty}]``) against the menu in force and take them from its stock.

    In ``conn``'s transaction: returns the priced lines (``{sku, qty, price, name}``), the total
    (minor units) and the currency, having decremented the stock; or the OrderRefused (nothing
    written) for the first item not on the menu, past :data:`MAX_PER_ITEM`, or above the stock.
    """
    wanted: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        sku = str(item.get("sku", ""))
        wanted[sku] = wanted.get(sku, 0) + int(item.get("qty", 0))
        first.setdefault(sku, i)
    rows = {r.sku: r for r in conn.execute(
        select(menu_items).where(menu_items.c.sku.in_(list(wanted))))}
    for sku, qty in wanted.items():
        row = rows.get(sku)
        if row is None:
            return OrderRefused(f"{sku[:32]} is not on the menu", first[sku], "not_on_menu", sku)
        name = row.names.get("en", sku)
        if qty > MAX_PER_ITEM:
            return OrderRefused(f"at most {MAX_PER_ITEM} of {name} per order", first[sku],
                                "too_many", sku)
        if row.stock is not None and qty > row.stock:
            left = f"only {row.stock} left" if row.stock else "none left"
            return OrderRefused(f"{name} is out of stock ({left})", first[sku], "out_of_stock", sku)
    lines = []
    for sku, qty in wanted.items():
        row = rows[sku]
        if row.stock is not None:
            conn.execute(update(menu_items).where(menu_items.c.sku == sku)
                         .values(stock=menu_items.c.stock - qty))
        lines.append({"sku": sku, "qty": qty, "price": row.price, "name": row.names.get("en", sku)})
    currencies = {rows[s].currency for s in wanted}
    return lines, sum(x["qty"] * x["price"] for x in lines), currencies.pop()


def _queued(conn: Connection) -> int:
    """Records of the orders stream still in the outbox (not yet taken by the ground)."""
    q = select(func.count()).select_from(outbox).where(outbox.c.stream == STREAM)
    return int(conn.execute(q).scalar_one())


class Orders:
    """Order writes (through the single writer) and reads (own connections)."""

    def __init__(self, writer: Writer, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, str]], max_queued: int | None = None) -> None:
        """``utc()`` gives the best-known UTC (epoch s) and its source.

        ``max_queued``: the bound on orders waiting in the outbox (None: unbounded).
        """
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc
        self.max_queued = max_queued
        #: Orders waiting for the ground: an upper bound (None until first counted).
        self.queued: int | None = None
        self.refused_full = 0  #: orders refused because the stream was at its bound
        self._in_flight = 0
        self._menu_ready = False

    async def place(self, key: str, seat: str, items: list[dict[str, Any]]) -> OrderResult:
        """Check ``items`` against the menu, store the order, queue it on the ``orders`` stream.

        Returns once durable. Raises OrderRefused (not on the menu, out of stock, too many of one
        item; nothing is taken from the stock), OrdersFull (the stream holds ``max_queued``
        orders; a retry of a stored order is still answered) and StoreError if the journal
        cannot commit (for example a full disk).
        """
        utc, source = self.utc()
        bound = self.max_queued
        # Count inside the transaction when our upper bound, with the orders in flight, could
        # reach the bound; otherwise the true depth is certainly below it.
        count = bound is not None and (self.queued is None
                                       or self.queued + self._in_flight + 1 > bound)

        def write(conn: Connection) -> tuple[OrderResult | OrderRefused | None, int | None]:
            row = conn.execute(select(orders.c.id, orders.c.outbox_key, orders.c.total,
                                      orders.c.currency, orders.c.status)
                               .where(orders.c.idempotency_key == key)).first()
            if row is not None:
                return OrderResult(row.id, key, row.outbox_key, False, row.total, row.currency,
                                   row.status), None
            depth = _queued(conn) if count else None
            if depth is not None and bound is not None and depth >= bound:
                return None, depth
            if not self._menu_ready:  # first order on a new journal: the packaged default menu
                ensure_menu(conn)
            priced = price_items(conn, items)
            if isinstance(priced, OrderRefused):
                return priced, depth
            lines, total, currency = priced
            payload = {"idempotency_key": key, "seat": seat, "items": lines, "utc": utc,
                       "time_source": source, "total": total, "currency": currency,
                       "status": "placed"}
            okey = enqueue(conn, self.aircraft_id, STREAM, payload)
            now = time.time()
            oid = conn.execute(insert(orders).values(
                idempotency_key=key, seat=seat, items=lines, utc=utc, time_source=source,
                outbox_key=okey, created=now, status="placed", total=total, currency=currency,
                updated=now).returning(orders.c.id)).scalar_one()
            return OrderResult(oid, key, okey, True, total, currency), depth

        self._in_flight += 1
        try:
            res, depth = await self.writer.run(write)
        finally:
            self._in_flight -= 1
        if depth is not None:
            self.queued = depth
        self._menu_ready = True
        if isinstance(res, OrderRefused):
            raise res
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
