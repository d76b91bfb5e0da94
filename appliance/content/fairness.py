"""Per-client fairness on the passenger network: connection caps and request rates per address.

Phones share one cabin Wi-Fi; a client is its IP address (the cabin network has no NAT between the
phones and us). :class:`ConnectionLimiter` caps open connections per client and in total;
:class:`RateLimiter` is a token bucket per client (``rate`` requests/s, ``burst`` at once). Both are
plain objects used from the event loop thread (no locks), with an injectable clock for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ConnectionLimiter", "RateLimiter"]


class ConnectionLimiter:
    """At most ``per_client`` open connections per address and ``total`` overall."""

    def __init__(self, per_client: int, total: int) -> None:
        """Set the caps (both >= 1)."""
        self.per_client = per_client
        self.total = total
        self.open: dict[str, int] = {}
        self.count = 0
        self.refused = 0

    def acquire(self, client: str) -> bool:
        """Count a new connection from ``client``; False (and nothing counted) if over a cap."""
        n = self.open.get(client, 0)
        if n >= self.per_client or self.count >= self.total:
            self.refused += 1
            return False
        self.open[client] = n + 1
        self.count += 1
        return True

    def release(self, client: str) -> None:
        """Uncount a connection that :meth:`acquire` admitted."""
        n = self.open.get(client, 0) - 1
        if n <= 0:
            self.open.pop(client, None)
        else:
            self.open[client] = n
        self.count = max(0, self.count - 1)


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
