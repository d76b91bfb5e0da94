"""Passenger orders through the real app and the real single writer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.content.orders import Orders
from appliance.modes.airground import AirGround, AirGroundState
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import passenger
from firmware_bridge.labels import LabelTable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = tmp_path / "j.db"
    upgrade(make_engine(db), db)
    w = Writer(make_engine(db))
    w.start()
    chain = AvionicsChain(LabelTable.default())
    orders = Orders(w, make_engine(db, readonly=True), "F-TEST", lambda: (1720249163.0, "avionics"))
    yield chain, passenger.create_app(chain, orders), db
    w.stop()


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


ORDER = {"idempotency_key": "order-0001", "seat": "12A", "items": [{"sku": "COFFEE", "qty": 2}]}


@pytest.mark.anyio
async def test_order_is_durable_and_idempotent(setup) -> None:  # type: ignore[no-untyped-def]
    _, app, db = setup
    async with client(app) as c:
        r1 = await c.post("/api/v1/orders", json=ORDER)
        r2 = await c.post("/api/v1/orders", json=ORDER)
    assert r1.status_code == 201 and r2.status_code == 200
    assert r1.json()["id"] == r2.json()["id"] and r1.json()["outbox_key"] == "F-TEST:orders:1"
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 1
    (payload,) = con.execute("SELECT payload FROM outbox WHERE stream='orders'").fetchone()
    assert '"order-0001"' in payload


@pytest.mark.anyio
async def test_concurrent_orders_share_commits(setup) -> None:  # type: ignore[no-untyped-def]
    _, app, db = setup
    async with client(app) as c:
        rs = await asyncio.gather(*[c.post("/api/v1/orders", json={**ORDER, "idempotency_key":
                                                                    f"key-{i:05d}"})
                                    for i in range(100)])
    assert {r.status_code for r in rs} == {201}
    assert sqlite3.connect(db).execute("SELECT count(*) FROM outbox").fetchone()[0] == 100


@pytest.mark.anyio
@pytest.mark.parametrize("bad", [
    {},
    {**ORDER, "seat": "99Z"},
    {**ORDER, "items": []},
    {**ORDER, "items": [{"sku": "COFFEE", "qty": 0}]},
    {**ORDER, "idempotency_key": "x"},
    {**ORDER, "extra": 1},
])
async def test_malformed_orders_rejected(setup, bad: dict) -> None:  # type: ignore[no-untyped-def]
    _, app, db = setup
    async with client(app) as c:
        r = await c.post("/api/v1/orders", json=bad)
        r2 = await c.post("/api/v1/orders", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422 and r2.status_code == 422
    assert sqlite3.connect(db).execute("SELECT count(*) FROM orders").fetchone()[0] == 0


@pytest.mark.anyio
async def test_orders_closed_in_maintenance(setup) -> None:  # type: ignore[no-untyped-def]
    chain, app, _ = setup
    chain.ag = AirGroundState(AirGround.GROUND)
    assert chain.set_maintenance(True, "cabin check")
    async with client(app) as c:
        r = await c.post("/api/v1/orders", json=ORDER)
    assert r.status_code == 503 and "MAINTENANCE" in r.json()["detail"]
