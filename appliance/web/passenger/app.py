"""The passenger app (passenger network): flight info, orders; the portal and media are mounted.

``create_app(chain, ...)``: FastAPI app. ``GET /api/v1/flight`` returns mode, phase and the
flight's values each with its validity (see :func:`appliance.web.views.flight_view`).
``POST /api/v1/orders`` places an order: every item on the menu in force and in stock (else 422
naming it); the answer carries the order number and total. Within the
per-address and per-seat rates of :class:`OrderLimits` (else 429 with ``Retry-After``), while the
orders stream is under its bound (else 503 with the reason). A 422 never echoes the input
(:mod:`appliance.web.validation`). No admin route exists here: anything under /admin is 404 on
this port.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from ...avionics.chain import AvionicsChain
from ...content.fairness import RateLimiter
from ...content.orders import Orders
from ...errors import OrderRefused, OrdersFull, StoreError
from ...modes.policy import PolicyTable
from ..validation import error_items, install_error_handlers, validation_response
from ..views import flight_view
from .traffic import PassengerTraffic, TrafficMiddleware

__all__ = ["OrderIn", "OrderLimits", "create_app"]


class OrderItem(BaseModel):
    """One line of an order."""

    sku: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9_-]+$")]
    qty: Annotated[int, Field(ge=1, le=10)]


class OrderIn(BaseModel):
    """A passenger order; ``idempotency_key`` is chosen by the client (a UUID, say)."""

    model_config = {"extra": "forbid"}

    idempotency_key: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    seat: Annotated[str, Field(pattern=r"^[0-9]{1,2}[A-K]$")]
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=20)]


class Detail(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


@dataclass
class OrderLimits:
    """Order rate limits: a token bucket per client address and one per seat."""

    per_client: RateLimiter
    per_seat: RateLimiter

    @classmethod
    def per_minute(cls, client_per_min: float, client_burst: int, seat_per_min: float,
                   seat_burst: int) -> OrderLimits:
        """Buckets refilled by ``*_per_min`` orders a minute, holding up to ``*_burst``."""
        return cls(RateLimiter(client_per_min / 60, client_burst),
                   RateLimiter(seat_per_min / 60, seat_burst))

    def allow(self, client: str, seat: str) -> float:
        """Take a token of both buckets: 0.0 if allowed, else the seconds to wait."""
        return self.per_client.allow(client) or self.per_seat.allow(seat)

    @property
    def limited(self) -> int:
        """Orders refused by either bucket so far."""
        return self.per_client.limited + self.per_seat.limited


_ORDER_ERRORS: dict[int | str, dict[str, Any]] = {
    429: {"model": Detail, "description": "too many orders from this address or seat (Retry-After)"},
    503: {"model": Detail, "description": "orders closed in this mode, or cannot be taken now"},
}


def create_app(chain: AvionicsChain, orders: Orders | None = None,
               policy: PolicyTable | None = None, traffic: PassengerTraffic | None = None,
               routers: Sequence[APIRouter] = (), mounts: Sequence[tuple[str, ASGIApp]] = (),
               order_limits: OrderLimits | None = None) -> FastAPI:
    """Build the passenger app over a read-only view of ``chain``.

    Handlers are async: they read the chain on the event loop that feeds it, never from a thread.
    ``order_limits``: None places orders without a rate limit (tests).
    """
    app = FastAPI(title="Cabin server — passenger API", version="1", docs_url=None,
                  redoc_url=None)
    install_error_handlers(app)
    if traffic is not None:
        app.add_middleware(TrafficMiddleware, traffic=traffic)

    @app.get("/api/v1/flight")
    async def flight() -> dict[str, Any]:
        """Flight info: mode, phase, altitude (ft), speeds (kt), position (deg), UTC; each with validity."""
        return flight_view(chain)

    if orders is not None:
        table = policy or PolicyTable.default()

        @app.post("/api/v1/orders", status_code=status.HTTP_201_CREATED,
                  response_model=dict[str, Any], responses=_ORDER_ERRORS)
        async def place_order(order: OrderIn, request: Request, response: Response) -> Any:
            """Place an order: 201 once durably stored and queued for the ground.

            Body: ``number`` (the order number), ``total`` (minor units of ``currency``),
            ``status`` (``placed``). 200 for a retry of a known idempotency key; 422 for a
            malformed order, an item not on the menu or out of stock, or more than 10 of one
            item (``type``: ``not_on_menu``, ``out_of_stock``, ``too_many``); 429 (with
            Retry-After, s) past the rate of this address or seat; 503 when passenger services
            are closed, the orders stream is at its bound or the journal cannot write.
            """
            if order_limits is not None:
                client = request.client.host if request.client else "unknown"
                wait = order_limits.allow(client, order.seat)
                if wait:
                    raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                        "too many orders from this device or seat",
                                        headers={"Retry-After": str(max(1, math.ceil(wait)))})
            if not table[chain.mode].passenger_services:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    f"passenger services are closed in {chain.mode} mode")
            try:
                res = await orders.place(order.idempotency_key, order.seat,
                                         [i.model_dump() for i in order.items])
            except OrderRefused as e:
                loc = ("body", "items", e.index, "sku") if e.index is not None else ("body",)
                return validation_response(error_items(
                    [{"loc": loc, "msg": str(e), "type": e.code}]))
            except OrdersFull as e:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(e)) from e
            except StoreError as e:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    "orders cannot be stored right now") from e
            if not res.created:
                response.status_code = status.HTTP_200_OK
            return {"id": res.id, "number": res.id, "idempotency_key": res.idempotency_key,
                    "outbox_key": res.outbox_key, "created": res.created, "total": res.total,
                    "currency": res.currency, "status": res.status}

    for router in routers:
        app.include_router(router)
    for path, sub in mounts:
        app.mount(path, sub)
    return app
