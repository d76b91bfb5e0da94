"""dnsmasq's DHCP lease file: one lease a line, ``EXPIRY MAC IP HOSTNAME CLIENT-ID``.

``EXPIRY`` is epoch seconds (0: infinite), ``HOSTNAME`` and ``CLIENT-ID`` are ``*`` when unknown.
Lines that are not IPv4 leases (``duid`` lines, IPv6 leases, garbage) are skipped and counted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lease", "parse_leases", "read_leases"]

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class Lease:
    """One DHCP lease: MAC (lower case), IPv4 address, expiry (epoch s; inf if infinite), host name."""

    mac: str
    ip: str
    expiry: float
    hostname: str | None = None


def parse_leases(text: str) -> tuple[dict[str, Lease], int]:
    """The leases of a lease file's text by MAC (the newest line wins), and the lines skipped."""
    out: dict[str, Lease] = {}
    skipped = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit() or not _MAC.match(parts[1].lower()):
            skipped += bool(line.strip())
            continue
        try:
            ip = ipaddress.IPv4Address(parts[2])
        except ValueError:
            skipped += 1
            continue
        expiry = float(parts[0]) or float("inf")
        host = parts[3] if len(parts) > 3 and parts[3] != "*" else None
        out[parts[1].lower()] = Lease(parts[1].lower(), str(ip), expiry, host)
    return out, skipped


def read_leases(path: Path) -> tuple[dict[str, Lease], int]:
    """:func:`parse_leases` of the file at ``path`` (none yet: no leases)."""
    try:
        return parse_leases(path.read_text(errors="replace"))
    except FileNotFoundError:
        return {}, 0
