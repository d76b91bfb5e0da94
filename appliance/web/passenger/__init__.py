"""The passenger port's HTTP edge: flight info, orders, the portal and its API, media (slow path).

``create_app(flight, ...)`` builds the FastAPI app; the portal's routes (``portal.py``), live
flight info over SSE (``flightinfo.py``) and the media ASGI app (``media.py``) are built by the
daemon and handed in as routers and mounts. Nothing here touches hardware or the database
directly: every service comes in through its constructor.
"""

from .app import OrderIn, OrderLimits, create_app

__all__ = ["OrderIn", "OrderLimits", "create_app"]
