"""The admin app (maintenance network only): status, signals, journal, override, export, metrics.

``create_app(deps)``. Every ``/admin/v1`` route except ``login`` needs ``Authorization: Bearer``
with a session token (from ``POST /admin/v1/login``) or the configured service token. Roles: crew
reads; maintenance also acts (override, export, sync). No token or a bad one: 401; a role too low:
403; too many failures from one address: 429 for a while. Every action (any non-GET request and
every login) is journaled and queued for the ground on the ``audit`` stream before its answer is
sent. A wrong password or token counts as a failure; a request without any token does not (a
dashboard not logged in yet must not lock its own maintainer out). Journal and database reads run
in a worker thread with their own connections.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from ...avionics.chain import AvionicsChain
from ...store.journal import Journal
from ..views import signals_view
from .auth import AdminAuth, LockedOut, Principal, Role

__all__ = ["AdminDeps", "create_app", "require"]


@dataclass
class AdminDeps:
    """What the admin app reads and acts on (wired by the daemon)."""

    chain: AvionicsChain
    journal: Journal
    auth: AdminAuth
    status: Callable[[], dict[str, Any]]
    utc: Callable[[], tuple[float, str]]
    profile: Callable[[], dict[str, Any]] | None = None
    export: Callable[[float, float], tuple[bytes, dict[str, Any]]] | None = None
    metrics: Callable[[], Awaitable[bytes]] | None = None
    dashboard_html: str | None = None
    routers: list[APIRouter] = field(default_factory=list)
    #: (method, path prefix) of requests too frequent to audit one by one (chunk transfers); the
    #: subsystem journals their outcome itself.
    unaudited: tuple[tuple[str, str], ...] = ()


class Login(BaseModel):
    """User name and password."""

    model_config = {"extra": "forbid"}

    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class MaintenanceRequest(BaseModel):
    """Enter (``on``) or leave maintenance mode, with the reason (journaled)."""

    model_config = {"extra": "forbid"}

    on: bool
    reason: Annotated[str, Field(min_length=3, max_length=500)]


class ErrorOut(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class RefusedOut(BaseModel):
    """A refused override: why, and the mode and air/ground state at the time."""

    detail: str
    mode: str
    air_ground: str


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or a wrong one"},
    403: {"model": ErrorOut, "description": "the role does not allow it"},
    429: {"model": ErrorOut, "description": "too many failures from this address"},
}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require(auth: AdminAuth, role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's principal if its token holds ``role``; else 401/403/429."""

    async def dep(request: Request) -> Principal:
        client = _client(request)
        try:
            auth.check_lockout(client)
        except LockedOut as e:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(e),
                                headers={"Retry-After": str(int(e.retry_after_s) + 1)}) from e
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        presented = scheme.lower() == "bearer" and bool(token.strip())
        who = auth.principal(token.strip()) if presented else None
        if who is None:
            if presented:  # a wrong token counts as a guess; no token at all does not
                auth.failure(client)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token required",
                                headers={"WWW-Authenticate": "Bearer"})
        if who.role < role:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role.name.lower()} role")
        request.state.principal = who
        return who

    return dep


def create_app(deps: AdminDeps) -> FastAPI:
    """Build the admin app over ``deps``."""
    auth = deps.auth
    crew = Depends(require(auth, Role.CREW))
    maintenance = Depends(require(auth, Role.MAINTENANCE))
    app = FastAPI(title="Cabin server — admin API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)

    async def audit(who: str, role: str, action: str, ok: bool, client: str,
                    detail: dict[str, Any]) -> None:
        utc, src = deps.utc()
        await deps.journal.record_admin(who, role, action, ok, client, detail, utc, src)

    @app.middleware("http")
    async def audit_actions(request: Request, call_next: Callable[[Request], Awaitable[Response]],
                            ) -> Response:
        response = await call_next(request)
        who: Principal | None = getattr(request.state, "principal", None)
        path = request.url.path
        if request.method not in ("GET", "HEAD") and who is not None and not any(
                request.method == m and path.startswith(p) for m, p in deps.unaudited):
            await audit(who.user, who.role.name.lower(), f"{request.method} {path}",
                        response.status_code < 400, _client(request),
                        {"status": response.status_code})
        return response

    @app.get("/", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        """The maintenance dashboard (a page with no data of its own: it logs in first)."""
        return HTMLResponse(deps.dashboard_html or "<h1>Cabin server admin</h1>")

    @app.post("/admin/v1/login", responses=_AUTH_ERRORS)
    async def login(body: Login, request: Request) -> dict[str, Any]:
        """Log in: a session token (Bearer) and the role; 401 on bad credentials, 429 when locked."""
        client = _client(request)
        try:
            auth.check_lockout(client)
        except LockedOut as e:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(e),
                                headers={"Retry-After": str(int(e.retry_after_s) + 1)}) from e
        who = await run_in_threadpool(auth.verify_password, body.user, body.password)
        await audit(body.user, who.role.name.lower() if who else "-", "login", who is not None,
                    client, {})
        if who is None:
            auth.failure(client)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "bad user name or password")
        return {"token": auth.open_session(who), "user": who.user, "role": who.role.name.lower()}

    api = APIRouter(prefix="/admin/v1", responses=_AUTH_ERRORS)

    @api.post("/logout")
    async def logout(request: Request, who: Principal = crew) -> dict[str, str]:
        """End this session."""
        auth.close_session(request.headers.get("authorization", "").partition(" ")[2].strip())
        return {"user": who.user, "status": "logged out"}

    @api.get("/whoami")
    async def whoami(who: Principal = crew) -> dict[str, str]:
        """The caller's user name and role."""
        return {"user": who.user, "role": who.role.name.lower()}

    @api.get("/status", dependencies=[crew])
    async def get_status() -> dict[str, Any]:
        """Mode, air/ground (with why it holds), phase, UTC source, BITE per subsystem, journal."""
        return deps.status()

    @api.get("/signals", dependencies=[crew])
    async def get_signals() -> dict[str, Any]:
        """Every parameter: value, unit, validity, age (s); bad-word counters per source."""
        return signals_view(deps.chain)

    @api.get("/journal", dependencies=[crew])
    async def get_journal(kind: Annotated[str | None, Query(max_length=32)] = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                          after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
                          since: Annotated[float | None, Query(ge=0, le=1e10)] = None,
                          until: Annotated[float | None, Query(ge=0, le=1e10)] = None,
                          ) -> dict[str, Any]:
        """Journal rows oldest first, each with its evidence.

        Filters: ``kind`` (mode, airground, phase, bite, admin), id after ``after``, UTC (epoch s)
        between ``since`` and ``until``.
        """
        rows = await run_in_threadpool(deps.journal.query, kind, limit, after, since, until)
        return {"rows": rows}

    @api.post("/maintenance", responses={409: {"model": RefusedOut,
                                               "description": "refused: not on the ground"}})
    async def maintenance_mode(body: MaintenanceRequest, who: Principal = maintenance,
                               ) -> JSONResponse:
        """Enter or leave MAINTENANCE (ground only): 200 with the mode, or 409 when refused."""
        granted = deps.chain.set_maintenance(body.on, f"{who.user}: {body.reason}")
        mode = str(deps.chain.mode)
        if not granted:
            return JSONResponse({"detail": "maintenance mode is allowed on the ground only",
                                 "mode": mode, "air_ground": str(deps.chain.ag.state)},
                                status_code=status.HTTP_409_CONFLICT)
        return JSONResponse({"mode": mode, "reason": body.reason, "by": who.user})

    if deps.profile is not None:
        profile = deps.profile

        @api.get("/profile", dependencies=[crew])
        async def get_profile() -> dict[str, Any]:
            """The current or last flight profile.

            Altitude, speeds and WOW against time, mode/phase bands and every transition with its
            evidence.
            """
            return profile()

    if deps.export is not None:
        export = deps.export

        @api.get("/export", dependencies=[maintenance], response_class=Response,
                 responses={200: {"content": {"application/zstd": {}}},
                            400: {"model": ErrorOut, "description": "since is after until"}})
        async def get_export(request: Request,
                             since: Annotated[float | None, Query(ge=0, le=1e10)] = None,
                             until: Annotated[float | None, Query(ge=0, le=1e10)] = None,
                             ) -> Response:
            """Logs bundle (tar.zst) with a manifest.

            The journal extract and the service logs for a UTC range (epoch s; default: the last
            hour).
            """
            end = until if until is not None else time.time()
            start = since if since is not None else end - 3600
            if start > end:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, "since is after until")
            data, manifest = await run_in_threadpool(export, start, end)
            who: Principal = request.state.principal
            await audit(who.user, who.role.name.lower(), "export", True, _client(request),
                        {"since": start, "until": end, "bytes": len(data),
                         "journal_rows": manifest.get("journal_rows")})
            name = f"appliance-logs-{int(start)}-{int(end)}.tar.zst"
            return Response(data, media_type="application/zstd",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    app.include_router(api)
    for router in deps.routers:  # subsystems' routes; under /admin/v1 unless they say /admin
        prefix = "" if router.prefix.startswith("/admin") else "/admin/v1"
        app.include_router(router, prefix=prefix, dependencies=[crew], responses=_AUTH_ERRORS)

    if deps.metrics is not None:
        metrics = deps.metrics

        @app.get("/metrics", dependencies=[crew], response_class=Response)
        async def get_metrics() -> Response:
            """Prometheus metrics (text exposition format)."""
            return Response(await metrics(), media_type="text/plain; version=0.0.4")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[crew])
    async def openapi() -> dict[str, Any]:
        """The OpenAPI document, behind the token like everything else here."""
        return app.openapi()

    return app
