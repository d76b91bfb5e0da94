"""The simulated twin of the HTTP JSON driver: the same API, answered by an in-process device.

``SimulatedAccessPoint(name, device)`` calls :meth:`SimDevice.serve <.device.SimDevice.serve>`
directly (no sockets), with the same faults as the simulator process: a lost request or answer,
a device that is down or cut off raises :class:`~.errors.UnreachableError` (after
``timeout_s`` for a cut-off, as a real timeout would). Selected with ``driver = "sim"`` in the
settings; the daemon then keeps one :class:`SimDevice` per access point in memory.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from .device import SimDevice
from .driver import JsonApiAccessPoint
from .errors import UnreachableError

__all__ = ["SimulatedAccessPoint"]


class SimulatedAccessPoint(JsonApiAccessPoint):
    """An access point answered by ``device`` in this process; ``peer`` is "our" IP address."""

    driver: ClassVar[str] = "sim"

    def __init__(self, name: str, device: SimDevice, user: str = "admin", password: str = "admin",
                 *, peer: str = "127.0.0.1", timeout_s: float = 0.2) -> None:
        """Talk to ``device`` as ``user``."""
        super().__init__(name, user, password)
        self.device = device
        self.peer = peer
        self.timeout_s = timeout_s

    async def _exchange(self, method: str, path: str, body: dict[str, Any] | None, by: str,
                        ) -> tuple[int, Any]:
        token = None if path.endswith("/login") else self.token
        answer = await self.device.serve(method, path, token, body, by, self.peer)
        if answer is None:
            if self.device.up and not self.device.reachable_from(self.peer):
                await asyncio.sleep(self.timeout_s)
                raise UnreachableError(self.name, f"{method} {path}: timed out")
            raise UnreachableError(self.name, f"{method} {path}: no answer")
        return answer
