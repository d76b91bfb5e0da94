"""The passenger portal's routes: captive-portal detection, the catalog, live events, the survey.

``portal_router(...)`` returns an APIRouter for the passenger app (plugged in through
``create_app(routers=...)``):

- captive-portal probes: Apple ``/hotspot-detect.html`` and ``/library/test/success.html``,
  Android ``/generate_204`` and ``/gen_204``, Windows ``/connecttest.txt``, ``/ncsi.txt`` and
  ``/redirect``, Firefox ``/canonical.html`` and ``/success.txt``: until the client accepted the
  portal, a 302 to the portal (the phone then opens it by itself); afterwards the answer each
  operating system expects for "online";
- ``GET /api/captive``: RFC 8908 Captive Portal API (``application/captive+json``; over plain HTTP
  a 308 to its HTTPS URL when one is configured); ``GET /api/v1/portal/state``: the same document
  for the portal page (same origin);
- ``POST /api/v1/portal/accept``: the passenger tapped "Start"; probes answer "online" from then on
  (with the cabin network on, the gate opens for the phone: 409 with the reason if it cannot);
- ``GET /`` and ``/portal/...``: the portal page, its script and style, the npm-built vendor files;
- ``GET /api/v1/catalog``: the catalog JSON, built once per change, with ETag (304 on a match);
  503 with a message when the mode closes passenger services;
- ``GET /api/v1/events``: Server-Sent Events (``flight``, ``pa``, ``mode``), see
  :mod:`appliance.web.passenger.flightinfo`;
- ``GET /api/v1/survey`` and ``POST /api/v1/feedback`` (201 stored, 200 for a retried key, 503
  when closed or not storable, 422 malformed).

Every route counts against the client's request budget (429 with Retry-After beyond it).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from ...avionics.chain import AvionicsChain
from ...content.catalog import Catalog
from ...content.fairness import RateLimiter
from ...content.feedback import QUESTIONS, Feedback
from ...errors import ApplianceError, StoreError
from ...modes.policy import PolicyTable
from .flightinfo import FlightInfo
from .i18n import PortalLanguages
from .static import IMMUTABLE, TYPES, Asset, StaticFiles, choose_encoding

__all__ = ["Captive", "CaptiveState", "FeedbackIn", "PortalAssets", "portal_router"]

APPLE_SUCCESS = "<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_SUCCESS = ('<meta http-equiv="refresh" '
                   'content="0;url=https://support.mozilla.org/kb/captive-portal"/>')
NO_STORE = {"Cache-Control": "no-store"}
_TYPES = TYPES


class Captive(Protocol):
    """Who accepted the portal: :class:`CaptiveState` in memory, or the cabin network's gate."""

    def remaining(self, client: str) -> float:
        """Seconds of acceptance left for the client address (0: captive)."""

    async def accept(self, client: str) -> float:
        """Accept for the client address; returns the seconds it lasts (ApplianceError: cannot)."""


class CaptiveState:
    """Clients (addresses) that accepted the portal, each until its acceptance expires (in memory)."""

    def __init__(self, accept_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        """An acceptance lasts ``accept_s`` seconds."""
        self.accept_s = accept_s
        self.clock = clock
        self._until: dict[str, float] = {}

    async def accept(self, client: str) -> float:
        """Mark ``client`` as having accepted; returns the seconds it lasts."""
        now = self.clock()
        self._until[client] = now + self.accept_s
        if len(self._until) > 20_000:
            self._until = {c: t for c, t in self._until.items() if t > now}
        return self.accept_s

    def remaining(self, client: str) -> float:
        """Seconds of acceptance left for ``client`` (0 if none)."""
        return max(0.0, self._until.get(client, 0.0) - self.clock())


class PortalAssets:
    """The portal's files: ``assets/*``, ``assets/i18n/*.json`` and the vendor folder's files.

    Held by :class:`~appliance.web.passenger.static.StaticFiles` (precompressed, also under
    content-hashed names); the page inlines their hashed URLs as ``window.ASSET_URLS``.
    """

    def __init__(self, vendor_dir: Path | None,
                 media_port: Callable[[], int | None] = lambda: None) -> None:
        """Load the shipped files and whatever ``vendor_dir`` holds (missing: none, logged by caller).

        ``media_port``: the media server's port (None: none; read per page, as it may be bound
        after start); the page opens a connection to it at once (the posters come from there).
        """
        self.static = StaticFiles("/portal/")
        root = resources.files(__package__).joinpath("assets")
        for item in root.iterdir():
            if item.is_file() and not item.name.startswith(".") and item.name != "index.html":
                self.static.add(item.name, item.read_bytes())
        for item in root.joinpath("i18n").iterdir():
            if item.name.endswith(".json"):
                self.static.add(f"i18n/{item.name}", item.read_bytes())
        self.languages = PortalLanguages()
        self.vendor: list[str] = []
        if vendor_dir is not None and vendor_dir.is_dir():
            for p in sorted(vendor_dir.iterdir()):
                if p.is_file() and p.suffix in TYPES:
                    self.static.add(f"vendor/{p.name}", p.read_bytes(), p)
                    self.vendor.append(p.name)
        urls = self.static.urls()
        self.media_port = media_port
        self._values = {"_asset_urls": json.dumps(urls, separators=(",", ":")).replace("</", "<\\/"),
                        "_js_url": urls["app.js"],
                        # inlined: no render-blocking request for 4 KB of style
                        "_css_inline": self.static.by_name["app.css"].bodies["identity"]
                        .decode().replace("</", "<\\/")}

    def page(self, request: Request) -> Response:
        """``index.html`` in the request's language (cookie ``lang``, else Accept-Language)."""
        lang = self.languages.negotiate(request.headers.get("accept-language"),
                                        request.cookies.get("lang"))
        port = self.media_port()
        data, etag = self.languages.index(lang, {**self._values, "_media_port": str(port or 0)})
        return self._send(request, data, _TYPES[".html"], etag, "no-cache",
                          {"Vary": "Accept-Language, Cookie, Accept-Encoding",
                           "Content-Language": lang})

    def response(self, name: str, request: Request) -> Response:
        """The file ``name`` (logical or hashed; 404 if unknown), 304 on a matching If-None-Match."""
        found = self.static.lookup(name)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        asset, hashed = found
        return self._send(request, asset, asset.ctype, "", IMMUTABLE if hashed else "no-cache")

    def _send(self, request: Request, item: Asset | bytes, ctype: str, etag: str, cache: str,
              extra: dict[str, str] | None = None) -> Response:
        if isinstance(item, bytes):
            bodies, etags = {"identity": item}, {"identity": etag}
            if len(item) > 1024:
                bodies |= self.languages.compressed(item)
                etags |= {e: f'{etag[:-1]}-{e}"' for e in bodies if e != "identity"}
        else:
            bodies, etags = item.bodies, item.etags
        enc = choose_encoding(request.headers.get("accept-encoding"), bodies)
        headers = {"ETag": etags[enc], "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        if len(bodies) > 1:
            headers["Vary"] = "Accept-Encoding"
        headers |= extra or {}
        if enc != "identity":
            headers["Content-Encoding"] = enc
        if etags[enc] in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(bodies[enc], media_type=ctype, headers=headers)


class FeedbackIn(BaseModel):
    """A survey answer: the client's idempotency key, optional seat, scores 1-5, a comment."""

    model_config = {"extra": "forbid"}

    idempotency_key: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    seat: Annotated[str | None, Field(pattern=r"^[0-9]{1,2}[A-K]$")] = None
    answers: Annotated[dict[str, Annotated[int, Field(ge=1, le=5)]], Field(min_length=1)]
    comment: Annotated[str, Field(max_length=1000)] = ""


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def portal_router(chain: AvionicsChain, policy: PolicyTable, catalog: Catalog, info: FlightInfo,
                  feedback: Feedback, captive: Captive, assets: PortalAssets,
                  limiter: RateLimiter, streams_per_client: int = 4, portal_url: str = "/portal/",
                  heartbeat_s: float = 15.0, redirect_url: str | None = None,
                  venue_info_url: str | None = None, captive_api_url: str | None = None,
                  ) -> APIRouter:
    """Build the portal's routes (see the module docstring).

    ``redirect_url``: where a captive probe is sent (default ``portal_url``; the cabin network
    gives the portal's full URL by name); ``venue_info_url``: the RFC 8908 ``venue-info-url``
    (default the portal's flight view); ``captive_api_url``: the API's HTTPS URL (RFC 8908 allows
    no plain HTTP: a request over HTTP is redirected there, 308).
    """
    to_portal = redirect_url or portal_url

    async def budget(request: Request) -> None:
        wait = limiter.allow(_client(request))
        if wait > 0:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many requests",
                                headers={"Retry-After": str(max(1, math.ceil(wait)))})

    # Every route here answers from memory, so each is ``async def``: a plain ``def`` route (or
    # dependency) runs in the thread pool, a thread hop per request that py-spy put at about a
    # third of a catalog request's CPU.
    router = APIRouter(dependencies=[Depends(budget)])
    streams: dict[str, int] = {}

    def open_() -> bool:
        return policy[chain.mode].passenger_services

    def probe(online: Callable[[], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            if captive.remaining(_client(request)) > 0:
                return online()
            return RedirectResponse(to_portal, status.HTTP_302_FOUND, headers=NO_STORE)
        return handler

    probes: dict[str, Callable[[], Response]] = {
        "/hotspot-detect.html": lambda: HTMLResponse(APPLE_SUCCESS, headers=NO_STORE),
        "/library/test/success.html": lambda: HTMLResponse(APPLE_SUCCESS, headers=NO_STORE),
        "/generate_204": lambda: Response(status_code=204, headers=NO_STORE),
        "/gen_204": lambda: Response(status_code=204, headers=NO_STORE),
        "/connecttest.txt": lambda: PlainTextResponse("Microsoft Connect Test", headers=NO_STORE),
        "/ncsi.txt": lambda: PlainTextResponse("Microsoft NCSI", headers=NO_STORE),
        "/canonical.html": lambda: HTMLResponse(FIREFOX_SUCCESS, headers=NO_STORE),
        "/success.txt": lambda: PlainTextResponse("success\n", headers=NO_STORE),
    }
    for path, online in probes.items():
        router.add_api_route(path, probe(online), methods=["GET", "HEAD"], include_in_schema=False)

    @router.get("/redirect", include_in_schema=False)
    async def windows_redirect() -> Response:
        return RedirectResponse(to_portal, status.HTTP_302_FOUND, headers=NO_STORE)

    @router.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse(to_portal, status.HTTP_302_FOUND)

    @router.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})

    def captive_doc(request: Request) -> dict[str, Any]:
        left = captive.remaining(_client(request))
        base = str(request.base_url).rstrip("/")
        doc: dict[str, Any] = {"captive": left <= 0,
                               "user-portal-url": portal_url if "://" in portal_url
                               else base + portal_url,
                               "venue-info-url": venue_info_url or base + portal_url + "#flight"}
        if left > 0:
            doc["seconds-remaining"] = int(left)
            doc["can-extend-session"] = True
        return doc

    @router.get("/api/captive")
    async def captive_api(request: Request) -> Response:
        """RFC 8908: whether this client is still captive and where the portal is."""
        if captive_api_url and request.url.scheme != "https":
            return RedirectResponse(captive_api_url, status.HTTP_308_PERMANENT_REDIRECT,
                                    headers=NO_STORE)
        return Response(json.dumps(captive_doc(request)), media_type="application/captive+json",
                        headers={"Cache-Control": "private, no-store"})

    @router.get("/api/v1/portal/state")
    async def portal_state(request: Request) -> Response:
        """The same document for the portal page itself (same origin, HTTP or HTTPS)."""
        return Response(json.dumps(captive_doc(request)), media_type="application/json",
                        headers={"Cache-Control": "private, no-store"})

    @router.post("/api/v1/portal/accept")
    async def accept(request: Request) -> dict[str, Any]:
        """The passenger accepted the portal: probes from this address answer "online"."""
        try:
            left = await captive.accept(_client(request))
        except ApplianceError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
        return {"captive": False, "seconds-remaining": int(left)}

    @router.get("/portal/", include_in_schema=False)
    async def portal_index(request: Request) -> Response:
        return assets.page(request)

    @router.get("/portal/{name}", include_in_schema=False)
    async def portal_file(name: str, request: Request) -> Response:
        return assets.response(name, request)

    @router.get("/portal/i18n/{name}", include_in_schema=False)
    async def portal_catalog(name: str, request: Request) -> Response:
        return assets.response(f"i18n/{name}", request)

    @router.get("/portal/vendor/{name}", include_in_schema=False)
    async def portal_vendor(name: str, request: Request) -> Response:
        return assets.response(f"vendor/{name}", request)

    @router.get("/api/v1/catalog")
    async def get_catalog(request: Request) -> Response:
        """The catalog (titles, menu, media port): built once per change; ETag / If-None-Match."""
        b = catalog.body()
        headers = {"ETag": b.etag, "Cache-Control": "no-cache"}
        inm = request.headers.get("if-none-match")
        if inm is not None and b.etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(b.body, status_code=b.status, media_type="application/json", headers=headers)

    @router.get("/api/v1/events")
    async def events(request: Request) -> Response:
        """Server-Sent Events: ``flight`` every second, ``pa`` and ``mode`` as they happen."""
        client = _client(request)
        if streams.get(client, 0) >= streams_per_client:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many event streams")
        streams[client] = streams.get(client, 0) + 1
        q = info.open_stream()

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    try:
                        yield await asyncio.wait_for(q.get(), heartbeat_s)
                    except TimeoutError:
                        yield b": keep-alive\n\n"
            finally:
                info.close_stream(q)
                streams[client] -= 1
                if not streams[client]:
                    del streams[client]

        return StreamingResponse(frames(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.get("/api/v1/survey")
    async def survey() -> dict[str, Any]:
        """The survey's questions (id -> text); answers are scores 1 to 5."""
        return {"questions": [{"id": k, "text": v} for k, v in QUESTIONS.items()]}

    @router.post("/api/v1/feedback", status_code=status.HTTP_201_CREATED)
    async def post_feedback(body: FeedbackIn, response: Response) -> dict[str, Any]:
        """Store a survey answer: 201 once durable and queued, 200 for a retried key."""
        if not open_():
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"passenger services are closed in {chain.mode} mode")
        unknown = sorted(set(body.answers) - set(QUESTIONS))
        if unknown:
            raise HTTPException(422,
                                f"unknown question(s): {', '.join(unknown)}")
        try:
            res = await feedback.submit(body.idempotency_key, body.seat, body.answers, body.comment)
        except StoreError as e:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                "feedback cannot be stored right now") from e
        if not res.created:
            response.status_code = status.HTTP_200_OK
        return {"id": res.id, "outbox_key": res.outbox_key, "created": res.created}

    return router
