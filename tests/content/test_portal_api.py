"""The portal's routes through the real passenger app.

Captive probes, RFC 8908, catalog ETag, events, feedback and orders that survive retries, per-client
request limits.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from appliance.avionics.chain import AvionicsChain
from appliance.content.fairness import RateLimiter
from appliance.content.feedback import Feedback
from appliance.content.orders import Orders
from appliance.modes.policy import Mode, PolicyTable
from appliance.store.engine import make_engine
from appliance.web import passenger
from appliance.web.passenger.flightinfo import FlightInfo, airport, great_circle_nm
from appliance.web.passenger.portal import CaptiveState, PortalAssets, portal_router
from firmware_bridge.labels import LabelTable

from .conftest import NOW, Env


class Portal:
    def __init__(self, env: Env, rate: float = 1000.0, burst: float = 1000.0) -> None:
        self.env = env
        self.chain = AvionicsChain(LabelTable.default())
        policy = PolicyTable.default()
        utc = lambda: (NOW, "avionics")  # noqa: E731
        reader = make_engine(env.db, readonly=True)
        self.info = FlightInfo(self.chain, policy, airport("LFPG"), airport("TLS"))
        router = portal_router(self.chain, policy, env.catalog, self.info,
                               Feedback(env.writer, reader, "F-TEST", utc),
                               CaptiveState(3600), PortalAssets(None), RateLimiter(rate, burst))
        self.app = passenger.create_app(self.chain, Orders(env.writer, reader, "F-TEST", utc),
                                        policy, routers=[router])

    async def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://p")

    def run(self, fn: Any) -> Any:
        async def go() -> Any:
            async with await self.client() as c:
                return await fn(c)
        return asyncio.run(go())


@pytest.fixture
def portal(env: Env, book_pkg: Path) -> Iterator[Portal]:
    env.install(book_pkg)
    yield Portal(env)


PROBES = [("/hotspot-detect.html", 200, "Success"), ("/library/test/success.html", 200, "Success"),
          ("/generate_204", 204, ""), ("/gen_204", 204, ""),
          ("/connecttest.txt", 200, "Microsoft Connect Test"), ("/ncsi.txt", 200, "Microsoft NCSI"),
          ("/canonical.html", 200, "captive-portal"), ("/success.txt", 200, "success")]


def test_captive_portal_detection(portal: Portal) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        for path, _, _ in PROBES:
            r = await c.get(path)
            assert (r.status_code, r.headers["location"]) == (302, "/portal/"), path
        r = await c.get("/api/captive")
        assert r.headers["content-type"] == "application/captive+json"
        assert r.json() == {"captive": True, "user-portal-url": "http://p/portal/",
                            "venue-info-url": "http://p/portal/#flight"}
        assert (await c.post("/api/v1/portal/accept")).status_code == 200
        for path, status, text in PROBES:
            r = await c.get(path)
            assert r.status_code == status and text in r.text, path
        doc = (await c.get("/api/captive")).json()
        assert doc["captive"] is False and doc["seconds-remaining"] > 3000
        state = await c.get("/api/v1/portal/state")  # the portal page's own copy
        assert state.headers["content-type"] == "application/json" and state.json() == doc
        assert (await c.get("/redirect")).status_code == 302
        r = await c.get("/portal/")
        assert r.status_code == 200 and "<video" in r.text
        r2 = await c.get("/portal/", headers={"If-None-Match": r.headers["etag"]})
        assert r2.status_code == 304
        assert (await c.get("/portal/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await c.get("/portal/nope.js")).status_code == 404
    portal.run(go)


def test_catalog_etag_and_closed_services(portal: Portal) -> None:
    async def go(c: httpx.AsyncClient) -> None:
        r = await c.get("/api/v1/catalog")
        assert r.status_code == 200 and r.json()["titles"][0]["id"] == "book"
        etag = r.headers["etag"]
        assert (await c.get("/api/v1/catalog", headers={"If-None-Match": etag})).status_code == 304
        portal.env.mode = portal.chain.mode = Mode.MAINTENANCE
        r = await c.get("/api/v1/catalog")
        assert r.status_code == 503 and "closed" in r.json()["message"]
        bad = {"idempotency_key": "fb-000001", "answers": {"overall": 5}}
        assert (await c.post("/api/v1/feedback", json=bad)).status_code == 503
    portal.run(go)


def test_feedback_and_orders_retried_five_times_are_stored_once(portal: Portal) -> None:
    fb = {"idempotency_key": "fb-000001", "seat": "12A", "answers": {"overall": 5, "food": 3},
          "comment": "Lovely"}
    order = {"idempotency_key": "order-000001", "seat": "12A",
             "items": [{"sku": "COFFEE", "qty": 1}]}

    async def go(c: httpx.AsyncClient) -> None:
        codes = [(await c.post("/api/v1/feedback", json=fb)).status_code for _ in range(5)]
        assert codes == [201, 200, 200, 200, 200]
        codes = [(await c.post("/api/v1/orders", json=order)).status_code for _ in range(5)]
        assert codes == [201, 200, 200, 200, 200]
        for bad in ({**fb, "answers": {"overall": 9}}, {**fb, "answers": {"nope": 1}},
                    {**fb, "answers": {}}, {**fb, "seat": "ZZ"}, {**fb, "extra": 1}):
            assert (await c.post("/api/v1/feedback", json=bad)).status_code == 422, bad
    portal.run(go)
    db = sqlite3.connect(portal.env.db)
    assert db.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
    rows = db.execute("SELECT payload FROM outbox WHERE stream = 'orders' ORDER BY seq").fetchall()
    assert len(rows) == 2  # one order, one feedback record: each queued once
    kinds = sorted(json.loads(p).get("record", "order") for (p,) in rows)
    assert kinds == ["feedback", "order"]


@pytest.mark.timeout(60)
def test_event_stream_sends_flight_and_pa(portal: Portal) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(portal.app, lifespan="off", log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve([sock]),),
                              daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        seen: list[str] = []
        with httpx.stream("GET", f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/events",
                          timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            loop.call_soon_threadsafe(portal.info.push, "pa", {"active": True})
            for line in r.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
                if len(seen) == 3:
                    break
        assert seen == ["flight", "pa", "pa"]
    finally:
        server.should_exit = True
        thread.join(10)
    snap = portal.info.snapshot()
    assert snap["destination"]["iata"] == "TLS" and snap["eta"] is None  # no position yet


def test_request_budget_per_client(env: Env, book_pkg: Path) -> None:
    env.install(book_pkg)
    p = Portal(env, rate=1.0, burst=5.0)

    async def go(c: httpx.AsyncClient) -> list[int]:
        return [(await c.get("/api/v1/catalog")).status_code for _ in range(8)]
    codes = p.run(go)
    assert codes[:5] == [200] * 5 and codes[5:] == [429] * 3


def test_great_circle() -> None:
    cdg, tls = airport("LFPG"), airport("TLS")
    assert cdg is not None and tls is not None
    assert great_circle_nm(cdg.lat, cdg.lon, tls.lat, tls.lon) == pytest.approx(329, abs=3)
    assert airport("XXXX") is None
