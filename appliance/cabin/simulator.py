r"""The access point simulator as its own process, on its own loopback address.

::

    python -m appliance.cabin.simulator --host 127.0.10.5 --port 8080 \\
        --loss 0.2 --latency 0.02 --slow-p 0.3 --slow-s 0.4 --busy 0.1 --reboot-every 20 \\
        --channel 36 --ssid CREW --ssid PAX:off --log ap5.jsonl --state ap5.json

It serves the JSON API of :mod:`appliance.cabin.driver` over HTTP/1.1 (one request per connection,
``Connection: close``) with the behaviour and faults of :class:`~appliance.cabin.device.SimDevice`.
While it reboots its listening socket is closed (connection refused) and open connections are
cut; a lost request or answer is a connection closed without an answer. Once listening it prints
``READY <host> <port>`` on stdout (``--port 0`` picks a free port, kept across reboots).
``--log`` appends one JSON record per request and per effect (see the device module);
``--state`` is rewritten (atomically) on every change with the device's state, so a test can
read what the device runs without sending it a command. SIGTERM or SIGINT ends it: status 0, or
3 if a command ever arrived while another was being processed (the device's own assertion that it
was never given two commands at once; each such command is logged with ``"overlap": true``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from pathlib import Path
from typing import IO, Any

from .device import Answer, Faults, SimDevice
from .model import ApConfig, Ssid

__all__ = ["SimServer", "main", "parse_args"]

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
MAX_BODY = 64 * 1024


async def read_request(reader: asyncio.StreamReader,
                       ) -> tuple[str, str, dict[str, str], Any] | None:
    """One HTTP/1.1 request: (method, path, headers lower-cased, JSON body or None).

    Returns None if the peer closed first; raises ValueError on a malformed request.
    """
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3:
        raise ValueError("bad request line")
    method, path, _ = parts
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0") or 0)
    if n > MAX_BODY:
        raise ValueError("body too large")
    raw = await reader.readexactly(n) if n else b""
    body = json.loads(raw) if raw else None
    return method, path.split("?", 1)[0], headers, body


class SimServer:
    """Serves one :class:`SimDevice` on ``host:port``; closes the socket while it is down."""

    def __init__(self, device: SimDevice, host: str, port: int) -> None:
        """Nothing listens before :meth:`start`."""
        self.device = device
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        device.on_down = self._down
        device.on_up = self._up

    async def start(self) -> None:
        """Listen (and learn the port if it was 0)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True, backlog=64)
        self.port = self._server.sockets[0].getsockname()[1]

    def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()

    def _up(self) -> None:
        t = asyncio.get_running_loop().create_task(self.start())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop listening and cut every connection."""
        self._down()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        peer = str(writer.get_extra_info("peername", ("?", 0))[0])
        try:
            try:
                req = await asyncio.wait_for(read_request(reader), 10.0)
            except (ValueError, asyncio.IncompleteReadError):
                await self._write(writer, (400, {"error": "invalid", "detail": "malformed request"}))
                return
            if req is None:
                return
            method, path, headers, body = req
            auth = headers.get("authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            answer = await self.device.serve(method, path, token, body,
                                             headers.get("x-request-by", "-"), peer)
            if answer is None:
                writer.transport.abort()
                return
            await self._write(writer, answer)
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, answer: Answer) -> None:
        assert answer is not None
        status, data = answer
        payload = json.dumps(data).encode()
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n")
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    p = argparse.ArgumentParser(prog="python -m appliance.cabin.simulator",
                                description="A simulated cabin Wi-Fi access point (HTTP JSON API).")
    p.add_argument("--name", default="ap")
    p.add_argument("--host", default="127.0.10.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument("--latency", type=float, default=0.01, help="s per command")
    p.add_argument("--slow-p", type=float, default=0.0, help="probability of a slow command")
    p.add_argument("--slow-s", type=float, default=0.5, help="extra s of a slow command")
    p.add_argument("--loss", type=float, default=0.0, help="probability a request or answer is lost")
    p.add_argument("--busy", type=float, default=0.0, help="probability a change is answered busy")
    p.add_argument("--reboot-every", type=float, default=0.0, help="mean s between reboots; 0 never")
    p.add_argument("--boot-s", type=float, default=1.0, help="s down while rebooting")
    p.add_argument("--ready-s", type=float, default=0.3, help="s answering not_ready after boot")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--radio", choices=("on", "off"), default="on")
    p.add_argument("--channel", type=int, default=36)
    p.add_argument("--tx-power", type=int, default=12)
    p.add_argument("--ssid", action="append", default=[], help="NAME or NAME:off (repeat)")
    p.add_argument("--mgmt-allow", action="append", default=[], help="CIDR (repeat)")
    p.add_argument("--clients", type=int, default=0)
    p.add_argument("--log", type=Path, default=None, help="JSON lines: requests and effects")
    p.add_argument("--state", type=Path, default=None, help="JSON file rewritten on every change")
    return p.parse_args(argv)


def _config(a: argparse.Namespace) -> ApConfig:
    ssids = []
    for spec in a.ssid:
        name, _, state = spec.partition(":")
        ssids.append(Ssid(name, state != "off"))
    cfg = ApConfig(a.radio == "on", a.channel, a.tx_power, tuple(ssids),
                   tuple(a.mgmt_allow) or ("127.0.0.0/8",))
    return ApConfig.from_json(cfg.to_json())  # validated


async def _amain(a: argparse.Namespace) -> int:
    log_file: IO[str] | None = a.log.open("a", buffering=1) if a.log else None

    def log(rec: dict[str, Any]) -> None:
        if log_file is not None:
            log_file.write(json.dumps(rec) + "\n")

    faults = Faults(a.latency, a.slow_p, a.slow_s, a.loss, a.busy, a.reboot_every, a.boot_s,
                    a.ready_s, random.Random(a.seed))
    device = SimDevice(a.name, _config(a), user=a.user, password=a.password, faults=faults,
                       clients=a.clients, log=log)
    if a.state is not None:
        state_path: Path = a.state

        def write_state() -> None:
            tmp = state_path.with_name(f".{state_path.name}.tmp")
            tmp.write_text(json.dumps(device.snapshot()))
            os.replace(tmp, state_path)
        device.on_change = write_state
        write_state()
    server = SimServer(device, a.host, a.port)
    await server.start()
    print(f"READY {a.host} {server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    life = loop.create_task(device.run())
    await stop.wait()
    life.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await life
    await server.close()
    if log_file is not None:
        log_file.close()
    if device.overlaps:
        print(f"ASSERTION FAILED: {device.overlaps} command(s) arrived while another was being "
              "processed", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM; returns the exit status (2 bad argument, 3 overlap)."""
    a = parse_args(argv)
    try:
        _config(a)
    except ValueError as e:
        print(f"bad configuration: {e}", file=sys.stderr)
        return 2
    return asyncio.run(_amain(a))


if __name__ == "__main__":
    sys.exit(main())
