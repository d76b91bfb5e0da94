"""The passenger side of the onboard shop: the menu in force and an order's status.

``shop_router(book) -> APIRouter`` (the daemon adds it to the passenger app):

- ``GET /api/v1/menu``: ``{"version", "name", "items": [{sku, names {lang: name}, name, price
  (minor units), currency, stock, allergens}]}``, the menu in force (a menu bundle replaces it).
- ``GET /api/v1/orders/{number}?key=K``: ``{number, seat, items, status, total, currency,
  created, updated}`` of one order; ``key`` must be the order's idempotency key (only the phone
  that placed it knows it), else 404. The page polls it while an order is open (a few seconds
  apart, one indexed read per poll).

Payment is to the crew on delivery: no route takes or stores card data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool

from ...content.order_status import OrderBook
from ...errors import UnknownOrder

__all__ = ["shop_router"]


def shop_router(book: OrderBook) -> APIRouter:
    """The passenger shop routes over ``book``."""
    router = APIRouter(tags=["shop"])

    @router.get("/api/v1/menu")
    async def get_menu() -> dict[str, Any]:
        """The menu in force: items with names per language, price (minor units), stock."""
        return await run_in_threadpool(book.menu)

    @router.get("/api/v1/orders/{number}", responses={404: {"description": "no such order"}})
    async def get_order(number: Annotated[int, Path(ge=1, le=2**62)],
                        key: Annotated[str, Query(min_length=8, max_length=64,
                                                  pattern=r"^[A-Za-z0-9_.:-]+$")]
                        ) -> dict[str, Any]:
        """One order's status for the phone that placed it (``key``: its idempotency key)."""
        try:
            return await run_in_threadpool(book.order, number, key)
        except UnknownOrder as e:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e

    return router
