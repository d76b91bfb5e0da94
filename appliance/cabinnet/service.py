"""The cabin network part of the service: the gate, the two dnsmasq instances, the lease watch.

:class:`CabinNet` is built by the daemon before the passenger port (the portal asks its
:attr:`~CabinNet.gate` whether a phone accepted) and started after it (:meth:`CabinNet.start` with
the ports the gate lets phones reach): gate rebuilt from the journal, dnsmasq started, leases read
every ``poll_s`` seconds. :meth:`CabinNet.on_mode` applies a mode's gate policy; :meth:`status` is
the BITE subsystem ``passenger_network`` (leases, held and open phones, dnsmasq, nft); stop stops
dnsmasq and leaves the table in the kernel (phones stay as they are while the service restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from ..modes.events import TimeSource
from ..modes.policy import GateScope, Mode, PolicyTable
from ..netsettings import CabinNetSettings
from ..store.files import ensure_dir
from ..store.writer import Writer
from .dnsmasq import Supervised, held_args, main_args
from .gate import Gate, GateError, Nft
from .helper import GateClient, RemoteDns
from .leases import Lease, read_leases
from .rules import GatePorts, ruleset

__all__ = ["CabinNet", "GateCollector"]

log = logging.getLogger(__name__)


class CabinNet:
    """DHCP/DNS and the gate of the passenger network (see the module docstring)."""

    def __init__(self, settings: CabinNetSettings, data_dir: Path, writer: Writer, reader: Engine,
                 policy: PolicyTable, mode: Callable[[], Mode],
                 utc: Callable[[], tuple[float, TimeSource]], accept_s: float,
                 admin_port: int) -> None:
        """Nothing runs before :meth:`start`; ``admin_port`` is reachable from maintenance only."""
        self.s = settings
        self.dir = data_dir / "cabinnet"
        self.lease_file = self.dir / "dnsmasq.leases"
        self.policy = policy
        self.mode = mode
        self.admin_port = admin_port
        self.ports: GatePorts | None = None
        self.helper: GateClient | None = None
        self.dns: list[Supervised] | list[RemoteDns]
        if settings.gate_socket is not None:  # the privileged part runs apart (helper.py)
            self.helper = GateClient(settings.gate_socket, lambda: self.ports)
            self.nft: Nft = self.helper
            self.dns = [RemoteDns("main"), RemoteDns("held")]
        else:
            self.nft = Nft(settings.nft)
            self.dns = [Supervised("main", main_args(settings, self.lease_file)),
                        Supervised("held", held_args(settings))]
        self.gate = Gate(settings.table, writer, reader, self.nft, accept_s, utc, self._render)
        self.gate.refresh = self.poll
        self.leases: dict[str, Lease] = {}
        self.bad_lease_lines = 0
        self.poll_errors = 0
        self._mtime = -1.0
        self._task: asyncio.Task[None] | None = None

    def _render(self, scope: GateScope, held: list[str], opened: list[str]) -> str:
        assert self.ports is not None, "start() first"
        return ruleset(self.s.table, self.s.passenger_if, self.s.maintenance_if, self.s.address,
                       self.ports, scope, held, opened)

    async def start(self, passenger_port: int, media_port: int | None) -> None:
        """Rebuild the gate from the journal, start dnsmasq and the lease watch.

        Raises GateError if nftables refuses the table, OSError if dnsmasq cannot be run.
        """
        https = self.s.https_port if self.s.tls_cert else None
        self.ports = GatePorts(passenger_port, self.admin_port, https, media_port,
                               self.s.held_dns_port)
        await asyncio.to_thread(ensure_dir, self.dir)
        policy = self.policy[self.mode()]
        n = await self.gate.restore(policy.passenger_gate)
        await self.poll()  # the lease file (renewals since the journal's rows), then expiry
        log.info("cabin network: gate %s, %d phone(s) restored from the journal",
                 policy.passenger_gate, n)
        for d in self.dns:
            await d.start()
        await self._helper_status()
        self._task = asyncio.create_task(self._watch(), name="cabinnet-leases")

    async def stop(self) -> None:
        """Stop the lease watch and dnsmasq (the gate's table stays loaded)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for d in self.dns:
            await d.stop()

    async def _helper_status(self) -> None:
        """The helper's dnsmasq status, for BITE (nothing without a helper)."""
        if self.helper is None:
            return
        try:
            ans: dict[str, object] | None = await self.helper.request({"op": "status"}, 5.0)
            why = ""
        except GateError as e:
            ans, why = None, str(e)
        for d in self.dns:
            if isinstance(d, RemoteDns):
                d.update(ans, why)

    async def poll(self) -> None:
        """Read the lease file if it changed and let the gate follow (and expire what ran out)."""
        await self._helper_status()
        try:
            mtime = self.lease_file.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime != self._mtime:
            self.leases, self.bad_lease_lines = await asyncio.to_thread(read_leases,
                                                                        self.lease_file)
            self._mtime = mtime
        await self.gate.sync(self.leases)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.s.poll_s)
            try:
                await self.poll()
            except Exception:  # supervisor boundary: log, count, keep watching
                self.poll_errors += 1
                log.exception("cabin network: lease poll failed")

    def on_mode(self, ev: Any) -> None:
        """Chain subscriber: on a mode change apply the new mode's gate policy (in a task)."""
        if getattr(ev, "kind", None) != "mode" or self.ports is None:
            return
        mode = Mode(ev.current)
        p = self.policy[mode]
        task = asyncio.get_running_loop().create_task(
            self.gate.policy(str(mode), p.passenger_gate, p.gate_reset_on_entry))
        task.add_done_callback(self._policy_done)

    def _policy_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.poll_errors += 1
            log.error("cabin network: gate policy not applied: %s", task.exception())

    def lease_of(self, ip: str) -> Lease | None:
        """The live lease of address ``ip``, if any."""
        now = time.time()
        return next((x for x in self.leases.values() if x.ip == ip and x.expiry > now), None)

    def status(self) -> dict[str, Any]:
        """BITE: green while dnsmasq runs and nft applies; leases, held and open phones."""
        g = self.gate.status()
        now = time.time()
        live = [x for x in self.leases.values() if x.expiry > now]
        down = [d.name for d in self.dns if not d.running]
        if down:
            state, reason = "red", f"dnsmasq {', '.join(down)} not running"
        elif g["nft_errors"]:
            state, reason = "amber", f"{g['nft_errors']} nftables change(s) refused"
        else:
            state, reason = "green", (f"{len(live)} lease(s), {g['held']} held, {g['open']} open; "
                                      f"gate {g['gate']}")
        return {"state": state, "reason": reason, "leases": len(live), **g,
                "clients": [{"mac": c.mac, "ip": c.ip, "state": c.state,
                             "lease_until": None if c.lease_until == float("inf") else c.lease_until,
                             "open_until": c.open_until}
                            for c in list(self.gate.clients.values())[:500]],
                "dnsmasq": {d.name: d.status() for d in self.dns},
                "bad_lease_lines": self.bad_lease_lines, "poll_errors": self.poll_errors}


class GateCollector(Collector):
    """Prometheus: gate changes by event, phones held/open, leases (read at scrape time)."""

    def __init__(self, net: CabinNet) -> None:
        """Watch ``net``."""
        self.net = net

    def collect(self) -> Iterator[Metric]:
        """Yield the cabin network's metric families."""
        st = self.net.gate.status()
        ch = CounterMetricFamily("appliance_gate_changes", "Gate changes (journaled) by event",
                                 labels=["event"])
        for ev in ("held", "open", "expired", "reset", "policy"):
            ch.add_metric([ev], float(st["changes"].get(ev, 0)))
        yield ch
        ph = GaugeMetricFamily("appliance_gate_phones", "Phones known to the gate", labels=["state"])
        ph.add_metric(["held"], st["held"])
        ph.add_metric(["open"], st["open"])
        yield ph
        yield GaugeMetricFamily("appliance_dhcp_leases", "Live DHCP leases",
                                value=sum(1 for x in self.net.leases.values()
                                          if x.expiry > time.time()))
        yield CounterMetricFamily("appliance_gate_nft_errors", "nftables changes refused",
                                  value=st["nft_errors"])

