"""The gate's nftables ruleset, rendered from the settings and the mode's policy (pure text).

One table (``inet <table>``) holds everything; :func:`ruleset` replaces it whole, in one atomic
``nft -f`` transaction (the old table is deleted in the same transaction, so there is no moment
without a gate). Its parts:

- sets ``held`` and ``open`` of ``ether_addr . ipv4_addr`` (MAC and IP of a phone) with timeouts:
  ``held`` lists the phones with a lease that have not accepted (for the record and BITE; any
  phone not in ``open`` is held, leased or not), ``open`` the phones that accepted;
- ``prerouting`` (NAT): a held phone's DNS goes to the held resolver (every name is the portal)
  and its HTTP to any address goes to the portal; anyone's HTTP to the portal's address on port 80
  goes to the passenger port;
- ``input``: the admin port (and with it the hangar intake) only from the maintenance interface
  (and loopback); from the passenger interface only DHCP, DNS and the portal's ports (passenger,
  HTTPS captive API, media) while the policy says "portal" — "closed" rejects those;
- ``forward``: from the passenger interface only phones in ``open`` (and only while the policy
  says "portal"); to it only replies.

IPv4 only: IPv6 from phones is limited to neighbour discovery (no RA, no forwarding).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..modes.policy import GateScope

__all__ = ["GatePorts", "element", "elements_cmd", "ruleset"]


@dataclass(frozen=True, slots=True)
class GatePorts:
    """The TCP ports of the gate: passenger (HTTP), captive API (HTTPS), media, admin, held DNS."""

    passenger: int
    admin: int
    https: int | None = None
    media: int | None = None
    held_dns: int = 5353

    def portal(self) -> list[int]:
        """The ports a phone may reach on the server (the portal's)."""
        return sorted({p for p in (self.passenger, self.https, self.media) if p})


def element(mac: str, ip: str, timeout_s: float | None = None) -> str:
    """One set element, ``MAC . IP [timeout Ns]`` (timeout at least 1 s)."""
    t = "" if timeout_s is None else f" timeout {max(1, int(timeout_s))}s"
    return f"{mac} . {ip}{t}"


def elements_cmd(op: str, table: str, set_name: str, elems: Iterable[str]) -> str:
    """An ``add``/``delete`` element command for ``elems`` (empty string if there are none)."""
    items = list(elems)
    if not items:
        return ""
    return f"{op} element inet {table} {set_name} {{ {', '.join(items)} }}\n"


def _ports(ports: list[int]) -> str:
    return "{ " + ", ".join(str(p) for p in ports) + " }"


def ruleset(table: str, pax: str, maint: str, address: str, ports: GatePorts, gate: GateScope,
            held: Iterable[str] = (), opened: Iterable[str] = (), replace: bool = True) -> str:
    """The whole table as ``nft -f`` input (see the module docstring).

    ``held``/``opened``: set elements (:func:`element`) to load with it; ``replace``: delete the
    table first, in the same transaction.
    """
    portal = _ports(ports.portal())
    pre_held = "" if gate == "closed" else f"""
    meta l4proto {{ tcp, udp }} th dport 53 redirect to :{ports.held_dns}
    tcp dport 80 redirect to :{ports.passenger}"""
    portal_verdict = "accept" if gate == "portal" else "reject with tcp reset"
    fwd_open = "ether saddr . ip saddr @open accept" if gate == "portal" else ""
    head = f"add table inet {table}\ndelete table inet {table}\n" if replace else ""
    text = f"""{head}table inet {table} {{
  set held {{ type ether_addr . ipv4_addr; flags timeout; }}
  set open {{ type ether_addr . ipv4_addr; flags timeout; }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname "{pax}" meta nfproto ipv4 jump pax_nat
  }}
  chain pax_nat {{
    ip daddr {address} tcp dport 80 redirect to :{ports.passenger}
    ether saddr . ip saddr @open return{pre_held}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "lo" accept
    tcp dport {ports.admin} iifname != "{maint}" drop
    iifname "{pax}" jump pax_in
  }}
  chain pax_in {{
    ct state established,related accept
    udp dport 67 accept
    meta l4proto {{ tcp, udp }} th dport {{ 53, {ports.held_dns} }} accept
    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept
    tcp dport {portal} {portal_verdict}
    meta l4proto tcp reject with tcp reset
    drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{pax}" jump pax_fwd
    oifname "{pax}" ct state established,related accept
    oifname "{pax}" drop
  }}
  chain pax_fwd {{
    {fwd_open}
    meta l4proto tcp reject with tcp reset
    drop
  }}
}}
"""
    text += elements_cmd("add", table, "held", held)
    text += elements_cmd("add", table, "open", opened)
    return text
