"""A cabin network of namespaces (tests only): the server, the maintenance side, a stand-in world, phones.

``CabinLab(tag)``, addresses only inside the namespaces it creates (k from the tag and the PID):

- ``cnS<tag>`` the server: bridge ``pax0`` 10.k.0.1/16 (the access points' bridge: every phone's
  veth is a port of it), ``mnt0`` 10.151.k.1/24 (maintenance), ``up0`` 10.152.k.1/24 (uplink),
  IPv4 forwarding on;
- ``cnM<tag>`` the maintenance laptop: ``m0`` 10.151.k.2;
- ``cnW<tag>`` a stand-in for the rest of the world behind the server: ``w0`` 10.152.k.2, route to
  the phones via the server; :meth:`world_server` runs an HTTP server there that records hits;
- ``cnP<tag>x<i>`` phone i: ``eth0`` with MAC 02:cb:<k>:00:<i/256>:<i%256>, no address until
  :meth:`dhcp` (busybox ``udhcpc`` asking for option 114; its script sets the address and route and
  writes the lease's variables to a file); DNS via ``/etc/netns/<ns>/resolv.conf`` (``ip netns
  exec`` mounts it over /etc/resolv.conf), removed with the namespace.

Every command in a namespace runs behind a guard (:meth:`sh_guard`: ``ip netns identify`` of the
shell itself must name the namespace, and once a phone has an address the route to the portal must
leave through its own ``eth0``); Python processes behind :mod:`tests.sync.nsguard`. :meth:`cleanup`
deletes every namespace (and with them every veth and rule).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    ip route replace default via "$router" dev "$interface"
    env | grep -E '^(ip|mask|subnet|router|dns|lease|opt114|serverid|interface)=' > "$LEASE_OUT.tmp"
    mv "$LEASE_OUT.tmp" "$LEASE_OUT"
    ;;
esac
exit 0
"""


def run(*cmd: str, check: bool = True, stdin: str | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, input=stdin, check=False,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc {res.returncode}: {res.stderr.strip()}")
    return res


def lab_unavailable() -> str | None:
    """Why the cabin network tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("dnsmasq", "dnsmasq-base"),
                      ("busybox", "busybox"), ("curl", "curl")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: {pkg})"
    return None


class CabinLab:
    """The namespaces of the module docstring."""

    def __init__(self, tag: str, workdir: Path) -> None:
        self.k = zlib.crc32(f"{tag}:{os.getpid()}".encode()) % 130 + 20
        self.tag = tag
        self.workdir = workdir
        self.server, self.maint, self.world = f"cnS{tag}", f"cnM{tag}", f"cnW{tag}"
        self.pax_addr = f"10.{self.k}.0.1"  # in 10.k.0.0/16 (room for a surge of phones)
        self.pax_net = f"10.{self.k}.0.0/16"
        self.mnt_addr, self.maint_addr = f"10.151.{self.k}.1", f"10.151.{self.k}.2"
        self.up_addr, self.world_addr = f"10.152.{self.k}.1", f"10.152.{self.k}.2"
        self.phones: dict[int, str] = {}
        self.script = workdir / "udhcpc.sh"
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)

    # ------------------------------------------------------------------ namespaces
    def setup(self) -> None:
        self.cleanup()
        for ns in (self.server, self.maint, self.world):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        s = self.server
        run("ip", "-n", s, "link", "add", "pax0", "type", "bridge", "stp_state", "0")
        run("ip", "-n", s, "addr", "add", f"{self.pax_addr}/16", "dev", "pax0")
        run("ip", "-n", s, "link", "set", "pax0", "up")
        for dev, peer, ns, here, there in (("mnt0", "m0", self.maint, self.mnt_addr, self.maint_addr),
                                           ("up0", "w0", self.world, self.up_addr, self.world_addr)):
            run("ip", "-n", s, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", ns)
            run("ip", "-n", s, "addr", "add", f"{here}/24", "dev", dev)
            run("ip", "-n", ns, "addr", "add", f"{there}/24", "dev", peer)
            run("ip", "-n", s, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", peer, "up")
        run("ip", "-n", self.world, "route", "add", self.pax_net, "via", self.up_addr)
        run("ip", "netns", "exec", s, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.check(self.server, self.maint_addr, "mnt0")
        self.check(self.maint, self.mnt_addr, "m0")
        self.check(self.world, self.up_addr, "w0")

    def reboot_server(self) -> None:
        """The server's power cycle: every namespace rebuilt from nothing.

        The kernel's table, the bridge and every port are gone; the phones come back with the same
        MACs and must ask DHCP again.
        """
        run("ip", "netns", "del", self.server)
        for ns in (self.maint, self.world):
            run("ip", "netns", "del", ns, check=False)
        phones = dict(self.phones)
        for ns in phones.values():
            run("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.phones = {}
        self.setup()
        for i in phones:
            self.add_phone(i)

    def check(self, ns: str, addr: str, dev: str) -> None:
        """Refuse to go on unless ``ns`` exists and its route to ``addr`` leaves through ``dev``."""
        route = run("ip", "-n", ns, "route", "get", addr).stdout
        if f" dev {dev} " not in route:
            raise RuntimeError(f"{ns}: route to {addr} is {route!r}, not via {dev}")

    def mac(self, i: int) -> str:
        return f"02:cb:{self.k:02x}:00:{i // 256:02x}:{i % 256:02x}"

    def add_phone(self, i: int) -> str:
        ns = f"cnP{self.tag}x{i}"
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        port = f"cp{self.tag}x{i}"
        run("ip", "-n", self.server, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "address", self.mac(i), "netns", ns)
        run("ip", "-n", self.server, "link", "set", port, "master", "pax0", "up")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        self.phones[i] = ns
        return ns

    def cleanup(self) -> None:
        names = run("ip", "netns", "list", check=False).stdout.split()
        for ns in names:
            if ns in (self.server, self.maint, self.world) or ns.startswith(f"cnP{self.tag}x"):
                run("ip", "netns", "del", ns, check=False)
                shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.phones = {}

    # ------------------------------------------------------------------ guarded commands
    def sh_guard(self, ns: str, route_to: str | None = None, dev: str = "eth0") -> list[str]:
        """``ip netns exec NS sh -c GUARD`` prefix: the shell checks where it is, then execs."""
        check = f'[ "$(ip netns identify $$)" = "{ns}" ] || {{ echo "guard: not in {ns}" >&2; exit 97; }}; '
        if route_to:
            check += (f'ip route get {route_to} | grep -q " dev {dev} " || '
                      f'{{ echo "guard: route to {route_to} not via {dev}" >&2; exit 97; }}; ')
        return ["ip", "netns", "exec", ns, "sh", "-c", check + 'exec "$@"', "guard"]

    def in_ns(self, ns: str, *argv: str, route_to: str | None = None, dev: str = "eth0",
              timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess[str]:
        res = run(*self.sh_guard(ns, route_to, dev), *argv, check=False, timeout=timeout)
        if res.returncode == 97:
            raise RuntimeError(f"namespace guard refused: {res.stderr}")
        if check and res.returncode != 0:
            raise RuntimeError(f"{argv}: rc {res.returncode}: {res.stderr}")
        return res

    def dhcp(self, i: int, timeout: float = 30) -> dict[str, str]:
        """Udhcpc in phone i (asking for option 114): the lease's variables; DNS set from it."""
        ns = self.phones[i]
        out = self.workdir / f"lease-{i}.env"
        out.unlink(missing_ok=True)
        res = run(*self.sh_guard(ns), "env", f"LEASE_OUT={out}", "busybox", "udhcpc", "-i", "eth0",
                  "-f", "-q", "-n", "-t", "8", "-T", "1", "-A", "1", "-O", "114",
                  "-s", str(self.script), check=False, timeout=timeout)
        if not out.exists():
            raise RuntimeError(f"phone {i}: no lease (rc {res.returncode}): {res.stderr[-800:]}")
        env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        etc = Path(f"/etc/netns/{ns}")
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("".join(f"nameserver {d}\n" for d in env["dns"].split()))
        self.check(ns, self.pax_addr, "eth0")
        return env

    def curl(self, i: int, url: str, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Curl in phone i (after its lease); ``-w`` prints code and redirect on the last line."""
        return self.in_ns(self.phones[i], "curl", "-sS", "-m", str(timeout), "-o", "/dev/stdout",
                          "-w", "\n%{http_code} %{redirect_url} %{content_type}", *args, url,
                          route_to=self.pax_addr, timeout=timeout + 10)

    def python_in(self, ns: str, peer: str, dev: str, args: list[str],
                  **kw: object) -> subprocess.Popen[bytes]:
        """``python ARGS`` in ``ns`` behind :mod:`tests.sync.nsguard` (the PID is Python's)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m",
                                 "tests.sync.nsguard", ns, peer, dev, "--", *args],
                                cwd=kw.pop("cwd", REPO), env=env, **kw)  # type: ignore[call-overload]
