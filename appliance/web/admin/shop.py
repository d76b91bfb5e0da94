"""The crew's side of the onboard shop on the admin port: orders by seat, status, stock.

``shop_admin_router(book) -> APIRouter``; the admin app puts every route behind the crew role
(``AdminDeps.routers``) and audits the status changes as it audits every action.

- ``GET /admin/v1/shop/orders``: :meth:`OrderBook.crew_view`: ``{"seats": {seat: [order...]},
  "open": n, "menu": [items with stock], "menu_info": {version, name}}``.
- ``POST /admin/v1/shop/orders/{number}/status`` with ``{"status": "preparing" | "delivered" |
  "cancelled"}``: the order after the change; 404 unknown order, 409 a change the state machine
  refuses (placed -> delivered, anything after delivered or cancelled).

The crew page (``crew_html()``, served at ``/crew`` without data of its own) logs in with the
admin port's login and uses these routes.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from ...content.order_status import OrderBook
from ...errors import OrderStateError, UnknownOrder

__all__ = ["StatusIn", "crew_html", "shop_admin_router"]


class StatusIn(BaseModel):
    """The status wanted for an order."""

    model_config = {"extra": "forbid"}
    status: Literal["preparing", "delivered", "cancelled"]


def crew_html() -> str:
    """The crew page's HTML, read from the package (``static/crew.html``)."""
    return resources.files(__package__).joinpath("static/crew.html").read_text()


def shop_admin_router(book: OrderBook) -> APIRouter:
    """The crew's shop routes over ``book``."""
    router = APIRouter(prefix="/admin/v1/shop", tags=["shop"])

    @router.get("/orders")
    async def get_orders() -> dict[str, Any]:
        """Orders by seat (newest first), open count, the menu with its stock."""
        return await run_in_threadpool(book.crew_view)

    @router.post("/orders/{number}/status",
                 responses={404: {"description": "no such order"},
                            409: {"description": "a change the order's state does not allow"}})
    async def post_status(number: Annotated[int, Path(ge=1, le=2**62)], body: StatusIn,
                          request: Request) -> dict[str, Any]:
        """Move an order on: placed -> preparing -> delivered, or cancelled (stock restored)."""
        who = getattr(request.state, "principal", None)
        try:
            return await book.set_status(number, body.status, who.user if who else "crew")
        except UnknownOrder as e:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from e
        except OrderStateError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e

    return router
