"""The admin app through the real app and a real journal, fed by the real recorded flight.

Roles, throttling, audit, override, export, metrics, profile.
"""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import zstandard
from prometheus_client.parser import text_string_to_metric_families

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.profile import FlightProfile
from appliance.settings import AdminAuthSettings, AdminUser
from appliance.store.engine import make_engine
from appliance.store.export import export_logs
from appliance.store.journal import Journal
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import admin, passenger
from appliance.web.admin.auth import AdminAuth, hash_password
from appliance.web.admin.metrics import ApplianceCollector, make_metrics
from appliance.web.passenger.traffic import PassengerTraffic
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import Trajectory, load
from firmware_bridge.simulator import generate

SERVICE = "service-token-xyz"
HASHES = {"crew": hash_password("crew-pass"), "maint": hash_password("maint-pass")}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def traj(flight_path: Path) -> Trajectory:
    return load(flight_path)


class Rig:
    """A chain fed from the recording on demand, a real journal, the admin and passenger apps."""

    def __init__(self, tmp: Path, traj: Trajectory, **auth_cfg: Any) -> None:
        db = tmp / "j.db"
        upgrade(make_engine(db), db)
        self.db = db
        self.writer = Writer(make_engine(db))
        self.writer.start()
        self.journal = Journal(self.writer, make_engine(db, readonly=True), "F-TEST")
        self.chain = AvionicsChain(LabelTable.default())
        self.traj = traj
        self.frames = FrameDecoder()
        self.chunks = generate(traj)
        self.profile = FlightProfile(self.chain)
        self.traffic = PassengerTraffic()
        users = [AdminUser(name="alice", role="crew", password_hash=HASHES["crew"]),
                 AdminUser(name="bob", role="maintenance", password_hash=HASHES["maint"])]
        self.auth = AdminAuth(users, SERVICE, AdminAuthSettings(**auth_cfg))
        logs = tmp / "logs"
        logs.mkdir()
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        (logs / "appliance.log").write_text(
            f"{now},001 INFO x: hello\n  continuation\n2001-01-01T00:00:00,000 INFO x: old\n")
        collector = ApplianceCollector(self.chain, self.writer.stats, self.traffic, tmp)
        self.app = admin.create_app(admin.AdminDeps(
            chain=self.chain, journal=self.journal, auth=self.auth, status=lambda: {"ok": True},
            utc=lambda: (time.time(), "local"), profile=self.profile.view,
            export=lambda a, b: export_logs(self.journal, logs, "F-TEST", a, b),
            metrics=make_metrics(collector, self.journal.reader)))
        self.passenger = passenger.create_app(self.chain, traffic=self.traffic)

    def fly_until(self, hhmmss: str) -> None:
        import datetime as dt

        h, m, s = map(int, hhmmss.split(":"))
        stop = dt.datetime(2024, 7, 6, h, m, s, tzinfo=dt.UTC).timestamp()
        for t, chunk in self.chunks:
            self.chain.feed_frames(self.frames.feed(chunk))
            if t >= stop:
                return

    def client(self, app: Any = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app or self.app),
                                 base_url="http://admin")

    def close(self) -> None:
        self.writer.stop()


@pytest.fixture
def rig(tmp_path: Path, traj: Trajectory):  # type: ignore[no-untyped-def]
    r = Rig(tmp_path, traj)
    yield r
    r.close()


async def login(c: httpx.AsyncClient, user: str, password: str) -> dict[str, str]:
    r = await c.post("/admin/v1/login", json={"user": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def admin_paths(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) the admin app serves: its OpenAPI paths plus the unlisted ones."""
    out = [(m.upper(), p) for p, ops in app.openapi()["paths"].items() for m in ops]
    return [*out, ("GET", "/openapi.json")]


@pytest.mark.anyio
async def test_passenger_port_404_on_every_admin_path(rig: Rig) -> None:
    paths = admin_paths(rig.app)
    assert len(paths) >= 10
    async with rig.client(rig.passenger) as c:
        for method, path in paths:
            if path in ("/", "/openapi.json"):  # the passenger port has its own of these two
                continue
            r = await c.request(method, path, headers={"Authorization": f"Bearer {SERVICE}"})
            assert r.status_code == 404, (method, path, r.status_code)
        spec = (await c.get("/openapi.json")).json()
        assert not [p for p in spec["paths"] if p.startswith("/admin") or p == "/metrics"]


@pytest.mark.anyio
async def test_no_token_401_and_roles_403(rig: Rig) -> None:
    async with rig.client() as c:
        for method, path in admin_paths(rig.app):
            if path in ("/", "/admin/v1/login"):
                continue
            assert (await c.request(method, path)).status_code == 401, path
        crew = await login(c, "alice", "crew-pass")
        assert (await c.get("/admin/v1/status", headers=crew)).status_code == 200
        assert (await c.get("/metrics", headers=crew)).status_code == 200
        r = await c.post("/admin/v1/maintenance", json={"on": True, "reason": "check"},
                         headers=crew)
        assert r.status_code == 403
        assert (await c.get("/admin/v1/export", headers=crew)).status_code == 403
        maint = await login(c, "bob", "maint-pass")
        assert (await c.get("/admin/v1/whoami", headers=maint)).json() == {
            "user": "bob", "role": "maintenance"}
        await c.post("/admin/v1/logout", headers=maint)
        assert (await c.get("/admin/v1/whoami", headers=maint)).status_code == 401


@pytest.mark.anyio
async def test_repeated_failures_are_throttled(tmp_path: Path, traj: Trajectory) -> None:
    rig = Rig(tmp_path, traj, max_failures=3, lockout_s=60)
    try:
        async with rig.client() as c:
            for _ in range(3):
                r = await c.post("/admin/v1/login", json={"user": "bob", "password": "guess"})
                assert r.status_code == 401
            r = await c.post("/admin/v1/login", json={"user": "bob", "password": "maint-pass"})
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
            r = await c.get("/admin/v1/status", headers={"Authorization": f"Bearer {SERVICE}"})
            assert r.status_code == 429  # the whole address is locked out, tokens too
    finally:
        rig.close()


@pytest.mark.anyio
async def test_override_ground_only_and_audited(rig: Rig) -> None:
    async with rig.client() as c:
        maint = await login(c, "bob", "maint-pass")
        r = await c.post("/admin/v1/maintenance", json={"on": True, "reason": "x"}, headers=maint)
        assert r.status_code == 422  # a reason is required
        rig.fly_until("06:50:00")  # parked at CDG
        r = await c.post("/admin/v1/maintenance", json={"on": True, "reason": "cabin check"},
                         headers=maint)
        assert r.status_code == 200 and r.json()["mode"] == "MAINTENANCE"
        r = await c.post("/admin/v1/maintenance", json={"on": False, "reason": "done"},
                         headers=maint)
        assert r.json()["mode"] == "GROUND"
        rig.fly_until("07:20:00")  # climbing
        r = await c.post("/admin/v1/maintenance", json={"on": True, "reason": "in flight?"},
                         headers=maint)
        assert r.status_code == 409 and r.json()["mode"] == "FLIGHT"
        rows = (await c.get("/admin/v1/journal?kind=admin&limit=100", headers=maint)).json()["rows"]
    actions = [(r["data"]["user"], r["data"]["action"], r["data"]["ok"]) for r in rows]
    assert ("bob", "login", True) in actions
    assert actions.count(("bob", "POST /admin/v1/maintenance", True)) == 2
    assert ("bob", "POST /admin/v1/maintenance", False) in actions  # 422 and 409 are refusals
    con = sqlite3.connect(rig.db)
    audit = con.execute("SELECT count(*) FROM outbox WHERE stream = 'audit'").fetchone()[0]
    assert audit == len(rows)


@pytest.mark.anyio
async def test_profile_and_metrics_move_during_replay(rig: Rig) -> None:
    async with rig.client() as c:
        h = {"Authorization": f"Bearer {SERVICE}"}

        async def scrape() -> dict[str, float]:
            text = (await c.get("/metrics", headers=h)).text
            out = {}
            for fam in text_string_to_metric_families(text):
                for s in fam.samples:
                    key = s.name + "".join(f"[{v}]" for v in s.labels.values())
                    out[key] = s.value
            return out

        rig.fly_until("06:55:00")
        async with rig.client(rig.passenger) as p:
            await p.get("/api/v1/flight")
        m1 = await scrape()
        rig.fly_until("07:10:00")
        await rig.journal.record_admin("x", "crew", "test", True, "t", {}, time.time(), "local")
        m2 = await scrape()
        assert m2["appliance_bus_words_total[card]"] > m1["appliance_bus_words_total[card]"]
        assert m1["appliance_mode[GROUND]"] == 1 and m2["appliance_mode[FLIGHT]"] == 1
        assert m1["appliance_passengers_connected"] == 1
        assert m1["appliance_passenger_bytes_served_total"] > 100
        assert m2["appliance_journal_commit_seconds_count"] >= 1
        assert m2["appliance_outbox_depth[audit]"] == 1
        assert m2["appliance_disk_free_bytes"] > 0
        prof = (await c.get("/admin/v1/profile", headers=h)).json()
    s = prof["series"]
    assert len(s["utc"]) > 100 and max(a for a in s["altitude_ft"] if a) > 10000
    assert {"GROUND", "FLIGHT"} <= set(s["mode"]) and True in s["wow_left"]
    assert any(t["kind"] == "mode" and t["current"] == "FLIGHT" for t in prof["transitions"])


@pytest.mark.anyio
async def test_log_export_matches_manifest(rig: Rig) -> None:
    from appliance.modes.events import ModeChanged

    await rig.journal.record(ModeChanged(1.0, time.time() - 60, "local", "GROUND", "FLIGHT", {}))
    await rig.journal.record(ModeChanged(2.0, time.time() - 7200, "local", "FLIGHT", "GROUND", {}))
    async with rig.client() as c:
        h = {"Authorization": f"Bearer {SERVICE}"}
        r = await c.get("/admin/v1/export", headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zstd"
        assert (await c.get("/admin/v1/export?since=10&until=5", headers=h)).status_code == 400
    raw = zstandard.ZstdDecompressor().decompress(r.content, max_output_size=1 << 28)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    manifest = json.loads(files.pop("manifest.json"))
    import hashlib

    assert {f["name"] for f in manifest["files"]} == set(files)
    for f in manifest["files"]:
        assert hashlib.sha256(files[f["name"]]).hexdigest() == f["sha256"]
        assert len(files[f["name"]]) == f["bytes"]
    journal_rows = [json.loads(line) for line in files["journal.jsonl"].splitlines()]
    assert manifest["journal_rows"] == len(journal_rows) == 1  # the row of 2 h ago is outside
    assert b"hello" in files["logs/appliance.log"] and b"continuation" in files["logs/appliance.log"]
    assert b"old" not in files["logs/appliance.log"]
