"""Wiring for the daemon: ``build_cabin_network(settings, chain, writer, reader, auth)``.

Returns ``(router, service)``: include the router in ``AdminDeps.routers``; ``await
service.start()`` after the writer started, ``await service.stop()`` before it stops;
``service.status`` is the BITE function (``bite.add("cabin_network", service.status)``). With
``cabin_network.enabled`` false the service has no access points and ``status()`` is green.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Engine

from ..modes.engine import AvionicsChain
from ..modes.policy import Mode
from ..settings import AccessPointSettings, CabinNetworkSettings, Settings
from ..store.writer import Writer
from ..web.auth import AdminAuth
from .admin import make_router
from .device import SimDevice
from .driver import AccessPoint
from .http_driver import HttpJsonAccessPoint
from .manager import CabinNetwork, Device
from .model import ApConfig, ConfigSpec, Ssid
from .sim_driver import SimulatedAccessPoint
from .store import JobStore

__all__ = ["build_cabin_network", "desired_specs", "make_device"]


def desired_specs(cfg: CabinNetworkSettings) -> dict[Mode, ConfigSpec]:
    """The desired configuration of each mode the settings name."""
    return {Mode(m): ConfigSpec.from_json(w.model_dump(exclude_none=True))
            for m, w in cfg.desired.items()}


def make_device(ap: AccessPointSettings, cfg: CabinNetworkSettings) -> Device:
    """The run-time device of one configured access point, with its driver (explicitly chosen)."""
    password = ap.password.get_secret_value()
    if ap.driver == "http-json":
        def http() -> AccessPoint:
            return HttpJsonAccessPoint(ap.name, ap.url, ap.user, password,
                                       connect_timeout_s=cfg.connect_timeout_s,
                                       request_timeout_s=cfg.request_timeout_s)
        return Device(ap.name, http(), http, ap.url)
    sim = SimDevice(ap.name, ApConfig(ssids=(Ssid("CREW"), Ssid("PAX", False))), user=ap.user,
                    password=password)

    def twin() -> AccessPoint:
        return SimulatedAccessPoint(ap.name, sim, ap.user, password)
    return Device(ap.name, twin(), twin, f"sim:{ap.name}", background=sim.run)


def build_cabin_network(settings: Settings, chain: AvionicsChain, writer: Writer, reader: Engine,
                        auth: AdminAuth) -> tuple[APIRouter, CabinNetwork]:
    """The admin router and the service, wired to the chain's mode and the journal database."""
    cfg = settings.cabin_network
    store = JobStore(writer, reader, settings.aircraft_id,
                     utc=lambda: chain.clock.utc(chain.store.now))
    devices = [make_device(ap, cfg) for ap in cfg.access_points] if cfg.enabled else []
    service = CabinNetwork(cfg, devices, store, desired_specs(cfg), chain.mode,
                           listeners=chain.listeners, initial_mode=lambda: chain.mode)
    return make_router(service, auth), service
