"""HTTP client of the ground receiver, one per link (httpx, async).

``GET {url}/v1/watermarks`` (the probe and the resume point) and ``POST {url}/v1/batches``.
Failures are sorted for the uplink: :class:`TransientError` (network errors, timeouts, 5xx, 429,
an unreadable answer) is worth retrying; :class:`RejectedError` (other 4xx) is not. Every
request's size on the wire (request line, headers and body, and the same for the answer) is
added to :attr:`ReceiverClient.wire_bytes` and passed to ``on_bytes`` (the link budget).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from .batch import Batch
from .errors import RejectedError, TransientError

__all__ = ["ReceiverClient"]

log = logging.getLogger(__name__)

#: Size of each write of a body, bytes.
CHUNK = 65536


def _headers_size(headers: httpx.Headers) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.raw) + 2


class ReceiverClient:
    """Talks to one receiver URL over one link.

    ``bind_device``: an interface name to pin the sockets to (SO_BINDTODEVICE; needs
    CAP_NET_RAW), or None to let the routing table choose. Timeouts in seconds.
    """

    def __init__(self, base_url: str, token: str, *, connect_timeout_s: float = 5.0,
                 request_timeout_s: float = 30.0, bind_device: str | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        """Create the connection pool (nothing is sent before the first request)."""
        opts: list[tuple[int, int, bytes]] = []
        if bind_device:
            opts.append((socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bind_device.encode()))
        transport = httpx.AsyncHTTPTransport(retries=0, socket_options=opts)
        timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(transport=transport, timeout=timeout, headers={
            "Authorization": f"Bearer {token}", "User-Agent": "cabin-server-sync/1"})
        self.on_bytes = on_bytes
        self.wire_bytes = 0

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def _request(self, method: str, path: str, body_size: int = 0, **kw: Any,
                       ) -> dict[str, Any]:
        req = self._client.build_request(method, self.base_url + path, **kw)
        size = len(method) + len(str(req.url.raw_path)) + 11 + _headers_size(req.headers)
        size += body_size
        try:
            try:
                resp = await self._client.send(req)
            finally:
                self._count(size)
            self._count(15 + _headers_size(resp.headers) + len(resp.content))
        except httpx.HTTPError as e:  # connect, read, write, timeouts, protocol errors
            raise TransientError(f"{method} {path}: {type(e).__name__}: {e}") from e
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {"error": "unreadable", "detail": resp.text[:200]}
        if resp.status_code >= 500 or resp.status_code == 429:
            raise TransientError(f"{method} {path}: {resp.status_code} {body.get('detail', '')}")
        if resp.status_code >= 400:
            raise RejectedError(resp.status_code, str(body.get("error", "?")),
                                str(body.get("detail", body)))
        if not isinstance(body, dict):
            raise TransientError(f"{method} {path}: answer is not a JSON object")
        return body

    def _count(self, n: int) -> None:
        self.wire_bytes += n
        if self.on_bytes is not None:
            self.on_bytes(n)

    async def watermarks(self) -> dict[str, int]:
        """The receiver's acknowledged watermark per stream. Raises TransientError/RejectedError."""
        body = await self._request("GET", "/v1/watermarks")
        try:
            return {str(k): int(v) for k, v in body["watermarks"].items()}
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise TransientError(f"watermarks answer malformed: {body!r:.200}") from e

    async def post(self, batch: Batch, on_sent: Callable[[], None] | None = None,
                   ) -> dict[str, Any]:
        """Send ``batch``; returns the receiver's answer (``watermarks``, ``errors``, counts).

        ``on_sent`` is called once the whole body has been handed to the socket (the answer is
        still to come): the uplink may then start the next batch. Raises TransientError (retry
        the same batch) or RejectedError.
        """
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(batch.body), CHUNK):
                yield batch.body[i:i + CHUNK]
            log.debug("body of %s handed to the socket", batch.batch_id)
            if on_sent is not None:
                on_sent()

        body = await self._request("POST", "/v1/batches", len(batch.body), content=chunks(),
                                   headers={"Content-Type": "application/json",
                                            "Content-Encoding": "zstd",
                                            "Content-Length": str(len(batch.body)),
                                            "Idempotency-Key": batch.batch_id})
        if not isinstance(body.get("watermarks"), dict):
            raise TransientError(f"batch answer without watermarks: {body!r:.200}")
        return body
