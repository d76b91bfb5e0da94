"""Builders of the daemon's parts from the settings (the composition root's construction half).

Each function builds one feature with its collaborators and the routes that expose it, and starts
nothing: the daemon (:mod:`appliance.daemon.service`) starts what they return, in order, on one
``AsyncExitStack``. Only the daemon package knows both the features and the web edge.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection, Engine
from starlette.types import ASGIApp

from ..avionics.chain import AvionicsChain
from ..avionics.summaries import FlightSummaries, SummaryConfig
from ..cabin.manager import CabinNetwork
from ..cabin.setup import desired_specs, make_device
from ..cabin.store import JobStore
from ..content.bundle_apply import ContentActivator, StoreLike
from ..content.catalog import Catalog
from ..content.fairness import RateLimiter
from ..content.feedback import Feedback
from ..content.media import MediaFiles
from ..content.mediaserver import MediaServer
from ..content.menu import MenuActivator
from ..content.service import ContentService
from ..content.store import ContentStore
from ..content.usage import UsageJournal
from ..intake.activators import SoftwareActivator
from ..intake.bundle import Trust, Verified
from ..intake.keyset import keys_activator
from ..intake.service import Activator, IntakeConfig, IntakeService
from ..intake.slots import SoftwareSlots
from ..modes.policy import PolicyTable
from ..settings import Settings
from ..store.writer import Writer
from ..web.admin.auth import AdminAuth
from ..web.admin.cabin import make_router as cabin_router
from ..web.admin.intake import make_router as intake_router
from ..web.passenger.flightinfo import FlightInfo, airport
from ..web.passenger.media import MediaASGI
from ..web.passenger.portal import Captive, CaptiveState, PortalAssets, portal_router
from ..web.passenger.track import PassengerTrack, track_router
from .cabinnet import portal_urls

__all__ = ["PassengerContent", "build_cabin_network", "build_intake", "build_passenger_content",
           "content_activator"]

log = logging.getLogger(__name__)


@dataclass
class PassengerContent:
    """The passenger content parts: routers and mounts for the passenger app, services to start.

    ``service`` (store, catalog, usage, media server) and ``flight_info`` are None when content
    is disabled in the settings.
    """

    routers: list[APIRouter] = field(default_factory=list)
    mounts: list[tuple[str, ASGIApp]] = field(default_factory=list)
    service: ContentService | None = None
    flight_info: FlightInfo | None = None

    @property
    def store(self) -> ContentStore | None:
        """The content store (the intake installs content bundles into it), if enabled."""
        return None if self.service is None else self.service.store

    def quiet(self) -> str | None:
        """Why content activation should wait now (passengers watching), or None."""
        if self.service is None:
            return None
        usage = self.service.usage
        busy = sum(1 for x in usage.sessions.values() if usage.clock() - x.last < 60)
        return f"{busy} passenger(s) playing content" if busy else None


def build_passenger_content(settings: Settings, chain: AvionicsChain, writer: Writer,
                            reader_engine: Engine, policy: PolicyTable,
                            captive: Captive | None = None,
                            track_agent: FlightSummaries | None = None) -> PassengerContent:
    """The content store, catalog, usage journal, media server, flight info, survey and portal.

    ``captive``: who accepted the portal (the cabin network's gate; default: in memory per address).
    ``track_agent``: the summaries agent whose track the moving map draws (None: the map's own,
    sampled the same way).
    """
    cs = settings.content
    if not cs.enabled:
        return PassengerContent()
    store = ContentStore(settings.data_dir / "content", writer, reader_engine)
    catalog = Catalog(store, policy, lambda: chain.mode, lambda: chain.utc()[0])
    usage = UsageJournal(writer, settings.aircraft_id, chain.utc, idle_s=cs.usage_idle_s)
    files = MediaFiles(catalog, usage)
    media = None
    if cs.media_port is not None:
        media = MediaServer(files, cs.media_host or settings.passenger.host, cs.media_port,
                            per_client=cs.media_connections_per_client,
                            max_connections=cs.media_max_connections,
                            rate=cs.media_requests_per_s, burst=cs.media_burst,
                            keepalive_s=cs.keepalive_s, head_timeout_s=cs.media_head_timeout_s,
                            send_buffer=cs.media_send_buffer)
    sy = settings.sync
    track = PassengerTrack(chain, track_agent, SummaryConfig(
        sy.sample_period_s, sy.track_period_s, sy.track_turn_deg, sy.track_points_per_record))
    info = FlightInfo(chain, policy, airport(cs.origin), airport(cs.destination),
                      period_s=cs.flight_push_s, track=track)
    for code in (cs.origin, cs.destination):
        if code and airport(code) is None:
            log.warning("content: airport %s is not in airports.toml; no map point / ETA", code)
    assets = PortalAssets(cs.vendor_dir, media_port=lambda: catalog.media_port)
    if not assets.vendor:
        log.warning("content: no portal vendor files in %s (make vendor): native HLS only, no "
                    "coastline on the map", cs.vendor_dir)
    feedback = Feedback(writer, reader_engine, settings.aircraft_id, chain.utc)
    redirect, venue = portal_urls(settings)
    api_budget = RateLimiter(cs.api_requests_per_s, cs.api_burst)
    router = portal_router(chain, policy, catalog, info, feedback,
                           captive or CaptiveState(cs.captive_accept_s), assets, api_budget,
                           streams_per_client=cs.event_streams_per_client,
                           portal_url=cs.portal_url, redirect_url=redirect, venue_info_url=venue,
                           captive_api_url=settings.cabinnet.captive_api_url
                           if settings.cabinnet.enabled else None)
    service = ContentService(store, catalog, usage, media, poll_s=cs.catalog_poll_s)
    return PassengerContent([router, track_router(track, api_budget)],
                            [("/media", MediaASGI(files))], service, info)


def build_cabin_network(settings: Settings, chain: AvionicsChain, writer: Writer, reader: Engine,
                        auth: AdminAuth) -> tuple[APIRouter, CabinNetwork]:
    """The cabin network service, wired to the flight state and the journal, and its admin routes."""
    cfg = settings.cabin_network
    store = JobStore(writer, reader, settings.aircraft_id, utc=chain.utc)
    devices = [make_device(ap, cfg) for ap in cfg.access_points] if cfg.enabled else []
    service = CabinNetwork(cfg, devices, store, desired_specs(cfg), chain.mode, flight=chain)
    return cabin_router(service, auth), service


def content_activator(store: StoreLike) -> Activator:
    """The content activator over the content store (one catalog transaction per bundle)."""
    act = ContentActivator(store)

    async def activate(staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        titles = await act.activate(staged, sorted(v.meta.files), extra)
        return {"titles": titles}
    return activate


def build_intake(settings: Settings, chain: AvionicsChain, writer: Writer, reader: Engine,
                 content_store: StoreLike | None, auth: AdminAuth,
                 quiet: Callable[[], str | None] | None = None,
                 ) -> tuple[APIRouter, IntakeService]:
    """The hangar intake service and its admin routes.

    ``await service.start()`` after the writer started (and after the content store's
    ``prepare``), ``await service.stop()`` at the end; subscribe ``service.on_event`` to the
    flight state. Software activation hands the bundle to the privileged updater (a request file
    that ``appliance-update.path`` watches); the slots under ``intake.software_root`` are read only.
    """
    cfg = settings.intake
    root = cfg.staging_dir or settings.data_dir / "intake"
    trust = Trust.from_hex({k: (r.keys, r.threshold) for k, r in cfg.roles.items()})
    slots = SoftwareSlots(cfg.software_root, root / "software" / "reports")
    request = root / "software" / "request.json"
    records: list[IntakeService] = []
    soft = SoftwareActivator(request, writer,
                             lambda bid: records[0].records.row(bid).envelope)
    activators: dict[str, Activator] = {"software": soft}
    if content_store is not None:
        activators["content"] = content_activator(content_store)
    activators["menu"] = MenuActivator(writer)
    service: IntakeService
    activators["keys"] = keys_activator(writer, lambda: service.trust_in_force())
    service = IntakeService(
        IntakeConfig(root, settings.aircraft_id, cfg.max_bundle_bytes, cfg.chunk_bytes,
                     cfg.free_margin_bytes, cfg.quiet_wait_s,
                     journal_reserve_bytes=cfg.journal_reserve_bytes,
                     idle_timeout_s=cfg.idle_timeout_s),
        trust, writer, reader, lambda: chain.mode, PolicyTable.default(), chain.utc, activators,
        quiet=(quiet or (lambda: None)) if cfg.quiet != "none" else (lambda: None), slots=slots,
        update_request=request)
    records.append(service)
    return intake_router(service, auth), service
