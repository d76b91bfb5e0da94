"""Two network namespaces joined by a veth pair, with rate, loss and outages (tests only).

``NetPair(tag)``: namespaces ``syA<tag>`` (the aircraft) and ``syR<tag>`` (the ground), devices
``vsa<tag>``/``vsr<tag>``, addresses 10.213.<k>.1 and .2 — which exist only inside these
namespaces. Rate: ``tc tbf`` on each side's egress. Loss: nftables ``numgen random`` drop on
input in each namespace (as TESTING.md says; dropping on output gives the sender EPERM).
Outages: the aircraft's device down (fails fast) or a silent ``drop`` policy (a fade).
Everything is removed by :meth:`cleanup` (deleting a namespace deletes its veth end).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*cmd: str, check: bool = True, stdin: str | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, input=stdin, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def netns_unavailable() -> str | None:
    """Why these tests cannot run here (not root, no ip/tc/nft), or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: iproute2, nftables)"
    return None


class NetPair:
    """The aircraft namespace ``a`` and the ground namespace ``r`` (see the module doc)."""

    def __init__(self, tag: str) -> None:
        k = zlib.crc32(f"{tag}:{os.getpid()}".encode()) % 200 + 20
        self.tag = tag
        self.a, self.r = f"syA{tag}", f"syR{tag}"
        self.dev_a, self.dev_r = f"vsa{tag}", f"vsr{tag}"
        self.addr_a, self.addr_r = f"10.213.{k}.1", f"10.213.{k}.2"
        self.created = False

    def setup(self, rate: str = "1mbit", loss_pct: int = 0) -> None:
        """Create both namespaces, the veth pair, addresses, tbf rate and nft loss."""
        self.cleanup()
        self.created = True
        for ns in (self.a, self.r):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", self.dev_a, "netns", self.a, "type", "veth", "peer", "name",
             self.dev_r, "netns", self.r)
        for ns, dev, addr in ((self.a, self.dev_a, self.addr_a), (self.r, self.dev_r, self.addr_r)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            if rate:
                _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                     "burst", "32kbit", "latency", "600ms")
            if loss_pct:
                _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=f"""
table inet synctest_loss {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname != "lo" numgen random mod 100 < {loss_pct} drop
  }}
}}
""")
        self.check()

    def check(self) -> None:
        """Refuse to go on unless each side's route to the other leaves through its own veth."""
        for ns, peer, dev in ((self.a, self.addr_r, self.dev_a), (self.r, self.addr_a, self.dev_r)):
            route = _run("ip", "-n", ns, "route", "get", peer)
            if f" dev {dev} " not in route:
                raise RuntimeError(f"{ns}: route to {peer} is {route!r}, not via {dev}")

    def link_down(self) -> None:
        """Cut: the aircraft's device down (connections fail at once)."""
        _run("ip", "-n", self.a, "link", "set", self.dev_a, "down")

    def link_up(self) -> None:
        """Restore after :meth:`link_down` (the route comes back with the device)."""
        _run("ip", "-n", self.a, "link", "set", self.dev_a, "up")
        self.check()

    def fade(self, on: bool) -> None:
        """Silent outage: every packet dropped on input in both namespaces (or no longer)."""
        for ns in (self.a, self.r):
            if on:
                _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin="""
table inet synctest_fade {
  chain input {
    type filter hook input priority -10; policy accept;
    iifname != "lo" drop
  }
}
""")
            else:
                _run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "synctest_fade",
                     check=False)

    def popen(self, side: str, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start ``python ARGS`` inside namespace ``side`` ("a" or "r").

        The process runs behind the namespace guard (:mod:`tests.sync.nsguard`); the returned
        PID is the Python process itself.
        """
        ns, peer, dev = ((self.a, self.addr_r, self.dev_a) if side == "a"
                         else (self.r, self.addr_a, self.dev_r))
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                 "tests.sync.nsguard", ns, peer, dev, "--", *args],
                                cwd=REPO, env=env, **kw)  # type: ignore[call-overload]

    def cleanup(self) -> None:
        """Delete both namespaces (and with them the veth pair and every rule)."""
        for ns in (self.a, self.r):
            _run("ip", "netns", "del", ns, check=False)
