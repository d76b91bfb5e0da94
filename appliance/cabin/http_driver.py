"""The HTTP JSON driver: the access points' API (see :mod:`.driver`) over HTTP with httpx.

One ``httpx.AsyncClient`` per access point (``base_url`` like ``http://127.0.10.5:8080``); no
connection is kept between commands (``Connection: close``): a device that reboots or drops a
connection never leaves a half-used one behind. Timeouts: ``connect_timeout_s`` to open the TCP
connection, ``request_timeout_s`` for the whole answer. Refused, reset, timed out or cut answers
raise :class:`~.errors.UnreachableError`; a body that is not JSON raises DeviceError.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx

from .driver import JsonApiAccessPoint
from .errors import DeviceError, UnreachableError

__all__ = ["HttpJsonAccessPoint"]

#: Header naming who is asking (a job's idempotency key or "poll"): the device logs it.
BY_HEADER = "X-Request-By"


class HttpJsonAccessPoint(JsonApiAccessPoint):
    """An access point reached at ``url`` over HTTP."""

    driver: ClassVar[str] = "http-json"

    def __init__(self, name: str, url: str, user: str, password: str, *,
                 connect_timeout_s: float = 2.0, request_timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Talk to ``url``; ``transport`` replaces the network (tests)."""
        super().__init__(name, user, password)
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url, transport=transport,
            timeout=httpx.Timeout(request_timeout_s, connect=connect_timeout_s),
            headers={"Connection": "close"}, trust_env=False)

    async def _exchange(self, method: str, path: str, body: dict[str, Any] | None, by: str,
                        ) -> tuple[int, Any]:
        headers = {BY_HEADER: by}
        if self.token is not None and not path.endswith("/login"):
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            r = await self._client.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException as e:
            raise UnreachableError(self.name, f"{method} {path}: timed out ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise UnreachableError(self.name, f"{method} {path}: {type(e).__name__}: {e}") from e
        try:
            data = r.json() if r.content else None
        except json.JSONDecodeError as e:
            raise DeviceError(self.name, f"{method} {path}: answer is not JSON") from e
        return r.status_code, data

    async def _close(self) -> None:
        await self._client.aclose()
