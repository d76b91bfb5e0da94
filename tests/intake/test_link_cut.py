"""A push over a link cut 5 times completes by resuming; no stored byte is sent twice (counted).

The real intake router (with the admin auth dependency) runs under uvicorn on loopback; a small
TCP proxy in front of it cuts each of the first 5 connections after ~100 KB from the client.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from appliance.intake.bundle import PAYLOAD
from appliance.intake.hangar import main as hangar_main
from appliance.intake.hangar import push
from appliance.settings import AdminAuthSettings
from appliance.web.admin.auth import AdminAuth
from appliance.web.admin.intake import make_router

from .helpers import KEYS, World, make_bundle

TOKEN = "intake-test-token-0123456789"


class CuttingProxy:
    """Loopback TCP proxy: the first ``cuts`` connections are closed after ``budget`` bytes up."""

    def __init__(self, target: int, cuts: int, budget: int) -> None:
        self.target, self.cuts_left, self.budget = target, cuts, budget
        self.cuts = 0
        self.upstream_bytes = 0
        self.lock = threading.Lock()
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                cut = self.cuts_left > 0
                self.cuts_left -= cut
            u = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(c, u, cut, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False, False), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, cut: bool, up: bool) -> None:
        n = 0
        try:
            while data := a.recv(16384):
                if cut and n + len(data) > self.budget:
                    with self.lock:
                        self.cuts += 1
                    b.sendall(data[: self.budget - n])
                    with self.lock:
                        self.upstream_bytes += self.budget - n
                    break
                b.sendall(data)
                n += len(data)
                if up:
                    with self.lock:
                        self.upstream_bytes += len(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.stop = True
        self.srv.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, int]]:
    w = World(tmp_path)
    app = FastAPI()
    auth = AdminAuth([], TOKEN, AdminAuthSettings())
    app.include_router(make_router(w.service, auth), prefix="/admin/v1")
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))

    async def main() -> None:
        await w.service.start()
        await server.serve(sockets=[sock])

    t = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    t.start()
    while not server.started:
        threading.Event().wait(0.01)
    try:
        yield w, port
    finally:
        server.should_exit = True
        t.join(10)
        w.close()


def test_push_resumes_over_five_cuts(served: tuple[World, int], tmp_path: Path) -> None:
    w, port = served
    b = make_bundle(tmp_path, 1, {"film": os.urandom(1_000_000).hex()}, KEYS[:2])
    length = (b / PAYLOAD).stat().st_size
    proxy = CuttingProxy(port, cuts=5, budget=100_000)
    try:
        res = push(b, f"http://127.0.0.1:{proxy.port}", TOKEN, retry_s=0.05, give_up_s=60)
    finally:
        proxy.close()
    assert proxy.cuts == 5 and res.resumes >= 5
    assert res.status["state"] == "active" and "film" in w.served()
    # Every payload byte the appliance stored, it stored once: nothing stored was re-sent.
    assert w.service.bytes_stored == length
    # The client re-sent only bytes lost in flight at each cut (at most one chunk per cut).
    assert length <= res.bytes_sent <= length + 5 * 65536
    assert res.installed is not None and res.installed["installed"]["content"]["version"] == 1


def test_hangar_cli_status_and_help(served: tuple[World, int], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, port = served
    for cmd in ("keygen", "build", "sign", "push", "status"):
        with pytest.raises(SystemExit):
            hangar_main([cmd, "--help"])
        assert "usage:" in capsys.readouterr().out
    key = tmp_path / "k1"
    assert hangar_main(["keygen", str(key)]) == 0
    b = make_bundle(tmp_path, 1, {"news": "cli"}, [])
    assert hangar_main(["sign", str(b), "--key", str(key)]) == 0
    # Signed by an unpinned key: the aircraft refuses, push exits 2 with the reason.
    assert hangar_main(["push", str(b), "--url", f"http://127.0.0.1:{port}", "--token", TOKEN]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert hangar_main(["status", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN]) == 0
    assert "nothing installed" in capsys.readouterr().out


def test_unknown_upload_is_404_by_type(served: tuple[World, int]) -> None:
    """The router maps the domain's UnknownUpload to 404 (not a message's text); others 409."""
    import httpx

    from appliance.errors import IntakeError, UnknownUpload

    w, port = served
    h = {"Authorization": f"Bearer {TOKEN}"}
    bid = "ab" * 32
    assert issubclass(UnknownUpload, IntakeError)
    with pytest.raises(UnknownUpload):
        w.service.status(bid)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/admin/v1/intake", headers=h) as c:
        for method, path in (("GET", f"/uploads/{bid}"), ("PUT", f"/uploads/{bid}?offset=0"),
                             ("POST", f"/uploads/{bid}/finalize"),
                             ("POST", f"/uploads/{bid}/activate"), ("DELETE", f"/uploads/{bid}")):
            r = c.request(method, path, content=b"x" if method == "PUT" else None)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["detail"] == f"no upload {bid}" and "received" not in r.json()
        assert c.get("/uploads").json() == [] and c.get("/installed").json()["installed"] == {}
