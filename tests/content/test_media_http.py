"""Media serving over real HTTP: the sendfile server (httpx, curl, raw sockets) and the ASGI path.

Every range case gets the RFC 9110 answer on both paths; traversal attempts (plain, percent- and
double-encoded, symlinks planted after install) get 404; bad requests get a clear 4xx and the
server stays up.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.content.manifest import MANIFEST
from appliance.modes.policy import Mode
from appliance.web import passenger
from appliance.web.passenger.media import MediaASGI
from firmware_bridge.labels import LabelTable

from .conftest import Env, ServerThread, copy_pkg, needs_ffmpeg

pytestmark = needs_ffmpeg


class Client:
    """GET/HEAD with headers against one media path; returns (status, headers, body)."""

    def __init__(self, kind: str, env: Env, srv: ServerThread | None) -> None:
        self.kind = kind
        self.http = httpx.Client(base_url=srv.base, timeout=10) if srv is not None else None
        self.app = passenger.create_app(AvionicsChain(LabelTable.default()),
                                        mounts=[("/media", MediaASGI(env.files))])

    def req(self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
            ) -> tuple[int, httpx.Headers, bytes]:
        if self.http is not None:
            r = self.http.request(method, path, headers=headers or {})
            return r.status_code, r.headers, r.content

        async def run() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                         base_url="http://t") as c:
                return await c.request(method, path, headers=headers or {})
        r = asyncio.run(run())
        return r.status_code, r.headers, r.content

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


@pytest.fixture(params=["sendfile", "asgi"])
def client(request: pytest.FixtureRequest, served: tuple[Env, ServerThread]) -> Iterator[Client]:
    env, srv = served
    c = Client(request.param, env, srv if request.param == "sendfile" else None)
    yield c
    c.close()


def film(env: Env) -> tuple[str, Path, list[str]]:
    t = env.catalog.titles["film"]
    segs = sorted(p for p in t.manifest.files if p.endswith(".ts"))
    return f"/media/film/{t.v16}/", t.path, segs


def test_whole_files_types_and_caching(client: Client, served: tuple[Env, ServerThread]) -> None:
    env, _ = served
    base, root, segs = film(env)
    st, h, body = client.req(base + segs[0])
    assert st == 200 and body == (root / segs[0]).read_bytes()
    assert h["content-type"] == "video/mp2t" and h["accept-ranges"] == "bytes"
    assert h["cache-control"] == "public, max-age=31536000, immutable"
    assert h["etag"].startswith('"') and h["last-modified"].endswith("GMT")
    assert h["content-length"] == str(len(body))
    types = {"hls/master.m3u8": "application/vnd.apple.mpegurl", "poster.jpg": "image/jpeg"}
    for rel, ctype in types.items():
        st, h, _ = client.req(base + rel)
        assert (st, h["content-type"]) == (200, ctype)
    book = env.catalog.titles["book"]
    st, h, _ = client.req(f"/media/book/{book.v16}/book/index.html")
    assert (st, h["content-type"]) == (200, "text/html; charset=utf-8")
    st, h, _ = client.req(f"/media/book/{book.v16}/cover.svg")
    assert (st, h["content-type"]) == (200, "image/svg+xml")


def test_ranges(client: Client, served: tuple[Env, ServerThread]) -> None:
    env, _ = served
    base, root, segs = film(env)
    data = (root / segs[0]).read_bytes()
    n = len(data)
    url = base + segs[0]
    etag = client.req(url)[1]["etag"]
    lm = client.req(url)[1]["last-modified"]
    cases: list[tuple[dict[str, str], int, bytes, str | None]] = [
        ({"Range": "bytes=0-99"}, 206, data[:100], f"bytes 0-99/{n}"),
        ({"Range": "bytes=-100"}, 206, data[-100:], f"bytes {n - 100}-{n - 1}/{n}"),
        ({"Range": f"bytes={n - 10}-"}, 206, data[-10:], f"bytes {n - 10}-{n - 1}/{n}"),
        ({"Range": "bytes=100-999999999999"}, 206, data[100:], f"bytes 100-{n - 1}/{n}"),
        ({"Range": f"bytes={n}-"}, 416, b"", f"bytes */{n}"),
        ({"Range": "bytes=zz-1"}, 416, b"", f"bytes */{n}"),
        ({"Range": "bytes=9-1"}, 416, b"", f"bytes */{n}"),
        ({"Range": "lines=1-2"}, 200, data, None),
        ({"Range": "bytes=0-9", "If-Range": etag}, 206, data[:10], f"bytes 0-9/{n}"),
        ({"Range": "bytes=0-9", "If-Range": '"stale"'}, 200, data, None),
        ({"Range": "bytes=0-9", "If-Range": lm}, 206, data[:10], f"bytes 0-9/{n}"),
        ({"If-None-Match": etag}, 304, b"", None),
        ({"If-Modified-Since": lm}, 304, b"", None),
    ]
    for headers, status, body, crange in cases:
        st, h, got = client.req(url, headers)
        assert (st, got) == (status, body), (client.kind, headers)
        assert h.get("content-range") == crange, (client.kind, headers)
    st, h, got = client.req(url, method="HEAD")
    assert (st, got, h["content-length"]) == (200, b"", str(n))
    st, _, _ = client.req(url, method="POST")
    assert st == 405


def test_unknown_and_traversal_targets_are_404(served: tuple[Env, ServerThread]) -> None:
    env, _ = served
    base, _, _ = film(env)
    v = base.split("/")[3]
    bad = [
        "/media/nope/0123456789abcdef/hls/master.m3u8",
        "/media/film/0000000000000000/hls/master.m3u8",  # an old or made-up version
        base + "package.json",  # exists on disk, not a served file
        base + "../../../../../../etc/passwd",
        base + "hls/../../../../../../etc/passwd",
        base + "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        base + "%252e%252e/%252e%252e/etc/passwd",  # double-encoded
        base + "hls%2f..%2f..%2f..%2fetc%2fpasswd",
        base + "..%5c..%5cetc%5cpasswd",
        base + "hls/master.m3u8%00.jpg",
        base + "/etc/passwd",
        base + "hls//master.m3u8",
        base + "./hls/master.m3u8",
        f"/media/film/{v}/%ff%fe",
        "/media/../media/film/" + v + "/poster.jpg",
        "/media/film",
    ]
    for target in bad:
        assert env.files.answer("GET", target, {}, "t").status == 404, target


def _raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_raw_traversal_and_bad_requests_on_the_wire(served: tuple[Env, ServerThread]) -> None:
    env, srv = served
    base, _, _ = film(env)
    port = srv.server.port
    for target in (base + "../../../../etc/passwd", base + "%2e%2e/%2e%2e/package.json",
                   base + "%252e%252e%252fpackage.json"):
        out = _raw(port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 404 "), (target, out[:80])
    cases = [
        (b"GARBAGE\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 400 "),  # no Host
        (b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", b"HTTP/1.1 400 "),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
        (b"GET /x HTTP/2.0\r\nHost: x\r\n\r\n", b"HTTP/1.1 400 "),
        (b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n", b"HTTP/1.1 400 "),
    ]
    for data, start in cases:
        assert _raw(port, data).startswith(start), data[:40]
    # the server is still up, and pipelined requests are answered in order on one connection
    req = f"GET {base}hls/master.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n"
    out = _raw(port, (req * 2 + f"GET {base}poster.jpg HTTP/1.1\r\nHost: x\r\nRange: bytes=0-2\r\n"
                      "Connection: close\r\n\r\n").encode())
    assert out.count(b"HTTP/1.1 200 OK") == 2 and out.count(b"HTTP/1.1 206 ") == 1
    assert out.endswith(b"\xff\xd8\xff")


def test_curl_range_cases(served: tuple[Env, ServerThread]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    env, srv = served
    base, root, segs = film(env)
    url = srv.base + base + segs[0]
    n = (root / segs[0]).stat().st_size

    def curl(*args: str) -> tuple[str, str]:
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "-w",
                              "%{http_code} %{size_download}", *args], capture_output=True,
                             timeout=20, check=False)
        head, _, tail = out.stdout.decode("latin-1").rpartition("\r\n\r\n")
        return head.lower(), tail

    etag = curl(url)[0].split("etag: ")[1].split("\r\n")[0]
    cases = [
        ((url,), f"200 {n}", None),
        (("-r", "0-99", url), "206 100", f"content-range: bytes 0-99/{n}"),
        (("-r", "-100", url), "206 100", f"content-range: bytes {n - 100}-{n - 1}/{n}"),
        (("-r", f"{n - 5}-", url), "206 5", f"content-range: bytes {n - 5}-{n - 1}/{n}"),
        (("-r", f"{n + 10}-", url), "416 0", f"content-range: bytes */{n}"),
        (("-H", "Range: bytes=x-y", url), "416 0", f"content-range: bytes */{n}"),
        (("-r", "0-9", "-H", f"If-Range: {etag}", url), "206 10", "content-range: bytes 0-9/"),
        (("-r", "0-9", "-H", 'If-Range: "other"', url), f"200 {n}", None),
        (("-H", f"If-None-Match: {etag}", url), "304 0", None),
        (("-I", url), "200 0", f"content-length: {n}"),
        (("--path-as-is", srv.base + base + "../../../../etc/passwd"), "404", None),
        (("--path-as-is", srv.base + base + "%2e%2e/%2e%2e/%2e%2e/etc/passwd"), "404", None),
    ]
    for args, want, header in cases:
        head, got = curl(*args)
        assert got.startswith(want), (args, got)
        if header:
            assert header in head, (args, head)


def test_planted_symlinks_and_missing_segments(served: tuple[Env, ServerThread],
                                               caplog: pytest.LogCaptureFixture) -> None:
    env, srv = served
    base, root, segs = film(env)
    os.chmod(root / "hls", 0o755)
    (root / segs[0]).unlink()
    (root / segs[0]).symlink_to("/etc/passwd")  # a file swapped for a symlink
    (root / segs[-1]).unlink()  # a segment gone: a corrupt package
    v1 = root / "hls" / "v1"
    shutil.rmtree(v1)
    v1.symlink_to(root / "hls" / "v0")  # a directory swapped for a symlink
    with httpx.Client(base_url=srv.base) as c:
        assert c.get(base + segs[0]).status_code == 404
        assert c.get(base + segs[-1]).status_code == 404
        v1_seg = next(s for s in segs if s.startswith("hls/v1/"))
        assert c.get(base + v1_seg).status_code == 404
        assert c.get(base + "hls/master.m3u8").status_code == 200  # still serving
    assert "corrupt package" in caplog.text


def test_mode_policy_on_media(served: tuple[Env, ServerThread], video_pkg: Path,
                              tmp_path: Path) -> None:
    env, srv = served
    pkg = copy_pkg(video_pkg, tmp_path / "fo")
    man = json.loads((pkg / MANIFEST).read_text())
    man |= {"id": "flight-film", "flight_only": True}
    (pkg / MANIFEST).write_text(json.dumps(man))
    asyncio.run(env.store.install(pkg))
    srv.call(env.refresh)
    t = env.catalog.titles["flight-film"]
    url = srv.base + t.url("hls/master.m3u8")
    with httpx.Client() as c:
        assert c.get(url).status_code == 403  # GROUND: available after take-off
        assert c.get(srv.base + t.url("poster.jpg")).status_code == 200  # the catalog shows it
        for p in t.manifest.posters:  # and its responsive sizes
            assert c.get(srv.base + t.url(p.path)).status_code == 200, p
        entry = next(x for x in json.loads(env.catalog.body().body)["titles"]
                     if x["id"] == "flight-film")
        assert [p["w"] for p in entry["posters"]] == [320, 480, 640]
        env.mode = Mode.FLIGHT
        assert c.get(url).status_code == 200
        env.mode = Mode.MAINTENANCE
        r = c.get(url)
        assert r.status_code == 503 and "closed" in r.text


def test_connection_and_rate_limits(env: Env, book_pkg: Path) -> None:
    env.install(book_pkg)
    srv = ServerThread(env.files, per_client=3, rate=5.0, burst=5.0)
    try:
        socks = [socket.create_connection(("127.0.0.1", srv.server.port)) for _ in range(3)]
        extra = _raw(srv.server.port, b"")
        assert extra.startswith(b"HTTP/1.1 503 "), extra[:60]
        for s in socks:
            s.close()
        url = srv.base + env.catalog.titles["book"].url("book/index.html")
        with httpx.Client() as c:
            codes = [c.get(url).status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
    finally:
        srv.close()


def test_usage_is_journaled(served: tuple[Env, ServerThread]) -> None:
    env, srv = served
    base, _, segs = film(env)
    with httpx.Client(base_url=srv.base) as c:
        for seg in segs:
            assert c.get(base + seg).status_code == 200
    n = asyncio.run_coroutine_threadsafe(env.usage.flush(everything=True), srv.loop).result(10)
    assert n == 1
    db = sqlite3.connect(env.db)
    (payload,) = db.execute("SELECT payload FROM outbox WHERE stream = 'usage'").fetchone()
    rec = json.loads(payload)
    duration = env.catalog.titles["film"].manifest.duration_s
    assert rec["content_id"] == "film" and rec["requests"] == len(segs)
    assert rec["media_s"] == pytest.approx(duration, abs=0.5)  # each position counted once
    assert len(rec["client"]) == 16 and "127.0.0.1" not in payload
