"""Connection limits of a uvicorn port: caps per client and per port, an absolute head deadline.

uvicorn bounds neither the time a request head may take (its keep-alive timer is re-armed by every
byte) nor the connections one client may hold. :func:`guarded_protocol` makes a subclass of
uvicorn's h11 protocol, given to ``uvicorn.Config(http=...)``, that for its port:

- counts every connection in a :class:`~appliance.content.fairness.ConnectionLimiter`: over the
  per-client cap a new connection gets a short 503 and is closed at once (before any byte is
  read); at the port's total the oldest connection still waiting for a request head is closed
  to make room (so slow or silent connections cannot lock the others out), else the new one is
  refused the same way;
- closes a connection whose request head (request line and headers) is not complete
  ``header_timeout_s`` after the connection opened or the previous response ended. The deadline
  is absolute: bytes arriving do not move it. It does not run while a request is being served
  (the body's own deadline is :class:`~appliance.web.limits.BodyLimit`'s).

The counters (:class:`PortGuard`) are read by the status and metrics.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..content.fairness import ConnectionLimiter

__all__ = ["PortGuard", "guarded_protocol"]

_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 21\r\n"
            b"retry-after: 2\r\nconnection: close\r\n\r\ntoo many connections\n")


@dataclass
class PortGuard:
    """The connection state of one port: its limiter, head deadline (s) and counters."""

    per_client: int
    total: int
    header_timeout_s: float
    limiter: ConnectionLimiter = field(init=False)
    head_timeouts: int = 0

    def __post_init__(self) -> None:
        self.limiter = ConnectionLimiter(self.per_client, self.total)

    def stats(self) -> dict[str, int]:
        """Open connections, refused ones, evicted idle ones, head deadlines that closed one."""
        lim = self.limiter
        return {"open": lim.count, "refused": lim.refused, "evicted": lim.evicted,
                "head_timeouts": self.head_timeouts}


class _Guard:
    """The port's :class:`PortGuard` for a uvicorn protocol (mixed into h11's and httptools')."""

    guard: ClassVar[PortGuard]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    connections: set[Any]
    _deadline: asyncio.TimerHandle | None
    _admitted: bool
    _head_bytes: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the uvicorn protocol after this mixin in the MRO
        self._deadline = None
        self._admitted = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Let uvicorn set up, then admit (or refuse) the connection and start its deadline."""
        super().connection_made(transport)  # type: ignore[misc]
        self._admit(cast(asyncio.Transport, transport))

    def connection_lost(self, exc: Exception | None) -> None:
        """Uncount the connection, then let uvicorn clean up."""
        self._release()
        super().connection_lost(exc)  # type: ignore[misc]

    def _admit(self, transport: asyncio.Transport) -> None:
        """Admit (or refuse) the connection and start its head deadline."""
        client = self.client[0] if self.client else "unknown"
        if not self.guard.limiter.acquire(client, self):
            self.connections.discard(self)
            transport.write(_REFUSAL)
            transport.close()
            return
        self._admitted = True
        self._await_head()

    def _release(self) -> None:
        self._cancel_deadline()
        if self._admitted:
            self._admitted = False
            self.guard.limiter.release(self)

    def evict(self) -> None:
        """Close this connection (waiting for a head) to make room; the limiter uncounted it."""
        self._admitted = False
        self._cancel_deadline()
        self.connections.discard(self)
        self.transport.close()

    def _head_started(self) -> None:
        """A request head is complete: its deadline stops, the connection is busy."""
        if self._admitted:
            self._cancel_deadline()
            self.guard.limiter.busy(self)

    def _await_head(self) -> None:
        self._cancel_deadline()
        self._head_bytes = 0
        self._deadline = self.loop.call_later(self.guard.header_timeout_s, self._head_timeout)
        self.guard.limiter.idle(self)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timeout(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.guard.head_timeouts += 1
            self.transport.close()


class _GuardedH11(_Guard, H11Protocol):
    """uvicorn's h11 protocol with the port's :class:`PortGuard` (set on each subclass).

    The head size is h11's own limit (``h11_max_incomplete_event_size``).
    """

    def handle_events(self) -> None:
        """Parse what arrived; a new request (its head complete) stops the head deadline."""
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:
            self._head_started()

    def on_response_complete(self) -> None:
        """After a response, the next head (or the rest of an unread body) has a deadline again."""
        done = self.cycle
        super().on_response_complete()
        if self.cycle is done and self._admitted and not self.transport.is_closing():
            self._await_head()


_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
              b"content-length: 29\r\nconnection: close\r\n\r\nrequest head is too large\r\n\r\n")


class _GuardedHttpTools(_Guard, HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol with the port's :class:`PortGuard`.

    llhttp has no head size limit of its own: the bytes received while a head is awaited are
    counted, and over ``header_bytes`` the answer is 431 and the connection is closed.
    """

    header_bytes: ClassVar[int]

    def data_received(self, data: bytes) -> None:
        """Parse; while a head is awaited, count its bytes against ``header_bytes``."""
        waiting = self._deadline is not None
        if waiting:
            self._head_bytes += len(data)
        super().data_received(data)
        if waiting and self._deadline is not None and self._head_bytes > self.header_bytes \
                and not self.transport.is_closing():
            self._cancel_deadline()
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        """A request head is complete: its deadline stops."""
        super().on_headers_complete()
        self._head_started()

    def on_response_complete(self) -> None:
        """After a response, the next head has a deadline again (unless one is pipelined)."""
        super().on_response_complete()
        if self._admitted and not self.transport.is_closing() and self.cycle is not None \
                and self.cycle.response_complete:
            self._await_head()


def guarded_protocol(guard: PortGuard, http: str = "h11",
                     header_bytes: int = 16 << 10) -> type[asyncio.Protocol]:
    """A uvicorn protocol class for one port, enforcing ``guard``'s caps and head deadline.

    ``http``: "h11" (pure Python; head size bounded by h11) or "httptools" (llhttp, C; head
    size bounded here by ``header_bytes``, 431 over it).
    """
    if http == "httptools":
        return type("GuardedHttpToolsProtocol", (_GuardedHttpTools,),
                    {"guard": guard, "header_bytes": header_bytes})
    return type("GuardedH11Protocol", (_GuardedH11,), {"guard": guard})
