"""Composition of the passenger content parts (called by the daemon, the composition root).

``build_passenger_content(settings, chain, writer, reader_engine, policy)`` builds the content
store, the catalog, the usage journal, the media files and the sendfile media server, live flight
info, the survey and the portal's routes; it returns a :class:`PassengerContent` whose ``routers``
and ``mounts`` go to ``passenger.create_app`` and whose ``startables`` the daemon starts in order
(``await part.start()``) before the passenger web server and stops in reverse (``await
part.stop()``). Nothing starts or binds before ``start``.

Like the daemon, this module knows both sides (content and web); nothing imports it but the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from fastapi import APIRouter
from sqlalchemy import Engine
from starlette.types import ASGIApp

from ..modes.engine import AvionicsChain
from ..modes.policy import PolicyTable
from ..settings import Settings
from ..store.writer import Writer
from ..web.flightinfo import FlightInfo, airport
from ..web.media_asgi import MediaASGI
from ..web.portal import CaptiveState, PortalAssets, portal_router
from .catalog import Catalog
from .fairness import RateLimiter
from .feedback import Feedback
from .media import MediaFiles
from .mediaserver import MediaServer
from .store import ContentStore
from .usage import UsageJournal

__all__ = ["ContentService", "PassengerContent", "Startable", "build_passenger_content"]

log = logging.getLogger(__name__)


class Startable(Protocol):
    """A part with an async lifecycle."""

    async def start(self) -> None:
        """Start (bind, spawn tasks)."""

    async def stop(self) -> None:
        """Stop, bounded in time."""


class PassengerContent(NamedTuple):
    """What the daemon plugs in: routers and mounts for the passenger app, parts to start/stop."""

    routers: list[APIRouter]
    mounts: list[tuple[str, ASGIApp]]
    startables: list[Startable]
    store: ContentStore | None = None
    usage: UsageJournal | None = None


@dataclass
class ContentService:
    """The store/catalog/usage lifecycle: load the catalog, poll for installs, flush usage."""

    store: ContentStore
    catalog: Catalog
    usage: UsageJournal
    media: MediaServer | None
    poll_s: float = 2.0
    flush_s: float = 10.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Prepare the store, load the catalog, start the media server and the periodic work."""
        await asyncio.to_thread(self.store.prepare)
        await self.refresh()
        if self.media is not None:
            await self.media.start()
            self.catalog.set_media_port(self.media.port)
        self._tasks = [asyncio.create_task(self._every(self.poll_s, self.refresh), name="catalog"),
                       asyncio.create_task(self._every(self.flush_s, self.usage.flush), name="usage")]

    async def refresh(self) -> None:
        """Reload the catalog if the store's generation moved (an install by the CLI, say)."""
        changed = await asyncio.to_thread(self.catalog.read)
        if changed is not None:
            self.catalog.load(*changed)

    async def _every(self, period: float, fn: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
            except Exception:  # supervisor boundary: log, keep the service up
                log.exception("content: periodic %s failed", getattr(fn, "__name__", fn))

    async def stop(self) -> None:
        """Stop the periodic work and the media server, journal every open usage session."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.media is not None:
            await self.media.stop()
        try:
            await asyncio.wait_for(self.usage.flush(everything=True), 5.0)
        except Exception:  # the writer may already be gone: say so, do not hide the stop
            log.exception("content: final usage flush failed")
        self.catalog.close()


def build_passenger_content(settings: Settings, chain: AvionicsChain, writer: Writer,
                            reader_engine: Engine, policy: PolicyTable) -> PassengerContent:
    """Build every passenger content part from ``settings`` (see the module docstring)."""
    cs = settings.content
    if not cs.enabled:
        return PassengerContent([], [], [])

    def utc() -> tuple[float, str]:
        return chain.clock.utc(chain.store.now)

    store = ContentStore(settings.data_dir / "content", writer, reader_engine)
    catalog = Catalog(store, policy, lambda: chain.mode, lambda: utc()[0])
    usage = UsageJournal(writer, settings.aircraft_id, utc, idle_s=cs.usage_idle_s)
    files = MediaFiles(catalog, usage)
    media = None
    if cs.media_port is not None:
        media = MediaServer(files, cs.media_host or settings.passenger.host, cs.media_port,
                            per_client=cs.media_connections_per_client,
                            max_connections=cs.media_max_connections,
                            rate=cs.media_requests_per_s, burst=cs.media_burst,
                            keepalive_s=cs.keepalive_s, send_buffer=cs.media_send_buffer)
    info = FlightInfo(chain, policy, airport(cs.origin), airport(cs.destination),
                      period_s=cs.flight_push_s)
    for code in (cs.origin, cs.destination):
        if code and airport(code) is None:
            log.warning("content: airport %s is not in airports.toml; no map point / ETA", code)
    assets = PortalAssets(cs.vendor_dir)
    if not assets.vendor:
        log.warning("content: no portal vendor files in %s (make vendor): native HLS only, no "
                    "coastline on the map", cs.vendor_dir)
    feedback = Feedback(writer, reader_engine, settings.aircraft_id, utc)
    router = portal_router(chain, policy, catalog, info, feedback,
                           CaptiveState(cs.captive_accept_s), assets,
                           RateLimiter(cs.api_requests_per_s, cs.api_burst),
                           streams_per_client=cs.event_streams_per_client,
                           portal_url=cs.portal_url)
    service = ContentService(store, catalog, usage, media, poll_s=cs.catalog_poll_s)
    startables: Sequence[Startable] = (service, info)
    return PassengerContent([router], [("/media", MediaASGI(files))], list(startables), store,
                            usage)
