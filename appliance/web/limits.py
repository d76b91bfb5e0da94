"""Request body limits at the web edge: an ASGI middleware around a whole app, before any parsing.

Each request gets the limit of the first :class:`BodyRule` matching its method and path, else the
port's default. A ``Content-Length`` over the limit is answered 413 at once: the app is not
called and no body byte is read (so ``Expect: 100-continue`` clients never send it). A body without
a length (chunked) is counted as it streams: the piece that crosses the limit is not handed on,
413 goes out, and the app's ``receive()`` answers ``http.disconnect`` from then on (as if the
client had left; whatever the app still sends is dropped). A rule may also bound the time the whole
body takes to arrive (absolute from the request head, 408 when it is up), so a body that
trickles in cannot hold a request open. The refusals carry ``Connection: close`` (the server drops
the rest of the body with the connection), are a few dozen bytes and never echo the input.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BodyLimit", "BodyLimitStats", "BodyRule"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BodyRule:
    """The body limit of one route.

    ``method`` ("*" for any), ``path`` (exact, or a prefix when it ends with "/"), ``max_bytes``,
    and ``timeout_s`` for the whole body (None: no deadline).
    """

    method: str
    path: str
    max_bytes: int
    timeout_s: float | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request ``method path`` falls under this rule."""
        if self.method != "*" and self.method != method:
            return False
        return path.startswith(self.path) if self.path.endswith("/") else path == self.path


@dataclass(slots=True)
class BodyLimitStats:
    """Requests refused: too large by Content-Length, too large while streaming, too slow."""

    by_length: int = 0
    while_streaming: int = 0
    too_slow: int = 0
    by_route: dict[str, int] = field(default_factory=dict)


def _refusal(status: int, reason: str, limit: int | None) -> tuple[Message, Message]:
    doc: dict[str, Any] = {"detail": reason}
    if limit is not None:
        doc["limit_bytes"] = limit
    body = json.dumps(doc).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body, "more_body": False}


class BodyLimit:
    """ASGI middleware: refuse request bodies over the route's limit (413) or too slow (408)."""

    def __init__(self, app: ASGIApp, default_bytes: int, rules: Sequence[BodyRule] = (),
                 default_timeout_s: float | None = None) -> None:
        """Wrap ``app``; ``default_bytes`` (and ``default_timeout_s``, s) for routes without a rule.

        ``rules`` are tried in order, the first match wins.
        """
        self.app = app
        self.default = BodyRule("*", "/", default_bytes, default_timeout_s)
        self.rules = tuple(rules)
        self.stats = BodyLimitStats()

    def rule_for(self, method: str, path: str) -> BodyRule:
        """The rule that applies to ``method path``."""
        for rule in self.rules:
            if rule.matches(method, path):
                return rule
        return self.default

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Pass ``scope`` on to the app within the route's body limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rule_for(scope["method"], scope["path"])
        length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None and (length > rule.max_bytes or length < 0):
            self._count(rule, "by_length")
            await self._send(send, *_refusal(413, "request body too large", rule.max_bytes))
            return
        if (length is None or length == 0) and not chunked:
            await self.app(scope, receive, send)  # no body: nothing to count
            return
        await self._guarded(scope, receive, send, rule)

    async def _guarded(self, scope: MutableMapping[str, Any], receive: Receive, send: Send,
                       rule: BodyRule) -> None:
        """Run the app, counting the body as it arrives and keeping its deadline."""
        deadline = None if rule.timeout_s is None else time.monotonic() + rule.timeout_s
        seen = 0
        done = False
        refused = False
        started = False

        async def refuse(status: int, reason: str, what: str) -> Message:
            nonlocal refused
            refused = True
            self._count(rule, what)
            if not started:
                await self._send(send, *_refusal(status, reason, rule.max_bytes
                                                 if status == 413 else None))
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal seen, done
            if refused:
                return {"type": "http.disconnect"}
            if done or deadline is None:
                msg = await receive()
            else:
                try:
                    msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    return await refuse(408, "request body not received in time", "too_slow")
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > rule.max_bytes:
                    return await refuse(413, "request body too large", "while_streaming")
                done = not msg.get("more_body", False)
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused:
                return  # the edge answered already: drop what the app says
            started = True
            await send(msg)

        await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def _send(send: Send, start: Message, body: Message) -> None:
        await send(start)
        await send(body)

    def _count(self, rule: BodyRule, what: str) -> None:
        setattr(self.stats, what, getattr(self.stats, what) + 1)
        key = f"{rule.method} {rule.path}"
        self.stats.by_route[key] = self.stats.by_route.get(key, 0) + 1
