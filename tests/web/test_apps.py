"""Passenger and admin apps through the real ASGI apps (httpx), fed by a real chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.store.engine import make_engine
from appliance.store.journal import Journal
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import passenger
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import generate

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def chain(flight_path: Path) -> AvionicsChain:
    """A chain fed with the first 30 minutes of the real flight (climbing through FL250)."""
    traj = load(flight_path)
    chain = AvionicsChain(LabelTable.default())
    dec = FrameDecoder()
    for _, chunk in generate(traj, end=traj.start + 1800):
        chain.feed_frames(dec.feed(chunk))
    return chain


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = tmp_path / "j.db"
    upgrade(make_engine(db), db)
    w = Writer(make_engine(db))
    w.start()
    yield Journal(w, make_engine(db, readonly=True), "F-TEST")
    w.stop()


async def get(app: Any, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        return await c.get(path, headers=headers)


@pytest.mark.anyio
async def test_passenger_flight(chain: AvionicsChain) -> None:
    r = await get(passenger.create_app(chain), "/api/v1/flight")
    assert r.status_code == 200
    f = r.json()
    assert f["mode"] == "FLIGHT" and f["air_ground"] == "air" and f["phase"] == "climb"
    assert f["altitude"]["unit"] == "ft" and 20000 < f["altitude"]["value"] < 40000
    assert f["altitude"]["validity"] == "valid"
    assert f["utc"]["source"] == "avionics" and f["utc"]["value"].startswith("2024-07-06T07:13")
    assert f["flight_number"]["value"] == "AFR34ZG"
    assert 0 <= f["track"]["value"] < 360
    assert f["position"]["validity"] == "valid" and 43 < f["position"]["latitude"] < 49.1


@pytest.mark.anyio
async def test_passenger_port_has_no_admin(chain: AvionicsChain) -> None:
    app = passenger.create_app(chain)
    assert (await get(app, "/admin/v1/status", TOKEN)).status_code == 404
    assert (await get(app, "/openapi.json")).json()["info"]["title"].endswith("passenger API")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
