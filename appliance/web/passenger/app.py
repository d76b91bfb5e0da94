"""The passenger app (passenger network): flight info now; portal and media later.

``create_app(chain)``: FastAPI app. ``GET /api/v1/flight`` returns mode, phase and the flight's
values each with its validity (see :func:`appliance.web.views.flight_view`). No admin route exists
here: anything under /admin is 404 on this port.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Response, status
from pydantic import BaseModel, Field
from starlette.types import ASGIApp

from ...avionics.chain import AvionicsChain
from ...content.orders import Orders
from ...errors import StoreError
from ...modes.policy import PolicyTable
from ..views import flight_view
from .traffic import PassengerTraffic, TrafficMiddleware

__all__ = ["OrderIn", "create_app"]


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


def create_app(chain: AvionicsChain, orders: Orders | None = None,
               policy: PolicyTable | None = None, traffic: PassengerTraffic | None = None,
               routers: Sequence[APIRouter] = (), mounts: Sequence[tuple[str, ASGIApp]] = (),
               ) -> FastAPI:
    """Build the passenger app over a read-only view of ``chain``.

    Handlers are async: they read the chain on the event loop that feeds it, never from a thread.
    """
    app = FastAPI(title="Cabin server — passenger API", version="1", docs_url=None,
                  redoc_url=None)
    if traffic is not None:
        app.add_middleware(TrafficMiddleware, traffic=traffic)

    @app.get("/api/v1/flight")
    async def flight() -> dict[str, Any]:
        """Flight info: mode, phase, altitude (ft), speeds (kt), position (deg), UTC; each with validity."""
        return flight_view(chain)

    if orders is not None:
        table = policy or PolicyTable.default()

        @app.post("/api/v1/orders", status_code=status.HTTP_201_CREATED)
        async def place_order(order: OrderIn, response: Response) -> dict[str, Any]:
            """Place an order: 201 once durably stored and queued for the ground.

            200 for a retry of a known idempotency key; 503 when passenger services are closed
            or the journal cannot write; 422 for a malformed order.
            """
            if not table[chain.mode].passenger_services:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    f"passenger services are closed in {chain.mode} mode")
            try:
                res = await orders.place(order.idempotency_key, order.seat,
                                         [i.model_dump() for i in order.items])
            except StoreError as e:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                    "orders cannot be stored right now") from e
            if not res.created:
                response.status_code = status.HTTP_200_OK
            return {"id": res.id, "idempotency_key": res.idempotency_key,
                    "outbox_key": res.outbox_key, "created": res.created}

    for router in routers:
        app.include_router(router)
    for path, sub in mounts:
        app.mount(path, sub)
    return app
