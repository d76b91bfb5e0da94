"""The admin app (maintenance network only): status, live signals, journal. Bearer token required.

``create_app(chain, journal, status, token)``. Every route needs ``Authorization: Bearer <token>``;
without a configured token every request is refused (401), so a forgotten setting never opens it.
Journal reads run in a worker thread with their own connection (never on the event loop).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..journal import Journal
from ..modes.engine import AvionicsChain
from .views import signals_view

__all__ = ["create_app"]

_bearer = HTTPBearer(auto_error=False)


def create_app(chain: AvionicsChain, journal: Journal, status_fn: Callable[[], dict[str, Any]],
               token: str | None) -> FastAPI:
    """Build the admin app; ``status_fn`` gives the service status (the daemon's view)."""
    def auth(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if token is None or cred is None or not secrets.compare_digest(
                cred.credentials.encode(), token.encode()):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token required",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="Cabin server — admin API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(auth)])

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        """The OpenAPI document, behind the token like everything else here."""
        return app.openapi()

    @app.get("/admin/v1/status")
    async def get_status() -> dict[str, Any]:
        """Mode, air/ground (with why it holds), phase, UTC source, sources, journal writer."""
        return status_fn()

    @app.get("/admin/v1/signals")
    async def get_signals() -> dict[str, Any]:
        """Every parameter: value, unit, validity, age (s); bad-word counters per source."""
        return signals_view(chain)

    @app.get("/admin/v1/journal")
    async def get_journal(kind: Annotated[str | None, Query(max_length=32)] = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                          after: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """Journal rows oldest first (``kind`` = mode, airground, phase), each with its evidence."""
        rows = await run_in_threadpool(journal.query, kind, limit, after)
        return {"rows": rows}

    return app
