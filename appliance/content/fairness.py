"""Per-client fairness on the passenger network: connection caps and request rates per address.

Phones share one cabin Wi-Fi; a client is its IP address (the cabin network has no NAT between the
phones and us). :class:`ConnectionLimiter` caps open connections per client and in total
(evicting the oldest idle connection to make room);
:class:`RateLimiter` is a token bucket per client (``rate`` requests/s, ``burst`` at once). Both are
plain objects used from the event loop thread (no locks), with an injectable clock for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["ConnectionLimiter", "Evictable", "RateLimiter"]


class Evictable(Protocol):
    """A connection the limiter may close to make room: :meth:`evict` closes it (no wait)."""

    def evict(self) -> None:
        """Close the connection now; the limiter has already uncounted it."""


class ConnectionLimiter:
    """At most ``per_client`` open connections per address and ``total`` overall.

    Each connection is counted under its own object (so :meth:`release` is idempotent). A
    connection marked :meth:`idle` (waiting for a request head: new, or kept alive between
    requests) may be evicted: when the total is reached, a new connection takes the place of the
    oldest idle one, so connections that trickle their heads (or just sit there) cannot lock the
    others out. Over the per-client cap a new connection is refused.
    """

    def __init__(self, per_client: int, total: int) -> None:
        """Set the caps (both >= 1)."""
        self.per_client = per_client
        self.total = total
        self.open: dict[str, int] = {}
        self.count = 0
        self.refused = 0  #: connections refused (per-client cap, or the total with none idle)
        self.evicted = 0  #: idle connections closed to make room for a new one
        self._conns: dict[object, str] = {}
        self._idle: dict[Evictable, None] = {}  # insertion order: the oldest idle first

    def acquire(self, client: str, conn: object | None = None) -> bool:
        """Count a new connection ``conn`` from ``client``; False (nothing counted) if refused.

        At the total, the oldest idle connection is evicted (its ``evict()`` called) to make room.
        ``conn`` defaults to a fresh key; pass the connection to use :meth:`idle` and eviction.
        """
        n = self.open.get(client, 0)
        if n >= self.per_client or (self.count >= self.total and not self._evict_oldest()):
            self.refused += 1
            return False
        key = object() if conn is None else conn
        self._conns[key] = client
        self.open[client] = self.open.get(client, 0) + 1
        self.count += 1
        return True

    def idle(self, conn: Evictable) -> None:
        """``conn`` waits for a request head from now on: it may be evicted (oldest first)."""
        if conn in self._conns:
            self._idle.pop(conn, None)
            self._idle[conn] = None

    def busy(self, conn: object) -> None:
        """``conn`` has a request in progress: it is not evicted."""
        self._idle.pop(conn, None)  # type: ignore[call-overload]

    def release(self, conn: object) -> None:
        """Uncount ``conn`` (a no-op if it was never admitted or is already released)."""
        self._idle.pop(conn, None)  # type: ignore[call-overload]
        client = self._conns.pop(conn, None)
        if client is None:
            return
        n = self.open.get(client, 0) - 1
        if n <= 0:
            self.open.pop(client, None)
        else:
            self.open[client] = n
        self.count = max(0, self.count - 1)

    def _evict_oldest(self) -> bool:
        if not self._idle:
            return False
        conn = next(iter(self._idle))
        self.release(conn)
        self.evicted += 1
        conn.evict()
        return True


class RateLimiter:
    """A token bucket per client: ``rate`` tokens/s up to ``burst``; one request costs one token."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        """Buckets of idle clients are forgotten once more than ``max_clients`` are tracked."""
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._b: dict[str, tuple[float, float]] = {}
        self.limited = 0

    def allow(self, client: str) -> float:
        """Take a token for ``client``: 0.0 if allowed, else the seconds until one is available."""
        now = self.clock()
        tokens, last = self._b.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._b[client] = (tokens - 1.0, now)
            if len(self._b) > self.max_clients:
                self._forget(now)
            return 0.0
        self._b[client] = (tokens, now)
        self.limited += 1
        return (1.0 - tokens) / self.rate

    def _forget(self, now: float) -> None:
        full = self.burst / self.rate
        self._b = {c: v for c, v in self._b.items() if now - v[1] < full}
