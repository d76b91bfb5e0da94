"""The edge's body limit (BodyLimit) and the connection limiter's eviction, without a server."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.content.fairness import ConnectionLimiter
from appliance.web.limits import BodyLimit, BodyRule


async def _echo_len(scope: Any, receive: Any, send: Any) -> None:
    n = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        n += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(n).encode()})


def _run(mw: BodyLimit, method: str, path: str, headers: list[tuple[bytes, bytes]],
         pieces: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    sent: list[dict[str, Any]] = []
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        i = asked - 1
        if i < len(pieces):
            return {"type": "http.request", "body": pieces[i], "more_body": i < len(pieces) - 1}
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    asyncio.run(mw(scope, receive, send))
    return sent, asked


def test_content_length_over_the_route_limit_is_refused_without_reading() -> None:
    mw = BodyLimit(_echo_len, 16, [BodyRule("POST", "/login", 4)])
    sent, asked = _run(mw, "POST", "/login", [(b"content-length", b"5")], [b"x" * 5])
    assert sent[0]["status"] == 413 and asked == 0
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b"x" not in sent[1]["body"] and len(sent[1]["body"]) < 100
    sent, _ = _run(mw, "POST", "/other", [(b"content-length", b"5")], [b"x" * 5])
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"5"


def test_chunked_body_is_cut_when_it_crosses_the_limit() -> None:
    mw = BodyLimit(_echo_len, 10)
    sent, asked = _run(mw, "POST", "/x", [(b"transfer-encoding", b"chunked")], [b"a" * 6] * 100)
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [413]
    assert asked == 2  # the piece that crossed the limit is the last one read
    sent, _ = _run(mw, "POST", "/x", [(b"transfer-encoding", b"chunked")], [b"a" * 5] * 2)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"10"


def test_prefix_rules_and_first_match() -> None:
    mw = BodyLimit(_echo_len, 1, [BodyRule("PUT", "/up/", 100), BodyRule("*", "/up/x", 2)])
    assert mw.rule_for("PUT", "/up/x").max_bytes == 100
    assert mw.rule_for("POST", "/up/x").max_bytes == 2
    assert mw.rule_for("PUT", "/up").max_bytes == 1


class _Conn:
    def __init__(self) -> None:
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_limiter_evicts_the_oldest_idle_connection_at_the_total() -> None:
    lim = ConnectionLimiter(per_client=2, total=3)
    a, b, c, d, e = (_Conn() for _ in range(5))
    assert lim.acquire("1", a) and lim.acquire("2", b) and lim.acquire("3", c)
    lim.idle(a)
    lim.idle(b)
    lim.busy(a)  # a has a request in progress: b is the oldest idle one
    assert lim.acquire("4", d) and b.evicted and not a.evicted
    assert not lim.acquire("5", e)  # nothing idle left: refused
    assert not lim.acquire("1", _Conn())  # the same, whoever asks
    lim.release(b)  # already released by the eviction: a no-op
    assert lim.count == 3 and lim.evicted == 1 and lim.refused >= 1
