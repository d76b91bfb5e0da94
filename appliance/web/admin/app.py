"""The admin app (maintenance network only): status, signals, journal, override, export, metrics.

``create_app(deps)``. Every ``/admin/v1`` route except ``login`` needs ``Authorization: Bearer``
with a session token (from ``POST /admin/v1/login``) or the configured service token. Roles: crew
reads; maintenance also acts (override, export, sync). No token or a bad one: 401; a role too low:
403; too many failures from one address or on one account: 429 for a while (see
:mod:`.auth`). Every action (any non-GET request and every login that reached a password check)
is journaled and queued for the ground on the ``audit`` stream before its answer is sent. A wrong
password or token counts as a failure, and so does a malformed login (bad JSON, NaN, a lone
surrogate, a missing or extra field: 422, or 413 past ``max_login_bytes``); a request without any
token does not (a dashboard not logged in yet must not lock its own maintainer out). The login
reads and parses its small body itself, so that even one that never reaches a model counts.
Password checks run on a bounded pool: when it is full, 503 with Retry-After. A 422 never echoes
the input (:mod:`appliance.web.validation`). Journal and database reads run in a worker thread
with their own connections.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, ValidationError

from ...avionics.chain import AvionicsChain
from ...store.journal import Journal
from ..validation import (
    BadJSON,
    ValidationErrorOut,
    error_items,
    install_error_handlers,
    strict_json,
    validation_response,
)
from ..views import signals_view
from .auth import AdminAuth, Attempt, HashingBusy, LockedOut, Principal, Role

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
    #: More pages without data of their own (they log in first), by path: the crew's ``/crew``.
    pages: dict[str, str] = field(default_factory=dict)
    routers: list[APIRouter] = field(default_factory=list)
    #: (method, path prefix) of requests too frequent to audit one by one (chunk transfers); the
    #: subsystem journals their outcome itself.
    unaudited: tuple[tuple[str, str], ...] = ()


class Login(BaseModel):
    """User name and password."""

    model_config = {"extra": "forbid"}

    user: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=256)]


class LoginOut(BaseModel):
    """A new session: its token (use it as ``Authorization: Bearer``), the user and the role."""

    token: str
    user: str
    role: str


_LOGIN_BODY = {"required": True, "content": {"application/json": {
    "schema": Login.model_json_schema()}}}


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
_LOGIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "bad user name or password"},
    413: {"model": ErrorOut, "description": "the body is longer than a login can be"},
    422: {"model": ValidationErrorOut, "description": "not a login (counts as a failure)"},
    429: {"model": ErrorOut, "description": "too many failures from this address or account"},
    503: {"model": ErrorOut, "description": "too many password checks at once; retry later"},
}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _locked(e: LockedOut | HashingBusy, code: int = status.HTTP_429_TOO_MANY_REQUESTS,
            ) -> HTTPException:
    return HTTPException(code, str(e), headers={"Retry-After": str(int(e.retry_after_s) + 1)})


class _BadLogin(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


async def _read_login(request: Request, limit: int) -> Login:
    """The login body, read up to ``limit`` bytes and parsed strictly; raises _BadLogin (413/422)."""
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _BadLogin(JSONResponse({"detail": f"a login body is at most {limit} bytes"},
                                         status_code=status.HTTP_413_CONTENT_TOO_LARGE))
    try:
        return Login.model_validate(strict_json(bytes(body)))
    except BadJSON as e:
        raise _BadLogin(validation_response(error_items(
            [{"loc": ("body",), "msg": str(e), "type": "json_invalid"}]))) from None
    except ValidationError as e:
        raise _BadLogin(validation_response(error_items(e.errors(), ("body",)))) from None


def require(auth: AdminAuth, role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's principal if its token holds ``role``; else 401/403/429."""

    async def dep(request: Request) -> Principal:
        client = _client(request)
        try:
            auth.check_lockout(client)
        except LockedOut as e:
            raise _locked(e) from e
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


def _page(html: str) -> Callable[[], Awaitable[HTMLResponse]]:
    async def page() -> HTMLResponse:
        return HTMLResponse(html)
    return page


def create_app(deps: AdminDeps) -> FastAPI:
    """Build the admin app over ``deps``."""
    auth = deps.auth
    crew = Depends(require(auth, Role.CREW))
    maintenance = Depends(require(auth, Role.MAINTENANCE))
    app = FastAPI(title="Cabin server — admin API", version="1", docs_url=None, redoc_url=None,
                  openapi_url=None)
    install_error_handlers(app)

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

    for page_path, page in deps.pages.items():
        app.add_api_route(page_path, _page(page), include_in_schema=False,
                          response_class=HTMLResponse)

    @app.post("/admin/v1/login", response_model=LoginOut, responses=_LOGIN_ERRORS,
              openapi_extra={"requestBody": _LOGIN_BODY})
    async def login(request: Request) -> Any:
        """Log in with ``{"user", "password"}``: a session token (Bearer) and the role.

        401 on bad credentials, 422 on a malformed body (both count as failures), 429 while the
        address or the account is locked, 503 when too many password checks are running.
        """
        client = _client(request)
        try:
            attempt = auth.begin(client)
        except LockedOut as e:
            raise _locked(e) from e
        try:
            return await _login(attempt, request)
        finally:
            auth.failed(attempt)  # a no-op once the attempt ended; else (cancelled) it counts

    async def _login(attempt: Attempt, request: Request) -> Any:
        try:
            body = await _read_login(request, auth.cfg.max_login_bytes)
        except _BadLogin as e:
            auth.failed(attempt)
            return e.response
        try:
            auth.begin_account(attempt, body.user)
            who = await auth.check_password(body.user, body.password)
        except LockedOut as e:
            raise _locked(e) from e
        except HashingBusy as e:
            auth.cancel(attempt)
            raise _locked(e, status.HTTP_503_SERVICE_UNAVAILABLE) from e
        if who is None:
            auth.failed(attempt)
        else:
            auth.succeeded(attempt)
        await audit(body.user, who.role.name.lower() if who else "-", "login", who is not None,
                    attempt.client, {})
        if who is None:
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
