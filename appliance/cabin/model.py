"""Values of the cabin network: an access point's configuration and status, desired configurations.

All are frozen dataclasses with ``to_json()`` / ``from_json()`` (plain dicts, the HTTP JSON API's
shapes); ``from_json`` raises ValueError on anything malformed.

- :class:`ApConfig` the whole running configuration: radio on/off, channel (IEEE channel number),
  transmit power (dBm), SSIDs (name, enabled, VLAN), management ACL (CIDRs allowed to manage it);
- :class:`ConfigSpec` a *partial* configuration (what a mode or an admin wants): only the fields
  it names are compared and applied; SSIDs not named are left alone;
- :class:`DeviceStatus` what a poll returns (running configuration, clients, errors, boot id,
  pending confirm-or-revert change, tags of recent tagged commands).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["CHANNELS", "ApConfig", "ConfigSpec", "DeviceStatus", "Pending", "Ssid"]

#: Channels the access points support: 2.4 GHz 1-13, 5 GHz UNII-1..3.
CHANNELS = frozenset([*range(1, 14), *range(36, 65, 4), *range(100, 145, 4), *range(149, 166, 4)])
MAX_SSIDS = 8


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _check_channel(ch: Any) -> int:
    if not isinstance(ch, int) or isinstance(ch, bool) or ch not in CHANNELS:
        raise ValueError(f"unsupported channel {ch!r}")
    return ch


def _check_power(p: Any) -> int:
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= 30:
        raise ValueError(f"tx_power_dbm {p!r} not in 0..30")
    return p


def _check_cidrs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("mgmt_allow must be a non-empty list of CIDRs")
    return tuple(str(ipaddress.ip_network(str(c), strict=False)) for c in v)


def _check_ssid_name(name: Any) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        raise ValueError(f"bad SSID name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Ssid:
    """One SSID: name (1-32 chars), whether it is broadcast, VLAN id (0 = untagged)."""

    name: str
    enabled: bool = True
    vlan: int = 0


@dataclass(frozen=True, slots=True)
class ApConfig:
    """An access point's whole configuration (see the module doc for units)."""

    radio_on: bool = True
    channel: int = 36
    tx_power_dbm: int = 12
    ssids: tuple[Ssid, ...] = ()
    mgmt_allow: tuple[str, ...] = ("127.0.0.0/8",)

    def to_json(self) -> dict[str, Any]:
        """The API's shape: ``{"radio_on", "channel", "tx_power_dbm", "ssids": [...], "mgmt_allow"}``."""
        return {"radio_on": self.radio_on, "channel": self.channel, "tx_power_dbm": self.tx_power_dbm,
                "ssids": [{"name": s.name, "enabled": s.enabled, "vlan": s.vlan} for s in self.ssids],
                "mgmt_allow": list(self.mgmt_allow)}

    @classmethod
    def from_json(cls, d: Any) -> ApConfig:
        """Parse and validate; raises ValueError (unknown keys too)."""
        if not isinstance(d, dict):
            raise ValueError("configuration must be an object")
        extra = set(d) - {"radio_on", "channel", "tx_power_dbm", "ssids", "mgmt_allow"}
        if extra:
            raise ValueError(f"unknown configuration keys {sorted(extra)}")
        try:
            ssids = tuple(Ssid(_check_ssid_name(s["name"]), bool(s.get("enabled", True)),
                               int(s.get("vlan", 0))) for s in d.get("ssids", []))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"bad ssids: {e}") from e
        if len(ssids) > MAX_SSIDS or len({s.name for s in ssids}) != len(ssids):
            raise ValueError("at most 8 SSIDs, names unique")
        radio = d.get("radio_on", True)
        if not isinstance(radio, bool):
            raise ValueError("radio_on must be true or false")
        return cls(radio, _check_channel(d.get("channel", 36)),
                   _check_power(d.get("tx_power_dbm", 12)), ssids,
                   _check_cidrs(d.get("mgmt_allow", ["127.0.0.0/8"])))

    def digest(self) -> str:
        """A short hash (12 hex digits) of the configuration."""
        return _digest(self.to_json())

    def ssid_states(self) -> dict[str, bool]:
        """SSID name -> enabled."""
        return {s.name: s.enabled for s in self.ssids}


@dataclass(frozen=True, slots=True)
class ConfigSpec:
    """A partial configuration: None (or no SSID entry) means "whatever the device has"."""

    radio_on: bool | None = None
    channel: int | None = None
    tx_power_dbm: int | None = None
    #: (SSID name, enabled), in order; SSIDs missing on the device are added (VLAN 0).
    ssids: tuple[tuple[str, bool], ...] = ()
    mgmt_allow: tuple[str, ...] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ConfigSpec:
        """Parse ``{"radio_on"?, "channel"?, "tx_power_dbm"?, "ssids"?: {name: bool}, "mgmt_allow"?}``.

        Raises ValueError on unknown keys or bad values.
        """
        extra = set(d) - {"radio_on", "channel", "tx_power_dbm", "ssids", "mgmt_allow"}
        if extra:
            raise ValueError(f"unknown configuration keys {sorted(extra)}")
        radio = d.get("radio_on")
        if radio is not None and not isinstance(radio, bool):
            raise ValueError("radio_on must be true or false")
        ch = d.get("channel")
        pw = d.get("tx_power_dbm")
        ssids = d.get("ssids") or {}
        if not isinstance(ssids, Mapping) or len(ssids) > MAX_SSIDS:
            raise ValueError("ssids must map at most 8 names to true/false")
        allow = d.get("mgmt_allow")
        return cls(radio, None if ch is None else _check_channel(ch),
                   None if pw is None else _check_power(pw),
                   tuple((_check_ssid_name(k), bool(v)) for k, v in ssids.items()),
                   None if allow is None else _check_cidrs(allow))

    def to_json(self) -> dict[str, Any]:
        """The shape :meth:`from_json` reads, without the fields left open."""
        out: dict[str, Any] = {}
        for k in ("radio_on", "channel", "tx_power_dbm"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        if self.ssids:
            out["ssids"] = dict(self.ssids)
        if self.mgmt_allow is not None:
            out["mgmt_allow"] = list(self.mgmt_allow)
        return out

    def digest(self) -> str:
        """A short hash (12 hex digits) of the spec."""
        return _digest(self.to_json())

    def apply_to(self, cfg: ApConfig) -> ApConfig:
        """``cfg`` with this spec's fields set."""
        out = cfg
        if self.radio_on is not None:
            out = replace(out, radio_on=self.radio_on)
        if self.channel is not None:
            out = replace(out, channel=self.channel)
        if self.tx_power_dbm is not None:
            out = replace(out, tx_power_dbm=self.tx_power_dbm)
        if self.mgmt_allow is not None:
            out = replace(out, mgmt_allow=self.mgmt_allow)
        if self.ssids:
            want = dict(self.ssids)
            ssids = [replace(s, enabled=want.pop(s.name)) if s.name in want else s for s in out.ssids]
            ssids += [Ssid(name, enabled) for name, enabled in want.items()]
            out = replace(out, ssids=tuple(ssids))
        return out

    def diff(self, cfg: ApConfig) -> dict[str, tuple[Any, Any]]:
        """Fields where ``cfg`` differs from this spec: ``{field: (actual, wanted)}`` (empty = matches)."""
        out: dict[str, tuple[Any, Any]] = {}
        for k in ("radio_on", "channel", "tx_power_dbm", "mgmt_allow"):
            want = getattr(self, k)
            if want is not None and getattr(cfg, k) != want:
                out[k] = (getattr(cfg, k), want)
        have = cfg.ssid_states()
        for name, enabled in self.ssids:
            if have.get(name) != enabled:
                out[f"ssid:{name}"] = (have.get(name), enabled)
        return out

    def matches(self, cfg: ApConfig) -> bool:
        """True if ``cfg`` has every field this spec names."""
        return not self.diff(cfg)


@dataclass(frozen=True, slots=True)
class Pending:
    """A committed change waiting for confirmation: its tag and the seconds left before rollback."""

    tag: str
    rollback_in_s: float


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One poll's answer. ``uptime_s`` in s; ``errors`` a counter since boot; ``clients`` associated."""

    model: str
    firmware: str
    boot_id: str
    uptime_s: float
    ready: bool
    config: ApConfig
    config_rev: int
    config_tag: str | None
    pending: Pending | None
    clients: int
    errors: int
    recent_tags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The API's shape of the status (``config`` nested as in :meth:`ApConfig.to_json`)."""
        return {"model": self.model, "firmware": self.firmware, "boot_id": self.boot_id,
                "uptime_s": round(self.uptime_s, 3), "ready": self.ready,
                "config": self.config.to_json(), "config_rev": self.config_rev,
                "config_tag": self.config_tag,
                "pending": None if self.pending is None else {
                    "tag": self.pending.tag, "rollback_in_s": round(self.pending.rollback_in_s, 3)},
                "clients": self.clients, "errors": self.errors, "recent_tags": list(self.recent_tags)}

    @classmethod
    def from_json(cls, d: Any) -> DeviceStatus:
        """Parse a status answer; raises ValueError if a field is missing or malformed."""
        try:
            p = d["pending"]
            return cls(str(d["model"]), str(d["firmware"]), str(d["boot_id"]), float(d["uptime_s"]),
                       bool(d["ready"]), ApConfig.from_json(d["config"]), int(d["config_rev"]),
                       None if d["config_tag"] is None else str(d["config_tag"]),
                       None if p is None else Pending(str(p["tag"]), float(p["rollback_in_s"])),
                       int(d["clients"]), int(d["errors"]),
                       tuple(str(t) for t in d.get("recent_tags", ())))
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed status: {e!r}") from e
