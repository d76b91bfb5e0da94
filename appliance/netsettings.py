"""Settings of the server's side of the cabin network (``[cabinnet]``, read by :mod:`appliance.settings`).

Kept apart from :mod:`appliance.settings` only for size; :class:`~appliance.settings.Settings` holds it
as ``cabinnet`` (environment ``APPLIANCE_CABINNET__...``). Off by default (a laptop's ``make run``); the
image turns it on (``systemd/appliance.toml``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PROBE_NAMES", "CabinNetSettings"]

#: The names the phones' captive-portal probes ask for (Apple, Android, Windows, Firefox): DNS
#: answers them with the portal's address, held or not, so the server answers each probe itself.
PROBE_NAMES = ("captive.apple.com", "www.apple.com", "connectivitycheck.gstatic.com",
               "connectivitycheck.android.com", "clients3.google.com", "www.google.com",
               "www.msftconnecttest.com", "www.msftncsi.com", "detectportal.firefox.com")


class CabinNetSettings(BaseModel):
    """The passenger network: DHCP and DNS (dnsmasq), the gate (nftables), the HTTPS captive API.

    ``passenger_if`` carries the phones (the access points' bridge), ``passenger_address`` is the
    server's address on it (CIDR; the portal's address, the phones' router and DNS server);
    ``dhcp_range`` the first and last address handed out (inside that network), each lease lasting
    ``lease_s`` seconds. ``maintenance_if`` is the only interface from which the admin port (and with
    it the hangar intake) is reachable, whatever address it binds. ``portal_name`` resolves to the
    portal for every phone; ``probe_names`` too; while a phone is held, every name does (a second
    dnsmasq on ``held_dns_port``, to which the gate redirects held phones' DNS). ``upstream_dns``:
    servers for open phones' other names (none: only the names above answer). The RFC 8908 API is
    served over HTTPS on ``https_port`` with ``tls_cert``/``tls_key`` (PEM; none: no HTTPS port, and
    DHCP option 114 is not sent). ``data_dir``/cabinnet holds the lease file; gate changes are
    journaled (kind ``gate``) and rebuilt from the journal at start. Leases are read every
    ``poll_s`` seconds. ``dnsmasq``/``nft``: the programs. ``gate_socket``: the Unix socket of the
    privileged helper (``appliance cabinnet-helper``, ``appliance-cabinnet.service``), which then
    runs dnsmasq and nft for the service (which then needs no capability); none: the service runs
    them itself (it needs CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE: the namespace tests).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    passenger_if: str = Field("pax0", min_length=1, max_length=15)
    passenger_address: str = "10.40.0.1/22"
    dhcp_range: tuple[str, str] = ("10.40.0.10", "10.40.3.250")
    lease_s: int = Field(3600, ge=120)
    maintenance_if: str = Field("mnt0", min_length=1, max_length=15)
    portal_name: str = Field("portal.cabin", pattern=r"^[a-z0-9.-]+$")
    probe_names: tuple[str, ...] = PROBE_NAMES
    upstream_dns: tuple[str, ...] = ()
    held_dns_port: int = Field(5353, ge=1, le=65535)
    https_port: int = Field(8443, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    venue_info_url: str | None = None
    poll_s: float = Field(1.0, gt=0)
    table: str = Field("appliance", pattern=r"^[a-z_]+$")
    dnsmasq: str = "/usr/sbin/dnsmasq"
    nft: str = "/usr/sbin/nft"
    gate_socket: Path | None = None

    @model_validator(mode="after")
    def _addresses(self) -> CabinNetSettings:
        net = ipaddress.ip_interface(self.passenger_address).network
        for a in self.dhcp_range:
            if ipaddress.ip_address(a) not in net:
                raise ValueError(f"dhcp_range address {a} is not in {net}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        if self.passenger_if == self.maintenance_if:
            raise ValueError("the passenger and maintenance interfaces must differ")
        return self

    @property
    def address(self) -> str:
        """The server's passenger address without the prefix length."""
        return str(ipaddress.ip_interface(self.passenger_address).ip)

    @property
    def captive_api_url(self) -> str | None:
        """The RFC 8908 API's URL (DHCP option 114), or None without TLS."""
        if self.tls_cert is None:
            return None
        return f"https://{self.portal_name}:{self.https_port}/api/captive"
