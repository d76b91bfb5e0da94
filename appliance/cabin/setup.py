"""The cabin network's parts from the settings: each mode's desired configuration, each device.

The daemon (``appliance.daemon.build``) builds the :class:`~appliance.cabin.manager.CabinNetwork`
from these; with ``cabin_network.enabled`` false it has no access points and its status is green.
"""

from __future__ import annotations

from ..modes.policy import Mode
from ..settings import AccessPointSettings, CabinNetworkSettings
from .device import SimDevice
from .driver import AccessPoint
from .http_driver import HttpJsonAccessPoint
from .manager import Device
from .model import ApConfig, ConfigSpec, Ssid
from .sim_driver import SimulatedAccessPoint

__all__ = ["desired_specs", "make_device"]


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
