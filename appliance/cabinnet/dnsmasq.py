"""The two dnsmasq instances of the passenger network, configured from the settings and supervised.

- ``main``: DHCP on the passenger interface (range, lease time, router and DNS server = the server,
  option 114 = the RFC 8908 API's URL, RFC 8910) and DNS for every phone: the portal's name and the
  probes' names are the portal's address; other names go to ``upstream_dns`` (none: refused).
- ``held``: DNS only, on ``held_dns_port``: every name is the portal's address. The gate redirects
  held phones' DNS here (so a phone that has not accepted finds the portal whatever it asks).

Both always answer ``dns.msftncsi.com`` with Microsoft's NCSI address (Windows checks it by DNS),
and never give an IPv6 address (``--filter-AAAA``: the cabin is IPv4; an AAAA query for the
names above is refused, A answers). DHCP offers without pinging the address first (``--no-ping``: dnsmasq's
ping waits about 3 s per new phone, serially; every phone on the cabin takes DHCP, and the gate
opens by MAC and address, so a phone squatting an address gains nothing).
:class:`Supervised` runs one instance in the foreground and restarts it (after ``restart_s``) when
it exits; its exits are counted and its last stderr line kept for BITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from ..netsettings import CabinNetSettings

__all__ = ["NCSI_ADDRESS", "Supervised", "held_args", "main_args"]

log = logging.getLogger(__name__)
#: What Windows' NCSI expects ``dns.msftncsi.com`` to resolve to.
NCSI_ADDRESS = "131.107.255.255"


def _common(s: CabinNetSettings) -> list[str]:
    return ["--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--pid-file=",
            f"--interface={s.passenger_if}", "--bind-interfaces", "--log-facility=-",
            f"--address=/dns.msftncsi.com/{NCSI_ADDRESS}", "--filter-AAAA"]


def main_args(s: CabinNetSettings, lease_file: Path) -> list[str]:
    """The DHCP + DNS instance's command line."""
    a = s.address
    args = [s.dnsmasq, *_common(s), f"--dhcp-range={s.dhcp_range[0]},{s.dhcp_range[1]},{s.lease_s}",
            f"--dhcp-leasefile={lease_file}", "--dhcp-authoritative", "--quiet-dhcp", "--no-ping",
            f"--dhcp-option=option:router,{a}", f"--dhcp-option=option:dns-server,{a}",
            f"--address=/{s.portal_name}/{a}"]
    if s.captive_api_url:
        args.append(f"--dhcp-option=114,{s.captive_api_url}")
    args += [f"--address=/{name}/{a}" for name in s.probe_names]
    if s.upstream_dns:
        args += ["--no-resolv", *(f"--server={u}" for u in s.upstream_dns)]
    else:
        args.append("--no-resolv")
    return args


def held_args(s: CabinNetSettings) -> list[str]:
    """The held phones' DNS instance's command line (no DHCP; every name is the portal)."""
    return [s.dnsmasq, *_common(s), f"--port={s.held_dns_port}", "--no-resolv",
            f"--address=/#/{s.address}"]


class Supervised:
    """One program run in the foreground and restarted when it exits (see the module docstring)."""

    def __init__(self, name: str, args: list[str], restart_s: float = 1.0) -> None:
        """Run ``args`` (argv) as ``name``; wait ``restart_s`` seconds before each restart."""
        self.name = name
        self.args = args
        self.restart_s = restart_s
        self.proc: asyncio.subprocess.Process | None = None
        self.exits = 0  #: times it exited (each restarted)
        self.last_error = ""  #: its last stderr line
        self.started_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @property
    def running(self) -> bool:
        """Whether the program runs now."""
        return self.proc is not None and self.proc.returncode is None

    async def start(self, settle_s: float = 0.3) -> None:
        """Start it and its restart loop; raises OSError if the program cannot be run at all."""
        await self._spawn()
        self._task = asyncio.create_task(self._loop(), name=f"dnsmasq-{self.name}")
        await asyncio.sleep(settle_s)  # a bad option makes dnsmasq exit at once: seen in status

    async def _spawn(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self.started_at = time.monotonic()

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace").strip()
            if line:
                self.last_error = line[-300:]
                log.info("dnsmasq %s: %s", self.name, line)

    async def _loop(self) -> None:
        while True:
            proc = self.proc
            assert proc is not None
            drain = asyncio.create_task(self._drain(proc))
            rc = await proc.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(drain, 1.0)
            self.exits += 1
            log.error("dnsmasq %s exited with %s (%s); restarting in %.1f s", self.name, rc,
                      self.last_error, self.restart_s)
            await asyncio.sleep(self.restart_s)
            try:
                await self._spawn()
            except OSError as e:
                self.last_error = str(e)
                log.error("dnsmasq %s cannot start: %s", self.name, e)

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the restart loop, then the program (SIGTERM, SIGKILL after ``timeout_s``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def status(self) -> dict[str, object]:
        """Running, pid, exits, last error line."""
        return {"running": self.running, "pid": self.proc.pid if self.proc else None,
                "exits": self.exits, "last_error": self.last_error}
