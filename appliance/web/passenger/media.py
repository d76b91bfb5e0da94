"""Media on the passenger port (the ASGI path): same answers as the sendfile server, bytes via Python.

Mounted at ``/media`` so every media URL also works same-origin on the passenger port (a player that
cannot reach the media port, the tests). It is the slow path — file bytes are read in 256 KiB
chunks in a worker thread and sent through uvicorn — and the portal uses the sendfile server when
the catalog names its port. Statuses and headers come from the same
:class:`~appliance.content.media.MediaFiles`, so both paths answer ranges identically.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ...content.media import MediaFiles

__all__ = ["MediaASGI"]

CHUNK = 256 * 1024
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class MediaASGI:
    """A pure ASGI app answering ``/media/...`` requests from ``files``."""

    def __init__(self, files: MediaFiles) -> None:
        """Answer from ``files``."""
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request (HTTP only)."""
        if scope["type"] != "http":
            return
        raw = scope.get("raw_path") or scope["path"].encode("utf-8")
        target = bytes(raw).decode("latin-1")
        if not target.startswith("/media/"):
            target = "/media" + target
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            key = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
        client = scope.get("client")
        ans = self.files.answer(scope["method"], target, headers, client[0] if client else "unknown")
        await send({"type": "http.response.start", "status": ans.status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ans.headers]})
        if ans.fd is None:
            await send({"type": "http.response.body",
                        "body": ans.body if scope["method"] != "HEAD" else b""})
            return
        try:
            pos, left = ans.start, ans.length
            while left > 0:
                chunk = await asyncio.to_thread(os.pread, ans.fd, min(CHUNK, left), pos)
                if not chunk:
                    break
                pos += len(chunk)
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        finally:
            os.close(ans.fd)
        if left > 0:  # the file shrank under us: end the (now short) response
            await send({"type": "http.response.body", "body": b""})
