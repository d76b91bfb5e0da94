"""The onboard shop's wiring: the menu in force at first start, the order book, its routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine

from ..content.menu import ensure_menu
from ..content.order_status import OrderBook
from ..store.writer import Writer
from ..web.admin.shop import crew_html, shop_admin_router
from ..web.passenger.shop import shop_router

__all__ = ["Shop", "build_shop"]


@dataclass
class Shop:
    """The order book, the passenger and admin routers, the crew page (path -> HTML)."""

    book: OrderBook
    passenger: APIRouter
    admin: APIRouter
    pages: dict[str, str]


async def build_shop(writer: Writer, reader: Engine, aircraft_id: str,
                     utc: Callable[[], tuple[float, Any]]) -> Shop:
    """Put the packaged menu in place if none was ever installed, then build the shop's parts."""
    await writer.run(ensure_menu)
    book = OrderBook(writer, reader, aircraft_id, utc)
    return Shop(book, shop_router(book), shop_admin_router(book), {"/crew": crew_html()})
