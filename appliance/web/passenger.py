"""The passenger app (passenger network): flight info now; portal and media later.

``create_app(chain)``: FastAPI app. ``GET /api/v1/flight`` returns mode, phase and the flight's
values each with its validity (see :func:`appliance.web.views.flight_view`). No admin route exists
here: anything under /admin is 404 on this port.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ..modes.engine import AvionicsChain
from .views import flight_view

__all__ = ["create_app"]


def create_app(chain: AvionicsChain) -> FastAPI:
    """Build the passenger app over a read-only view of ``chain``.

    Handlers are async: they read the chain on the event loop that feeds it, never from a thread.
    """
    app = FastAPI(title="Cabin server — passenger API", version="1", docs_url=None,
                  redoc_url=None)

    @app.get("/api/v1/flight")
    async def flight() -> dict[str, Any]:
        """Flight info: mode, phase, altitude (ft), speeds (kt), position (deg), UTC; each with validity."""
        return flight_view(chain)

    return app
