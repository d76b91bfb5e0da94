"""Acceptance 4: the admin shows devices, jobs and busy holders — through the real admin app.

The service is built by ``build_cabin_network`` with three access points on the simulated twin
(``driver = "sim"``), its router included in the real admin app (``AdminDeps.routers``), requests
through httpx's ASGI transport with real tokens: crew reads, maintenance acts, no token is 401.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.daemon.build import build_cabin_network
from appliance.settings import AdminAuthSettings, AdminUser, Settings
from appliance.store.journal import Journal as AppJournal
from appliance.web import admin
from appliance.web.admin.auth import AdminAuth, hash_password
from firmware_bridge.labels import LabelTable

from .helpers import FLIGHT, GROUND, Journal

SERVICE = "service-token-cabin"
API = "/admin/v1/cabin"


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_admin_devices_jobs_busy_and_actions(journal: Journal) -> None:
    settings = Settings(serial={"enabled": False}, cabin_network={
        "enabled": True, "poll_interval_s": 0.3, "retry_initial_s": 0.1, "retry_max_s": 0.5,
        "confirm_timeout_s": 2.0, "reboot_wait_s": 10.0,
        "desired": {"GROUND": GROUND, "FLIGHT": FLIGHT},
        "access_points": [{"name": f"ap{i}", "driver": "sim", "password": "pw"} for i in (1, 2, 3)]})
    chain = AvionicsChain(LabelTable.default())
    auth = AdminAuth([AdminUser(name="alice", role="crew", password_hash=hash_password("crew-pass"))],
                     SERVICE, AdminAuthSettings())
    router, svc = build_cabin_network(settings, chain, journal.writer, journal.reader, auth)
    app_journal = AppJournal(journal.writer, journal.reader, "F-TEST")
    app = admin.create_app(admin.AdminDeps(
        chain=chain, journal=app_journal, auth=auth, status=lambda: {"ok": True},
        utc=lambda: (time.time(), "local"), routers=[router]))
    maint = {"Authorization": f"Bearer {SERVICE}"}
    await svc.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://admin") as c:
            assert (await c.get(f"{API}/devices")).status_code == 401
            r = await c.post("/admin/v1/login", json={"user": "alice", "password": "crew-pass"})
            crew = {"Authorization": f"Bearer {r.json()['token']}"}

            async def devices() -> dict[str, dict[str, Any]]:
                r = await c.get(f"{API}/devices", headers=crew)
                assert r.status_code == 200
                return {d["name"]: d for d in r.json()["devices"]}

            t0 = time.monotonic()
            while not all(d["state"] == "ok" for d in (await devices()).values()):
                assert time.monotonic() - t0 < 15, await devices()
                await asyncio.sleep(0.1)
            d1 = (await devices())["ap1"]
            assert d1["driver"] == "sim" and d1["converged"] and d1["busy"] is None
            assert d1["status"]["config"]["channel"] == 36 and d1["desired"]["channel"] == 36

            # Actions need the maintenance role.
            r = await c.post(f"{API}/devices/ap1/reboot", headers=crew, json={})
            assert r.status_code == 403
            r = await c.post(f"{API}/devices/ap1/reboot", headers=maint,
                             json={"idempotency_key": "rb-1"})
            assert r.status_code == 202 and r.json()["created"], r.text
            job = r.json()["job"]
            again = await c.post(f"{API}/devices/ap1/reboot", headers=maint,
                                 json={"idempotency_key": "rb-1"})
            assert again.status_code == 200 and again.json()["job"]["id"] == job["id"]

            # While it runs, the device has a busy holder with its expected end.
            t0 = time.monotonic()
            while True:
                busy = (await c.get(f"{API}/busy", headers=crew)).json()["busy"]
                if busy:
                    break
                assert time.monotonic() - t0 < 5, "no busy holder seen"
                await asyncio.sleep(0.02)
            [h] = busy
            assert h["device"] == "ap1" and h["job_id"] == job["id"] and h["kind"] == "reboot"
            assert h["requested_by"] == "service" and h["expected_end"] > h["since"]
            assert (await devices())["ap1"]["busy"]["job_id"] == job["id"]

            r = await c.post(f"{API}/devices/ap2/apply", headers=maint,
                             json={"config": {"channel": 40}, "idempotency_key": "ch-40"})
            assert r.status_code == 202, r.text
            for bad, code in [({"config": {"channel": 45}}, 422),
                              ({"config": {"colour": "red"}}, 422),
                              ({"config": {"channel": 40}, "idempotency_key": "rb-1"}, 409)]:
                r = await c.post(f"{API}/devices/ap2/apply", headers=maint, json=bad)
                assert r.status_code == code, (bad, r.text)
            assert (await c.post(f"{API}/devices/nope/reboot", headers=maint)).status_code == 404

            t0 = time.monotonic()
            while True:
                jobs = (await c.get(f"{API}/jobs", headers=crew)).json()["jobs"]
                mine = {j["key"]: j for j in jobs}
                if all(mine.get(k, {}).get("state") == "done" for k in ("rb-1", "ch-40")):
                    break
                assert time.monotonic() - t0 < 15, jobs
                await asyncio.sleep(0.1)
            assert mine["rb-1"]["requested_by"] == "service" and mine["rb-1"]["attempts"] >= 1

            r = await c.get(f"{API}/devices/ap2", headers=crew)
            d2 = r.json()
            assert d2["status"]["config"]["channel"] == 40 and d2["state"] == "held"
            assert d2["differences"] == {"channel": {"actual": 40, "desired": 36}}
            assert [j["key"] for j in d2["jobs"]] == ["ch-40"]
            r = await c.get(f"{API}/jobs", headers=crew, params={"state": "done", "device": "ap1"})
            assert [j["key"] for j in r.json()["jobs"]] == ["rb-1"]
            assert (await c.get(f"{API}/jobs", headers=crew, params={"state": "x"})).status_code == 422
            st = (await c.get(f"{API}/status", headers=crew)).json()
            assert st["state"] == "green" and st["devices"] == 3, st
    finally:
        await svc.stop()
    audit = app_journal.query("admin", limit=100)
    assert any("cabin/devices/ap1/reboot" in r["data"]["action"] for r in audit)
    wap = app_journal.query("wap", limit=100)
    assert any(r["data"].get("key") == "rb-1" and r["data"]["state"] == "done" for r in wap)
