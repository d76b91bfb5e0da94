"""An order's status: placed -> preparing -> delivered, or cancelled before delivery.

:data:`TRANSITIONS` is the whole state machine; :func:`next_state` judges one request
(:class:`~appliance.errors.OrderStateError` if not allowed). :class:`OrderBook` changes a status
through the single writer: the row's status, a journal row (kind ``order``) and its record on the
``order_status`` stream for the ground commit together (a stream apart from ``orders``, whose
records the ground counts as orders); a cancellation puts the order's items back in
stock in the same transaction. It also reads orders for the crew (by seat) and for the passenger
(one order, proved by its idempotency key).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from ..errors import OrderStateError, UnknownOrder
from ..modes.events import TimeSource
from ..store.journal import JournalEntry, JournalKind, write_entry
from ..store.models import orders
from .menu import menu_info, read_menu
from .tables import menu_items

__all__ = ["STATUSES", "TRANSITIONS", "OrderBook", "OrderStateError", "next_state"]

STATUSES = ("placed", "preparing", "delivered", "cancelled")
#: The allowed changes; ``delivered`` and ``cancelled`` are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "placed": frozenset({"preparing", "cancelled"}),
    "preparing": frozenset({"delivered", "cancelled"}),
    "delivered": frozenset(),
    "cancelled": frozenset(),
}
STREAM = "order_status"


def next_state(current: str, wanted: str) -> str:
    """``wanted`` if ``current -> wanted`` is allowed, else OrderStateError naming both."""
    if wanted not in TRANSITIONS:
        raise OrderStateError(f"{wanted!r} is not an order status ({', '.join(STATUSES)})")
    if wanted not in TRANSITIONS.get(current, frozenset()):
        raise OrderStateError(f"an order {current} cannot become {wanted}")
    return wanted


def _view(r: Any) -> dict[str, Any]:
    return {"number": r.id, "seat": r.seat, "items": r.items, "status": r.status,
            "total": r.total, "currency": r.currency, "created": r.created,
            "updated": r.updated or r.created}


class OrderBook:
    """Status changes (through ``writer``) and reads (``reader``) of the stored orders."""

    def __init__(self, writer: Any, reader: Engine, aircraft_id: str,
                 utc: Callable[[], tuple[float, Any]]) -> None:
        """``utc()``: best-known UTC (epoch s) and its source, for the journal rows."""
        self.writer = writer
        self.reader = reader
        self.aircraft_id = aircraft_id
        self.utc = utc

    async def set_status(self, number: int, wanted: str, who: str) -> dict[str, Any]:
        """Move order ``number`` to ``wanted``; returns the order as :meth:`order` shows it.

        Journaled (kind ``order``) and queued on the ``order_status`` stream in the same commit; a
        cancellation restores the stock. Raises UnknownOrder, OrderStateError.
        """
        utc, source = self.utc()
        src = source if isinstance(source, TimeSource) else TimeSource(str(source))

        def write(conn: Connection) -> dict[str, Any] | Exception:
            r = conn.execute(select(orders).where(orders.c.id == number)).first()
            if r is None:
                return UnknownOrder(f"no order {number}")
            try:
                new = next_state(r.status, wanted)
            except OrderStateError as e:
                return e
            now = time.time()
            conn.execute(update(orders).where(orders.c.id == number)
                         .values(status=new, updated=now))
            if new == "cancelled":
                for line in r.items:
                    conn.execute(update(menu_items).where(menu_items.c.sku == line["sku"])
                                 .values(stock=menu_items.c.stock + int(line["qty"])))
            data = {"order": number, "idempotency_key": r.idempotency_key, "seat": r.seat,
                    "previous": r.status, "status": new, "by": who}
            write_entry(conn, JournalEntry(JournalKind.ORDER, f"order {number} (seat {r.seat}) "
                                           f"{r.status} -> {new} by {who}", utc, src, data),
                        self.aircraft_id, STREAM)
            row = conn.execute(select(orders).where(orders.c.id == number)).one()
            return _view(row)

        res = await self.writer.run(write)
        if isinstance(res, Exception):
            raise res
        return dict(res)

    def order(self, number: int, key: str) -> dict[str, Any]:
        """One order for its passenger: UnknownOrder unless ``key`` is its idempotency key."""
        with self.reader.connect() as conn:
            r = conn.execute(select(orders).where(orders.c.id == number)).first()
        if r is None or r.idempotency_key != key:
            raise UnknownOrder(f"no order {number} for this key")
        return _view(r)

    def crew_view(self, limit: int = 300) -> dict[str, Any]:
        """``{"seats": {seat: [orders, newest first]}, "open": n, "menu": [...], "menu_info": {...}}``.

        Open orders (placed, preparing) and the latest ``limit`` orders; seats sorted by row
        then letter.
        """
        with self.reader.connect() as conn:
            rows = conn.execute(select(orders).order_by(orders.c.id.desc()).limit(limit)).all()
            menu = read_menu(conn)
            info = menu_info(conn)
        seats: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            seats.setdefault(r.seat, []).append(_view(r))

        def seat_key(s: str) -> tuple[int, str]:
            digits = "".join(c for c in s if c.isdigit())
            return (int(digits) if digits else 0, s)

        open_ = sum(1 for r in rows if r.status in ("placed", "preparing"))
        return {"seats": {s: seats[s] for s in sorted(seats, key=seat_key)}, "open": open_,
                "menu": menu, "menu_info": info}

    def menu(self) -> dict[str, Any]:
        """The menu in force for the passengers: ``{"version", "name", "items": [...]}``."""
        with self.reader.connect() as conn:
            return {**menu_info(conn), "items": read_menu(conn)}
