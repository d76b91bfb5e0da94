"""The cabin network's privileged part, apart from the service: dnsmasq and the gate's nftables table.

``appliance cabinnet-helper`` runs in ``appliance-cabinnet.service``, the only unit with
CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE, so ``appliance.service`` (which faces the
passengers) holds no capability at all. The helper runs the two dnsmasq instances
(:mod:`.dnsmasq`, configured from the same settings; the lease file on the data partition, where
the service reads it) and listens on a Unix socket (``cabinnet.gate_socket``) for the gate's
changes. A peer is served only if its uid (``SO_PEERCRED``) is the helper's own or root.

One JSON request per line, one JSON answer per line (``{"ok": true, ...}`` or
``{"ok": false, "error": "one line"}``):

- ``{"op": "nft", "text": TEXT, "ports": {passenger, admin, https, media, held_dns}}``: apply
  ``TEXT`` with ``nft -f -`` once :func:`check` has proven it touches only the gate's own table:
  element lines (``add``/``delete element inet TABLE held|open { MAC . IPv4 [timeout Ns], ... }``),
  optionally after the whole table exactly as :func:`.rules.ruleset` renders it from the helper's
  own settings (table, interfaces, address, admin and held-DNS ports) and the request's portal
  ports, for either scope. Anything else is refused: the service can hold and open phones and
  switch the gate's scope, not write other nftables rules;
- ``{"op": "status"}``: ``{"dnsmasq": {name: {running, pid, exits, last_error}}}``.

:class:`GateClient` is the service's side: an :class:`~.gate.Nft` whose runs go to the helper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..netsettings import CabinNetSettings
from ..settings import load_settings
from ..store.files import ensure_dir
from .dnsmasq import Supervised, held_args, main_args
from .gate import GateError, Nft
from .rules import GatePorts, ruleset

__all__ = ["GateClient", "Helper", "RemoteDns", "add_parser", "check"]

log = logging.getLogger(__name__)
_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}"
_IP = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_ELEM = rf"{_MAC} \. {_IP}(?: timeout \d{{1,10}}s)?"
MAX_REQUEST = 4 << 20  #: bytes of one request line (a whole table with ~10,000 phones)


def _gate_ports(ports: Any, admin: int, held_dns: int) -> GatePorts:
    if not isinstance(ports, dict) or set(ports) != {"passenger", "admin", "https", "media",
                                                     "held_dns"}:
        raise GateError("the request's ports are missing or malformed")
    for k, v in ports.items():
        ok = (isinstance(v, int) and 1 <= v <= 65535) or (v is None and k in ("https", "media"))
        if not ok:
            raise GateError(f"port {k}={v!r} is not a TCP port")
    if ports["admin"] != admin or ports["held_dns"] != held_dns:
        raise GateError("the admin and held-DNS ports are the helper's own settings")
    return GatePorts(**ports)


def check(text: str, ports: Any, cs: CabinNetSettings, admin_port: int) -> None:
    """Raise GateError unless ``text`` only reloads or edits the gate's table (module docstring)."""
    rest = text
    if text.startswith(f"add table inet {cs.table}\n"):
        gp = _gate_ports(ports, admin_port, cs.held_dns_port)
        for scope in ("portal", "closed"):
            table = ruleset(cs.table, cs.passenger_if, cs.maintenance_if, cs.address, gp, scope)
            if text.startswith(table):
                rest = text[len(table):]
                break
        else:
            raise GateError("refused: the table is not the gate's ruleset")
    line = re.compile(rf"(?:add|delete) element inet {re.escape(cs.table)} (?:held|open) "
                      rf"\{{ {_ELEM}(?:, {_ELEM})* \}}")
    for ln in rest.splitlines():
        if not line.fullmatch(ln):
            raise GateError(f"refused: not a gate element command: {ln[:80]!r}")


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class Helper:
    """The privileged side (see the module docstring)."""

    def __init__(self, cs: CabinNetSettings, data_dir: Path, admin_port: int) -> None:
        """Run dnsmasq and nft as ``cs`` says; the lease file in ``data_dir/cabinnet``."""
        assert cs.gate_socket is not None, "cabinnet.gate_socket is not set"
        self.cs, self.admin_port = cs, admin_port
        self.path = cs.gate_socket
        self.lease_file = data_dir / "cabinnet" / "dnsmasq.leases"
        self.nft = Nft(cs.nft)
        self.dns = [Supervised("main", main_args(cs, self.lease_file)),
                    Supervised("held", held_args(cs))]
        self.allowed = {0, os.getuid()}
        self._lock = asyncio.Lock()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on the socket (mode 0660), then start dnsmasq; raises OSError."""
        await asyncio.to_thread(ensure_dir, self.lease_file.parent)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                       limit=MAX_REQUEST)
        os.chmod(self.path, 0o660)
        for d in self.dns:
            await d.start()

    async def stop(self) -> None:
        """Stop listening and stop dnsmasq (the gate's table stays in the kernel)."""
        if self._server is not None:
            self._server.close()
        for d in self.dns:
            await d.stop()

    async def answer(self, req: Any) -> dict[str, Any]:
        """The answer to one request."""
        op = req.get("op") if isinstance(req, dict) else None
        if op == "status":
            return {"ok": True, "dnsmasq": {d.name: d.status() for d in self.dns}}
        if op != "nft" or not isinstance(req.get("text"), str):
            return {"ok": False, "error": f"unknown request {op!r}"}
        try:
            check(req["text"], req.get("ports"), self.cs, self.admin_port)
            async with self._lock:
                await self.nft.run(req["text"])
        except GateError as e:
            log.warning("cabin network helper: %s", e)
            return {"ok": False, "error": str(e)}
        return {"ok": True}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid not in self.allowed:
                log.warning("cabin network helper: uid %d refused", uid)
                writer.write(b'{"ok": false, "error": "not allowed"}\n')
                return
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                except ValueError:
                    req = None
                writer.write(json.dumps(await self.answer(req)).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError, asyncio.LimitOverrunError) as e:
            log.warning("cabin network helper: a client failed: %s", e)
        finally:
            with contextlib.suppress(OSError):
                writer.close()


class GateClient(Nft):
    """The service's nft: each run is sent to the helper (see the module docstring)."""

    def __init__(self, path: Path, ports: Callable[[], GatePorts | None]) -> None:
        """Talk to the helper at ``path``; ``ports()``: the gate's ports (sent with each run)."""
        super().__init__(f"cabin network helper ({path})")
        self.path = path
        self.ports = ports

    async def request(self, req: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any]:
        """Send ``req``, return the answer; raises GateError if the helper cannot be reached."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.path)), timeout_s)
            try:
                writer.write(json.dumps(req).encode() + b"\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), timeout_s)
            finally:
                writer.close()
            ans: dict[str, Any] = json.loads(line)
        except (OSError, TimeoutError, ValueError) as e:
            raise GateError(f"cannot reach the {self.program}: {e or type(e).__name__}") from e
        return ans

    async def run(self, text: str) -> None:
        """Have the helper apply ``text``; raises GateError with its reason."""
        self.runs += 1
        ports = self.ports()
        try:
            ans = await self.request({"op": "nft", "text": text,
                                      "ports": dataclasses.asdict(ports) if ports else None})
        except GateError as e:
            self.errors += 1
            self.last_error = str(e)
            raise
        if not ans.get("ok"):
            self.errors += 1
            self.last_error = str(ans.get("error"))[-500:]
            raise GateError(f"nft refused the change: {self.last_error}")


class RemoteDns:
    """One dnsmasq instance run by the helper, as the service's BITE sees it (:meth:`update`)."""

    def __init__(self, name: str) -> None:
        """Known as ``name`` (``main``/``held``)."""
        self.name = name
        self.last: dict[str, object] = {"running": False, "pid": None, "exits": 0,
                                         "last_error": "no answer from the helper yet"}

    @property
    def running(self) -> bool:
        """Whether the helper said it runs, at the last look."""
        return bool(self.last.get("running"))

    def update(self, answer: dict[str, Any] | None, error: str = "") -> None:
        """Take the helper's status answer (None: the helper did not answer, ``error`` says why)."""
        got = (answer or {}).get("dnsmasq", {}).get(self.name)
        self.last = dict(got) if isinstance(got, dict) else {
            "running": False, "pid": None, "exits": self.last.get("exits", 0),
            "last_error": error or "the helper does not run it"}

    async def start(self) -> None:
        """Nothing: the helper runs it."""

    async def stop(self) -> None:
        """Nothing: the helper runs it."""

    def status(self) -> dict[str, object]:
        """Running, pid, exits, last error line (the helper's)."""
        return dict(self.last)


def add_parser(sub: Any) -> None:
    """Add ``cabinnet-helper`` to the ``appliance`` CLI (run by systemd, appliance-cabinnet.service)."""
    p = sub.add_parser("cabinnet-helper",
                       help="the cabin network's privileged part: dnsmasq and the gate's table")
    p.add_argument("--config", default=None, help="the appliance's TOML configuration")
    p.set_defaults(fn=main)


def main(a: argparse.Namespace) -> int:
    """Run the helper until SIGTERM.

    Exits 0 at once (after READY=1) when the cabin network is off, 78 without ``gate_socket``.
    """
    from ..notify import notify

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = load_settings(a.config)
    if not s.cabinnet.enabled:
        print("appliance cabinnet-helper: the cabin network is off (cabinnet.enabled): nothing to do")
        notify("READY=1")
        return 0
    if s.cabinnet.gate_socket is None:
        print("appliance cabinnet-helper: cabinnet.gate_socket is not set")
        return 78
    helper = Helper(s.cabinnet, s.data_dir, s.admin.port)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await helper.start()
        notify("READY=1")
        log.info("cabin network helper: listening on %s, dnsmasq started", helper.path)
        await stop.wait()
        notify("STOPPING=1")
        await helper.stop()
    asyncio.run(run())
    return 0
