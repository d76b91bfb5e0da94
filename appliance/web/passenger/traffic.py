"""Passenger traffic counters: bytes served and passengers connected, as an ASGI middleware.

"Connected" = distinct client addresses seen within ``window_s`` (phones on the cabin Wi-Fi keep no
session with us, so recent activity is the honest measure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["PassengerTraffic", "TrafficMiddleware"]

Scope = dict[str, Any]
Message = dict[str, Any]


class PassengerTraffic:
    """Counters shared by the passenger middleware and the metrics."""

    def __init__(self, window_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        """Count clients seen in the last ``window_s`` seconds."""
        self.window_s = window_s
        self._clock = clock
        self.bytes_served = 0
        self.requests = 0
        self._seen: dict[str, float] = {}

    def saw(self, client: str) -> None:
        """Note a request from ``client``."""
        self.requests += 1
        self._seen[client] = self._clock()
        if len(self._seen) > 4096:
            self._prune()

    def _prune(self) -> None:
        cutoff = self._clock() - self.window_s
        self._seen = {c: t for c, t in self._seen.items() if t >= cutoff}

    def connected(self) -> int:
        """Distinct clients seen within the window."""
        self._prune()
        return len(self._seen)


class TrafficMiddleware:
    """Pure ASGI middleware counting response body bytes and client addresses."""

    def __init__(self, app: Any, traffic: PassengerTraffic) -> None:
        """Wrap ``app``."""
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Callable[..., Any],
                       send: Callable[[Message], Any]) -> None:
        """Count, then pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        self.traffic.saw(client[0] if client else "unknown")
        traffic = self.traffic

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                traffic.bytes_served += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counting_send)
