"""The media edge: a small HTTP/1.1 server on its own port that sends file bytes with ``sendfile``.

Why a server of our own (measured, see the README): uvicorn has no zero-copy send and no
``pathsend``, so every media byte served through the ASGI app is read into Python and written back
(0.12x nginx's throughput, 8x its CPU per GiB). This server parses the request head, asks
:class:`~appliance.content.media.MediaFiles` for the answer, writes the response head and hands the
body to ``os.sendfile`` (page cache to socket, no copy through Python; when the socket is full it
waits for it to drain, on uvloop or asyncio alike). It runs
on the service's own event loop, next to the two uvicorn servers.

Protocol: GET, HEAD and OPTIONS only; HTTP/1.1 keep-alive (idle connections are closed after
``keepalive_s``, default 75 s — longer than a player's pause between segments), pipelined requests
are answered in order; a request with a body gets 400, a head over 16 KiB 431, then the connection
is closed. A request head must be complete ``head_timeout_s`` after the connection opened, or after
its first byte on a kept-alive connection: an absolute deadline that a trickle of bytes does not
extend. Per client address: at most ``per_client`` connections (more get 503 and are closed) and a
token bucket of requests (over it: 429 with Retry-After); at most ``max_connections`` in all (a new
one takes the place of the oldest connection waiting for a head, else it gets 503).

File descriptors: a connection holds one (its socket) while it waits or reads a head, and three
while a body is sent (the socket, a dup of it for ``sendfile`` and the file): size
``max_connections`` so that three per connection fit in the process's ``RLIMIT_NOFILE`` next to the
other ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast

from .fairness import ConnectionLimiter, RateLimiter
from .media import MediaAnswer, MediaFiles

__all__ = ["MediaServer", "MediaServerStats"]

log = logging.getLogger(__name__)
MAX_HEAD = 16 * 1024
_REASONS = {s.value: s.phrase for s in HTTPStatus}


@dataclass(slots=True)
class MediaServerStats:
    """Counters: connections accepted/refused/evicted/open, head timeouts, requests, bytes sent."""

    accepted: int = 0
    refused: int = 0
    evicted: int = 0
    head_timeouts: int = 0
    open: int = 0
    requests: int = 0
    bytes_sent: int = 0
    send_errors: int = 0
    rate_limited: int = 0


class _DateCache:
    __slots__ = ("_s", "_v")

    def __init__(self) -> None:
        self._s = -1
        self._v = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._s:
            self._s, self._v = now, email.utils.formatdate(now, usegmt=True)
        return self._v


def _head(status: int, headers: tuple[tuple[str, str], ...], keep: bool, date: str) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}", f"date: {date}",
             "server: appliance-media"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("connection: keep-alive" if keep else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Conn(asyncio.Protocol):
    """One client connection: parse heads, answer in order, send bodies with sendfile."""

    def __init__(self, server: MediaServer) -> None:
        self.s = server
        self.transport: asyncio.Transport | None = None
        self.sock: socket.socket | None = None  # a dup of the transport's socket, for sendfile
        self.client = "unknown"
        self.buf = bytearray()
        self.busy = False
        self.admitted = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head_deadline = False  # the timer is the head deadline (not the idle timeout)

    # -- connection life -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)  # uvloop's: no subclass of it
        peer = tr.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "unknown"
        st = self.s.stats
        if not self.s.conns.acquire(self.client, self):
            st.refused += 1
            tr.write(_head(503, (("content-type", "text/plain"), ("content-length", "24"),
                                        ("retry-after", "2")), False, self.s.date.get())
                            + b"too many connections...\n")
            transport.close()
            return
        self.admitted = True
        raw = transport.get_extra_info("socket")
        if raw is not None and self.s.send_buffer:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.s.send_buffer)
        st.accepted += 1
        st.open += 1
        self.s.live.add(self)
        self._idle()
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._close_dup()
        if self.admitted:
            self.admitted = False
            self.s.conns.release(self)
            self.s.stats.open -= 1
            self.s.live.discard(self)

    def evict(self) -> None:
        """Close this idle connection to make room for a new one (the limiter uncounted it)."""
        self.s.stats.evicted += 1
        if self.transport is not None:
            self.transport.abort()

    def _dup(self) -> socket.socket | None:
        """A dup of the transport's socket for ``send``/``sendfile`` (made when a body is sent)."""
        if self.sock is None and self.transport is not None:
            raw = self.transport.get_extra_info("socket")
            if raw is not None:
                self.sock = socket.socket(fileno=os.dup(raw.fileno()))
        return self.sock

    def _close_dup(self) -> None:
        if self.sock is not None:
            if self.busy:  # a body is being sent: stop waiting on the socket before it closes
                with contextlib.suppress(Exception):
                    self.s.loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _idle(self) -> None:
        """Waiting for a request head: evictable to make room for a new connection."""
        self.s.conns.idle(self)

    def _arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.head_deadline = False
        self.timer = self.s.loop.call_later(seconds, self._timeout)

    def _arm_head(self) -> None:
        """Start the head deadline, unless it runs already: bytes arriving never extend it."""
        if not self.head_deadline:
            self._arm(self.s.head_timeout_s)
            self.head_deadline = True

    def _timeout(self) -> None:
        if not self.busy and self.transport is not None:
            if self.head_deadline:
                self.s.stats.head_timeouts += 1
            self.transport.close()

    # -- requests ----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        """Answer every complete request in the buffer, in order, until one has to wait."""
        tr = self.transport
        assert tr is not None
        while not self.busy and not tr.is_closing():
            end = self.buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
            if end < 0 or end > MAX_HEAD:
                if len(self.buf) > MAX_HEAD:
                    self._fail(431, "request head too large")
                elif self.buf:
                    self._arm_head()
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self.head_deadline = False
            self.s.conns.busy(self)
            try:
                method, target, version, headers = _parse(head)
            except ValueError as e:
                self._fail(400, str(e))
                return
            if headers.get("content-length", "0").strip() not in ("", "0") or \
                    "transfer-encoding" in headers:
                self._fail(400, "request bodies are not accepted here")
                return
            conn = headers.get("connection", "").lower()
            keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
            self._answer(method, target, headers, keep and not self.s.stopping)

    def _fail(self, status: int, reason: str) -> None:
        assert self.transport is not None
        body = (reason + "\n").encode()
        self.transport.write(_head(status, (("content-type", "text/plain; charset=utf-8"),
                                            ("content-length", str(len(body)))), False,
                                   self.s.date.get()) + body)
        log.info("media %d for %s: %s", status, self.client, reason)
        self.transport.close()

    def _answer(self, method: str, target: str, headers: dict[str, str], keep: bool) -> None:
        s, tr = self.s, self.transport
        assert tr is not None
        s.stats.requests += 1
        wait = s.rate.allow(self.client)
        if wait > 0:
            s.stats.rate_limited += 1
            body = b"slow down\n"
            ans = MediaAnswer(429, (("content-type", "text/plain"), ("content-length", str(len(body))),
                                    ("retry-after", str(max(1, round(wait))))), body)
        else:
            ans = s.files.answer(method, target, headers, self.client)
        head = _head(ans.status, ans.headers, keep, s.date.get())
        if ans.fd is None:
            tr.write(head + ans.body if ans.body and method != "HEAD" else head)
            self._done(keep)
            return
        left = self._send_now(head, ans.fd, ans.start, ans.length)
        if left is None:  # the connection broke
            os.close(ans.fd)
            return
        if left == 0:
            os.close(ans.fd)
            self._done(keep)
            return
        # the socket is full: finish in a task, waiting for it to drain (no more reads meanwhile)
        self.busy = True
        if self.timer is not None:
            self.timer.cancel()
        tr.pause_reading()
        sent = ans.length - left
        self.task = s.loop.create_task(self._finish(ans.fd, ans.start + sent, left, keep))

    def _send_now(self, head: bytes, fd: int, offset: int, count: int) -> int | None:
        """Send the head and as much of the body as the socket takes now; returns what is left.

        The fast path: no task, no future. The head goes with MSG_MORE so it shares a packet with
        the first body bytes. None if the connection broke.
        """
        tr, sock = self.transport, self._dup()
        assert tr is not None
        if sock is None or tr.get_write_buffer_size():
            tr.write(head)
            return count
        try:
            n = sock.send(head, socket.MSG_MORE)
            if n < len(head):
                tr.write(head[n:])
                return count
            while count:
                sent = os.sendfile(sock.fileno(), fd, offset, count)
                if sent == 0:
                    raise ConnectionError("file ended early")
                self.s.stats.bytes_sent += sent
                offset += sent
                count -= sent
        except (BlockingIOError, InterruptedError):
            return count
        except OSError as e:
            self.s.stats.send_errors += 1
            log.debug("media send to %s ended: %s", self.client, e)
            tr.abort()
            return None
        return 0

    async def _finish(self, fd: int, offset: int, count: int, keep: bool) -> None:
        """Send the rest of a body: wait until the socket drains, ``os.sendfile`` what it takes.

        Not ``loop.sendfile``: uvloop does not implement it, and with a send buffer sized to a
        segment this wakes about once per buffer anyway. Reading is paused meanwhile.
        """
        s, tr, sock = self.s, self.transport, self.sock
        assert tr is not None
        try:
            if sock is None:
                raise ConnectionError("no socket")
            while count:
                await self._writable(sock.fileno())
                if tr.is_closing():
                    raise ConnectionError("closed while sending")
                try:
                    sent = os.sendfile(sock.fileno(), fd, offset, count)
                except (BlockingIOError, InterruptedError):
                    continue
                if sent == 0:
                    raise ConnectionError("file ended early")
                s.stats.bytes_sent += sent
                offset += sent
                count -= sent
        except (ConnectionError, OSError) as e:
            s.stats.send_errors += 1
            log.debug("media send to %s ended: %s", self.client, e)
            tr.abort()
            return
        finally:
            os.close(fd)
        self.busy = False
        self._done(keep)
        if not tr.is_closing():
            self._next()
            if not self.busy:
                tr.resume_reading()

    async def _writable(self, fileno: int) -> None:
        """Wait until ``fileno`` (the dup of the connection's socket) can take bytes."""
        loop = self.s.loop
        fut = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_writer(fileno, ready)
        try:
            await fut
        finally:
            if self.sock is not None and self.sock.fileno() == fileno:  # not closed under us
                loop.remove_writer(fileno)

    def _done(self, keep: bool) -> None:
        tr = self.transport
        assert tr is not None
        self._close_dup()
        if not keep or tr.is_closing():
            tr.close()
            return
        self._idle()
        self._arm(self.s.keepalive_s)


def _parse(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers (names lower-cased, repeats joined by ", "); ValueError if bad."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as e:  # pragma: no cover - latin-1 decodes everything
        raise ValueError("bad bytes in the request head") from e
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].startswith("/"):
        raise ValueError("bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name or "\t" in name:
            raise ValueError("bad header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if parts[2] == "HTTP/1.1" and "host" not in headers:
        raise ValueError("HTTP/1.1 request without Host")
    return parts[0], parts[1], parts[2], headers


class MediaServer:
    """The sendfile media server; ``await start()`` binds, ``await stop()`` drains and closes."""

    def __init__(self, files: MediaFiles, host: str, port: int, *, per_client: int = 8,
                 max_connections: int = 128, rate: float = 50.0, burst: float = 200.0,
                 keepalive_s: float = 75.0, head_timeout_s: float = 10.0,
                 send_buffer: int = 1 << 20) -> None:
        """Serve ``files`` on ``host:port`` (port 0: any free one, see :attr:`port` after start).

        ``send_buffer`` (bytes, 0: the kernel's autotuning) sizes each connection's socket send
        buffer so that a whole segment goes to the kernel in one ``sendfile`` call (it holds page
        cache references, not copies); Python then wakes once per segment, not once per window.
        ``per_client``/``max_connections``: connection caps (see the module docstring);
        ``keepalive_s``: idle time before a kept-alive connection is closed (s);
        ``head_timeout_s``: absolute deadline for a whole request head (s).
        """
        self.files = files
        self.host = host
        self.port = port
        self.conns = ConnectionLimiter(per_client, max_connections)
        self.rate = RateLimiter(rate, burst)
        self.keepalive_s = keepalive_s
        self.head_timeout_s = head_timeout_s
        self.send_buffer = send_buffer
        self.stats = MediaServerStats()
        self.date = _DateCache()
        self.live: set[_Conn] = set()
        self.stopping = False
        self._server: asyncio.AbstractServer | None = None

    #: The running loop (set by :meth:`start`; connections exist only after it).
    loop: asyncio.AbstractEventLoop

    async def start(self) -> None:
        """Bind and listen; raises OSError if the port is taken."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: _Conn(self), self.host, self.port,
                                                     backlog=1024, reuse_address=True)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("media server on http://%s:%d (sendfile)", self.host, self.port)

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop accepting, let responses in flight finish (bounded by ``timeout`` s), close the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for c in list(self.live):
            if not c.busy and c.transport is not None:
                c.transport.close()
        deadline = time.monotonic() + timeout
        while any(c.busy for c in self.live) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self.live):
            if c.transport is not None:
                c.transport.abort()
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
