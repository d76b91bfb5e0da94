"""Property-based HTTP fuzz against the real service: hypothesis-made raw requests on both ports.

schemathesis (tests/web/test_schemathesis.py) fuzzes what the OpenAPI specs describe; this goes
below them, at the bytes: request lines, methods, paths, queries, headers and bodies that no
spec admits (garbage, broken framing, odd Content-Length and Transfer-Encoding, JSON with NaN,
deep nesting, lone surrogates, binary), sent by hand on loopback. Properties: no answer is a 500
(an unhandled error), the log has no unhandled-exception trace, and afterwards the service is the
same process, answers the flight API, and still journals orders.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import TOKEN, HostileService

pytestmark = pytest.mark.hostile

ROUTES = ["/", "/api/v1/flight", "/api/v1/orders", "/api/v1/catalog", "/api/captive",
          "/api/v1/portal/accept", "/api/v1/survey", "/api/v1/feedback", "/api/v1/events",
          "/portal/", "/portal/app.js", "/media/x/master.m3u8", "/admin/v1/status",
          "/admin/v1/login", "/admin/v1/signals", "/admin/v1/journal", "/admin/v1/maintenance",
          "/admin/v1/intake/uploads", "/admin/v1/intake/uploads/abc/chunks",
          "/admin/v1/sync", "/admin/v1/cabin/devices", "/metrics", "/generate_204",
          "/hotspot-detect.html"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | text,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(text, kids, max_size=5),
    max_leaves=30)


def _json_body(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    st.just(b""),
    json_values.map(_json_body),
    st.builds(lambda depth: b"[" * depth + b"]" * depth, st.integers(1, 5000)),
    st.just(b'{"user": "\\ud800", "password": "x"}'),
    st.just(b'{"idempotency_key": "fuzz-key-1", "seat": "1A", "items": [{"sku": "TEA", "qty": NaN}]}'),
    st.binary(max_size=2048),
)
header_names = st.sampled_from(["Content-Type", "Authorization", "Range", "If-Range", "Cookie",
                                "Accept-Language", "X-Forwarded-For", "Expect", "Origin"])
header_values = st.one_of(
    st.sampled_from(["application/json", "text/plain", f"Bearer {TOKEN}", "Bearer x",
                     "bytes=0-", "bytes=-1", "bytes=9-1", "100-continue", "*"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A raw HTTP/1.1 request: mostly well-framed with hostile parts, sometimes broken framing."""
    method = draw(st.sampled_from(METHODS))
    path = draw(st.sampled_from(ROUTES))
    if draw(st.booleans()):
        path += draw(st.sampled_from(["?", "/", "%2e%2e/", "?after=", "?kind=", "?limit="]))
        path += draw(st.text(alphabet="abc%0123456789-_./?=&\\", max_size=30))
    body = draw(bodies)
    headers = draw(st.dictionaries(header_names, header_values, max_size=4))
    framing = draw(st.sampled_from(["length", "length", "chunked", "wrong-length", "none",
                                    "both"]))
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
    elif framing == "wrong-length":
        head.append(f"Content-Length: {draw(st.sampled_from(['-1', '1e3', '99999999999', 'x']))}")
    elif framing in ("chunked", "both"):
        head.append("Transfer-Encoding: chunked")
        if framing == "both":
            head.append(f"Content-Length: {len(body)}")
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    raw = "\r\n".join(head).encode("latin-1", "replace") + b"\r\n\r\n" + body
    if draw(st.integers(0, 9)) == 0:  # sometimes: garbage instead of a request line
        raw = draw(st.binary(min_size=1, max_size=512)) + b"\r\n\r\n"
    return raw


def send(port: int, raw: bytes, timeout: float = 3.0) -> int | None:
    """Send ``raw``, read until the server closes or ``timeout`` (s) passes without a byte.

    Returns the status code, or None without a status line (the server closed on garbage, or
    waits for a body that the request announced and never sent). The write side stays open: a
    half-closed connection reads as a client that went away.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass  # the server answered and closed early: read what it said
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and len(data) < 1 << 16:
                part = s.recv(65536)
                if not part:
                    break
                data += part
        except OSError:
            pass
    line = data.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[0].startswith(b"HTTP/") and line[1].isdigit() \
        else None


def test_raw_requests_never_break_the_service(make_service: Any) -> None:
    svc: HostileService = make_service()
    pid = svc.pid
    seen: dict[int | None, int] = {}

    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(raw=requests(), admin=st.booleans())
    def one(raw: bytes, admin: bool) -> None:
        status = send(svc.admin_port if admin else svc.passenger_port, raw)
        seen[status] = seen.get(status, 0) + 1
        assert status != 500, raw[:300]

    one()
    print(f"\n[fuzz] answers by status: {dict(sorted(seen.items(), key=str))}")
    assert svc.alive() and svc.pid == pid
    assert svc.passenger("/api/v1/flight")["mode"] in ("GROUND", "FLIGHT", "MAINTENANCE")
    order = {"idempotency_key": "after-the-fuzz-1", "seat": "3C", "items": [{"sku": "TEA", "qty": 1}]}
    status = send(svc.passenger_port, (
        "POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
        f"application/json\r\nContent-Length: {len(json.dumps(order))}\r\n\r\n"
        f"{json.dumps(order)}").encode(), timeout=10)
    assert status == 201
    log = svc.log()
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]
