"""HTTP client of the ground receiver, one per link (httpx, async).

``GET {url}/v1/watermarks`` (the probe and the resume point) and ``POST {url}/v1/batches``.
This module is the only part of the sync that knows HTTP status codes; it maps them to the
sync's errors (:mod:`appliance.sync.errors`), typed by what happened:

====================================================  ===========================================
network error, timeout, 5xx, 429, unreadable answer   :class:`ReceiverUnavailable` (retry)
413                                                   :class:`BatchTooLarge` (send smaller ones)
any other 4xx                                         :class:`ReceiverRejected` (not retried as is)
====================================================  ===========================================

Answers come back typed (:class:`BatchAnswer`). Every request's size on the wire (request line,
headers and body, and the same for the answer) is added to :attr:`ReceiverClient.wire_bytes` and
passed to ``on_bytes`` (the link budget).
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any, TypedDict

import httpx

from .batch import Batch
from .errors import BatchTooLarge, ReceiverRejected, ReceiverUnavailable
from .identity import AircraftKey

__all__ = ["GAP", "BatchAnswer", "ReceiverClient", "StreamRefusal"]

log = logging.getLogger(__name__)

#: Linux socket option (asm-generic/socket.h); not exported by Python's socket module.
SO_MAX_PACING_RATE = 47
#: Size of each write of a body, bytes.
CHUNK = 65536
#: The receiver's code for a stream part it deferred: an earlier seq has not arrived yet.
GAP = "gap"


class StreamRefusal(TypedDict):
    """One stream part of a batch the receiver did not take (``code`` :data:`GAP`: resume)."""

    stream: str
    code: str
    detail: str


class BatchAnswer(TypedDict):
    """The receiver's answer to a batch, as the uplink uses it.

    ``watermarks``: per stream, the last seq durable on the ground; ``applied``: records new to
    the receiver; ``errors``: stream parts not taken; ``resumed``: True when the answer was not
    the POST's but the watermarks asked after an interruption (the batch had been taken).
    """

    watermarks: dict[str, int]
    applied: int
    errors: list[StreamRefusal]
    resumed: bool


def _headers_size(headers: httpx.Headers) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.raw) + 2


class ReceiverClient:
    """Talks to one receiver URL over one link.

    ``bind_device``: an interface name to pin the sockets to (SO_BINDTODEVICE; needs
    CAP_NET_RAW), or None to let the routing table choose. Timeouts in seconds. ``key``: the
    aircraft's key: every request is signed (:mod:`.identity`); without it the legacy bearer
    ``token`` is sent.
    """

    def __init__(self, base_url: str, token: str, *, connect_timeout_s: float = 5.0,
                 request_timeout_s: float = 30.0, bind_device: str | None = None,
                 on_bytes: Callable[[int], None] | None = None,
                 key: AircraftKey | None = None, pacing_bps: int | None = None) -> None:
        """Create the connection pool (nothing is sent before the first request).

        ``pacing_bps``: pace each socket at this rate (bits/s of IP packets; Linux
        SO_MAX_PACING_RATE, TCP's own pacing), or None.
        """
        opts: list[tuple[int, int, int] | tuple[int, int, bytes | bytearray]] = []
        if bind_device:
            opts.append((socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bind_device.encode()))
        if pacing_bps:
            opts.append((socket.SOL_SOCKET, SO_MAX_PACING_RATE, min(2**31 - 1, pacing_bps // 8)))
        transport = httpx.AsyncHTTPTransport(retries=0, socket_options=opts, verify=_tls())
        timeout = httpx.Timeout(request_timeout_s, connect=connect_timeout_s)
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "cabin-server-sync/1"}
        if key is None:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(transport=transport, timeout=timeout, headers=headers)
        self.key = key
        #: The ``downlink`` documents of the last watermarks answer (``appliance.sync.downlink``).
        self.last_downlink: list[Any] = []
        self.on_bytes = on_bytes
        self.wire_bytes = 0

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def _request(self, method: str, path: str, payload: bytes = b"", **kw: Any,
                       ) -> dict[str, Any]:
        if self.key is not None:
            full = httpx.URL(self.base_url + path).path
            kw["headers"] = {**kw.get("headers", {}), **self.key.headers(method, full, payload)}
        req = self._client.build_request(method, self.base_url + path, **kw)
        size = len(method) + len(str(req.url.raw_path)) + 11 + _headers_size(req.headers)
        size += len(payload)
        try:
            try:
                resp = await self._client.send(req)
            finally:
                self._count(size)
            self._count(15 + _headers_size(resp.headers) + len(resp.content))
        except httpx.HTTPError as e:  # connect, read, write, timeouts, protocol errors
            raise ReceiverUnavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        try:
            body = resp.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = {"error": "unreadable", "detail": resp.text[:200]}
        code = resp.status_code
        if code >= 500 or code == HTTPStatus.TOO_MANY_REQUESTS:
            raise ReceiverUnavailable(f"{method} {path}: {code} {_field(body, 'detail', '')}")
        if code >= 400:
            log.info("%s %s refused: %d %s", method, path, code, _field(body, "error", "?"))
            kind = BatchTooLarge if code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE else ReceiverRejected
            raise kind(_field(body, "error", "?"), _field(body, "detail", body))
        if not isinstance(body, dict):
            raise ReceiverUnavailable(f"{method} {path}: answer is not a JSON object")
        return body

    def _count(self, n: int) -> None:
        self.wire_bytes += n
        if self.on_bytes is not None:
            self.on_bytes(n)

    async def watermarks(self) -> dict[str, int]:
        """The receiver's acknowledged watermark per stream.

        Raises ReceiverUnavailable or ReceiverRejected.
        """
        body = await self._request("GET", "/v1/watermarks")
        docs = body.get("downlink")
        self.last_downlink = docs if isinstance(docs, list) else []
        try:
            return _watermarks(body["watermarks"])
        except (KeyError, AttributeError, TypeError, ValueError) as e:
            raise ReceiverUnavailable(f"watermarks answer malformed: {body!r:.200}") from e

    async def ack(self, body: bytes) -> None:
        """``POST /v1/downlink/ack`` with this JSON body (a downlink acknowledgement).

        Raises ReceiverUnavailable or ReceiverRejected.
        """
        await self._request("POST", "/v1/downlink/ack", body, content=body,
                            headers={"Content-Type": "application/json"})

    async def post(self, batch: Batch, on_sent: Callable[[], None] | None = None,
                   ) -> BatchAnswer:
        """Send ``batch``; returns the receiver's answer (``watermarks``, ``errors``, counts).

        ``on_sent`` is called once the whole body has been handed to the socket (the answer is
        still to come): the uplink may then start the next batch. Raises ReceiverUnavailable
        (retry the same batch), BatchTooLarge or ReceiverRejected.
        """
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(batch.body), CHUNK):
                yield batch.body[i:i + CHUNK]
            log.debug("body of %s handed to the socket", batch.batch_id)
            if on_sent is not None:
                on_sent()

        body = await self._request("POST", "/v1/batches", batch.body, content=chunks(),
                                   headers={"Content-Type": "application/json",
                                            "Content-Encoding": "zstd",
                                            "Content-Length": str(len(batch.body)),
                                            "Idempotency-Key": batch.batch_id})
        if not isinstance(body.get("watermarks"), dict):
            raise ReceiverUnavailable(f"batch answer without watermarks: {body!r:.200}")
        try:
            return BatchAnswer(watermarks=_watermarks(body["watermarks"]),
                               applied=int(body.get("applied", 0)),
                               errors=[_refusal(e) for e in body.get("errors") or []],
                               resumed=False)
        except (AttributeError, TypeError, ValueError) as e:
            raise ReceiverUnavailable(f"batch answer malformed: {body!r:.200}") from e


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: loading the CA store takes ~0.1 s of blocked loop."""
    return ssl.create_default_context()


def _field(body: Any, key: str, default: Any) -> str:
    """``body[key]`` as text, or ``default`` (as text) when the body is no object or lacks it."""
    return str(body.get(key, default) if isinstance(body, dict) else default)


def _watermarks(raw: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in raw.items()}


def _refusal(err: Any) -> StreamRefusal:
    if not isinstance(err, dict):
        return StreamRefusal(stream="None", code="", detail=str(err))
    return StreamRefusal(stream=str(err.get("stream")), code=str(err.get("code")),
                         detail=str(err.get("detail", err)))
