"""Shared parts of the hostile-input tests (issue 13): the real service under a fake systemd, probes.

Everything runs on loopback (127.0.0.0/8; client sockets bind source addresses 127.0.0.X to look
like different phones) and on a pty for the card. Each helper measures one figure the tests print:

- :class:`NotifySocket` is a fake ``$NOTIFY_SOCKET`` recording every datagram with its arrival time
  (the largest gap between ``WATCHDOG=1`` pings is what systemd's watchdog judges);
- :class:`FlightPoller` asks ``GET /api/v1/flight`` every 20 ms on its own thread: the slowest
  answer is how long the event loop stalled;
- :func:`vm_kib` reads ``VmHWM`` (peak RSS) / ``VmRSS`` from ``/proc/<pid>/status``;
- :func:`raw_request` sends a request by hand on a socket (a body of any size, streamed, chunked or
  not, from a chosen source address) and times the answer;
- :class:`SlowClients` holds many connections that send one header byte per second.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.service import TOKEN, Service, free_port

__all__ = ["FLIGHT_ANSWER_BOUND_S", "LIMIT_NOFILE", "MEMORY_MAX_MIB", "TOKEN", "WATCHDOG_USEC", "Answer",
           "FlightPoller", "HostileService", "NotifySocket", "SlowClients", "raw_request",
           "source_address", "vm_kib"]

#: The bound on the service's memory; ``MemoryMax=`` in the systemd unit must be this figure.
MEMORY_MAX_MIB = 300
#: systemd's ``WatchdogSec=10s`` as the service sees it; pings come every half of it.
WATCHDOG_USEC = 10_000_000
#: The unit's ``LimitNOFILE=`` (today's default soft limit); the unit must state this figure.
LIMIT_NOFILE = 1024
#: The passenger flight API must answer within this while an attack runs (s).
FLIGHT_ANSWER_BOUND_S = 0.100


def source_address(i: int) -> str:
    """The i-th fake client address on loopback: 127.0.0.2, 127.0.0.3, ... (wraps within /24)."""
    return f"127.0.0.{2 + i % 250}"


def vm_kib(pid: int, key: str = "VmHWM") -> int:
    """A ``/proc/<pid>/status`` figure in KiB (``VmHWM`` peak RSS, ``VmRSS`` now); 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class NotifySocket:
    """The fake systemd end of ``$NOTIFY_SOCKET``: every datagram with its monotonic arrival time."""

    path: Path
    messages: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True, name="notify")
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            now = time.monotonic()
            for line in data.decode(errors="replace").splitlines():
                self.messages.append((now, line))

    def times(self, message: str) -> list[float]:
        """Arrival times of ``message`` (monotonic clock)."""
        return [t for t, m in list(self.messages) if m == message]

    def wait_for(self, message: str, timeout: float, after: float = -1.0) -> float | None:
        """Wait until ``message`` arrives after ``after``; its arrival time, or None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t in self.times(message) if t > after]
            if hits:
                return hits[0]
            time.sleep(0.02)
        return None

    def max_watchdog_gap(self, start: float, end: float) -> float:
        """The longest time without ``WATCHDOG=1`` within [start, end] (counting both edges)."""
        pings = [t for t in self.times("WATCHDOG=1") if start <= t <= end]
        marks = [start, *pings, end]
        return max(b - a for a, b in itertools.pairwise(marks))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class HostileService(Service):
    """The real service (``appliance run``) with a fake systemd watchdog and extra environment."""

    env: dict[str, str] = field(default_factory=dict)
    watchdog_usec: int | None = WATCHDOG_USEC
    notify: NotifySocket | None = None
    serial: bool = False
    #: RLIMIT_NOFILE for the service (as the unit's ``LimitNOFILE=`` would set it); None: inherited.
    nofile: int | None = None

    def start(self, timeout: float = 30.0) -> None:
        cfg = self.write_config()
        if self.watchdog_usec is not None:
            self.notify = NotifySocket(self.workdir / "notify.sock")
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCHDOG_PID", "WATCHDOG_USEC", "NOTIFY_SOCKET", "LISTEN_FDS")}
        env.update(PYTHONUNBUFFERED="1")
        if not self.serial:
            env["APPLIANCE_SERIAL__ENABLED"] = "false"
        if self.notify is not None:
            env.update(NOTIFY_SOCKET=str(self.notify.path), WATCHDOG_USEC=str(self.watchdog_usec))
        env.update(self.env)
        nofile = self.nofile

        def limits() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env, preexec_fn=limits)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            if self.notify is None or self.notify.times("READY=1"):
                try:
                    self.admin("/admin/v1/status")
                    return
                except OSError:
                    pass
            time.sleep(0.1)
        raise TimeoutError(f"service not ready in {timeout} s:\n{self.log()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_mib(self) -> float:
        """Peak RSS (VmHWM) of the service process so far, MiB."""
        return vm_kib(self.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        """RSS now, MiB."""
        return vm_kib(self.pid, "VmRSS") / 1024

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL of its own PID) and the fake notify socket."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop(timeout=8)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.notify is not None:
                self.notify.close()


class FlightPoller:
    """``GET /api/v1/flight`` every ``every_s`` on its own thread; each answer's latency (s).

    A request that fails or times out counts with its elapsed time (the timeout), so a frozen loop
    shows as one long latency, not as a missing sample.
    """

    def __init__(self, port: int, every_s: float = 0.020, timeout_s: float = 30.0,
                 source: str = "127.0.0.250") -> None:
        self.port, self.every_s, self.timeout_s, self.source = port, every_s, timeout_s, source
        self.samples: list[tuple[float, float, int]] = []  # (started, latency, status or -1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flight-poller")

    def __enter__(self) -> FlightPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def _run(self) -> None:
        # A new connection per poll, as a phone waking up would: on a kept-alive connection every
        # answer waits ~40 ms today (delayed ACK), which would hide the loop's own latency.
        while not self._stop.is_set():
            t0 = time.monotonic()
            status = -1
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s,
                                              source_address=(self.source, 0))
            try:
                conn.request("GET", "/api/v1/flight")
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            latency = time.monotonic() - t0
            self.samples.append((t0, latency, status))
            self._stop.wait(max(0.0, self.every_s - latency))

    def worst(self) -> float:
        """The slowest answer (s)."""
        return max((lat for _, lat, _ in self.samples), default=0.0)

    def slow(self, bound: float = FLIGHT_ANSWER_BOUND_S) -> int:
        """How many answers took longer than ``bound`` or failed."""
        return sum(1 for _, lat, st in self.samples if lat >= bound or st != 200)

    def summary(self, bound: float = FLIGHT_ANSWER_BOUND_S) -> str:
        lat = sorted(x for _, x, _ in self.samples)
        if not lat:
            return "no samples"
        p50 = lat[len(lat) // 2]
        return (f"{len(lat)} polls, p50 {p50 * 1000:.1f} ms, worst {lat[-1] * 1000:.0f} ms, "
                f"{self.slow(bound)} at/over {bound * 1000:.0f} ms or failed")


@dataclass
class Answer:
    """What came back for a hand-made request."""

    status: int | None  #: None: the connection ended without a status line
    headers: dict[str, str]
    body: bytes  #: at most ``keep_body`` bytes of it
    body_len: int  #: the whole body's length as received
    sent: int  #: body bytes the server let us send before it answered or closed
    seconds: float  #: from the first byte sent to the end of the answer
    error: str = ""


class _Answered(Exception):
    """The server answered (or started to) before the whole body was sent."""


def _chunks(total: int, piece: bytes) -> Iterator[bytes]:
    left = total
    while left > 0:
        yield piece[:left]
        left -= min(left, len(piece))


def raw_request(port: int, method: str, path: str, body: bytes | Iterable[bytes] = b"", *,
                length: int | None = None, chunked: bool = False, headers: dict[str, str] | None = None,
                source: str = "127.0.0.1", timeout: float = 30.0, keep_body: int = 64 << 10,
                ) -> Answer:
    """Send one HTTP/1.1 request by hand and read the answer (``Connection: close``).

    ``body`` is bytes or an iterable of pieces (streamed as they come); ``length`` sets
    Content-Length for an iterable, ``chunked`` sends Transfer-Encoding: chunked instead. If the
    server answers early or closes while we send, sending stops and the answer is read. The
    whole exchange is bounded by ``timeout`` (s).
    """
    pieces: Iterable[bytes] = [body] if isinstance(body, bytes) else body
    hdrs = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
    elif isinstance(body, bytes):
        hdrs["Content-Length"] = str(len(body))
    elif length is not None:
        hdrs["Content-Length"] = str(length)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    sock = socket.socket()
    sock.bind((source, 0))
    t0 = time.monotonic()
    deadline = t0 + timeout
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    received = bytearray()
    sent = 0
    error = ""
    try:
        sock.sendall(head.encode())
        sock.setblocking(False)
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLOUT)
        for piece in itertools.chain(pieces, [b""] if chunked else []):
            data = (f"{len(piece):x}\r\n".encode() + piece + b"\r\n") if chunked else piece
            view = memoryview(data)
            while view:
                if time.monotonic() > deadline:
                    raise TimeoutError("sending took longer than the timeout")
                # poll, not select: the test process may hold descriptors numbered over 1024
                mask = dict(poller.poll(1000)).get(sock.fileno(), 0)
                r = mask & (select.POLLIN | select.POLLHUP | select.POLLERR)
                w = mask & select.POLLOUT
                if r:  # the server spoke (or closed) before taking the whole body
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        raise ConnectionResetError("server closed while we were sending")
                    received += chunk
                    raise _Answered
                if w:
                    n = sock.send(view[:1 << 20])
                    view = view[n:]
                    sent += n
    except _Answered:
        pass
    except (BrokenPipeError, ConnectionResetError, TimeoutError) as e:
        error = f"while sending: {e!r}"
    # Read the answer (whatever the server has to say), bounded by the deadline.
    body_len = 0
    try:
        sock.setblocking(True)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                error += " / answer not complete within the timeout"
                break
            sock.settimeout(left)
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            if len(received) < keep_body + 65536:
                received += chunk
            else:
                body_len += len(chunk)
    except (ConnectionResetError, TimeoutError, OSError) as e:
        error += f" / while reading: {e!r}"
    finally:
        sock.close()
    seconds = time.monotonic() - t0
    status: int | None = None
    hdr_out: dict[str, str] = {}
    head_end = received.find(b"\r\n\r\n")
    payload = b""
    if received.startswith(b"HTTP/") and head_end > 0:
        lines = bytes(received[:head_end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdr_out[k.strip().lower()] = v.strip()
        payload = bytes(received[head_end + 4:])
    body_len += len(payload)
    return Answer(status, hdr_out, payload[:keep_body], body_len, sent, seconds, error.strip(" /"))


def repeated(total: int, unit: bytes, piece_size: int = 1 << 20) -> Iterator[bytes]:
    """``total`` bytes made of ``unit`` repeated, in pieces of about ``piece_size`` bytes."""
    piece = unit * max(1, piece_size // len(unit))
    return _chunks(total, piece)


@dataclass
class _Slow:
    sock: socket.socket
    opened: float
    closed: float | None = None
    answered: bytes = b""
    refused: bool = False


class SlowClients:
    """``n`` connections to ``port`` that each send one request-head byte every ``every_s``.

    The head never ends (no blank line). Connections come from ``sources`` addresses in turn. A
    connection counts as closed when the server ends it (EOF, reset, or a failed send).
    """

    HEAD = b"GET /api/v1/flight HTTP/1.1\r\nHost: cabin\r\nX-Slow: "

    def __init__(self, port: int, n: int, sources: int = 40, every_s: float = 1.0) -> None:
        self.port, self.every_s = port, every_s
        self.conns: list[_Slow] = []
        for i in range(n):
            s = socket.socket()
            s.bind((source_address(i % sources), 0))
            s.settimeout(5)
            now = time.monotonic()
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                self.conns.append(_Slow(socket.socket(), now, now, refused=True))
                continue
            s.setblocking(False)
            self.conns.append(_Slow(s, now))
        self._sent = 0

    def step(self) -> None:
        """Send the next byte on every open connection and notice the ones the server closed."""
        byte = self.HEAD[self._sent:self._sent + 1] or b"a"
        self._sent += 1
        now = time.monotonic()
        for c in self.conns:
            if c.closed is not None:
                continue
            try:
                while True:
                    data = c.sock.recv(65536)
                    if not data:
                        c.closed = now
                        break
                    c.answered += data[:200]
            except BlockingIOError:
                pass
            except OSError:
                c.closed = now
            if c.closed is None:
                try:
                    c.sock.send(byte)
                except BlockingIOError:
                    pass
                except OSError:
                    c.closed = now
            if c.closed is not None:
                c.sock.close()

    def still_open(self) -> int:
        return sum(1 for c in self.conns if c.closed is None)

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.sock.close()


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports."""
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)
