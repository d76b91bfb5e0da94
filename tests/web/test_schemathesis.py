"""schemathesis against both OpenAPI specs: no 5xx, no response that breaks its schema.

Both apps run over a real chain fed with the real flight and a real journal. The admin app is
called with the service token (maintenance role) so every operation is exercised for real.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.profile import FlightProfile
from appliance.content.order_status import OrderBook
from appliance.content.orders import Orders
from appliance.settings import AdminAuthSettings
from appliance.store.engine import make_engine
from appliance.store.journal import Journal
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import admin, passenger
from appliance.web.admin.auth import AdminAuth
from appliance.web.admin.shop import shop_admin_router
from appliance.web.passenger.shop import shop_router
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import fetch_default_flight, load
from firmware_bridge.simulator import generate

REPO = Path(__file__).resolve().parents[2]
TOKEN = "schemathesis-token"


def build_apps(tmp: Path) -> tuple[Any, Any, Writer]:
    db = tmp / "journal.db"
    upgrade(make_engine(db), db)
    writer = Writer(make_engine(db))
    writer.start()
    reader = make_engine(db, readonly=True)
    journal = Journal(writer, reader, "F-TEST")
    chain = AvionicsChain(LabelTable.default())
    traj = load(fetch_default_flight(REPO / "var" / "cache"))
    profile = FlightProfile(chain)
    dec = FrameDecoder()
    for _, chunk in generate(traj, end=traj.start + 900):
        chain.feed_frames(dec.feed(chunk))
    utc = chain.utc
    orders = Orders(writer, reader, "F-TEST", utc)
    book = OrderBook(writer, reader, "F-TEST", utc)
    auth = AdminAuth([], TOKEN, AdminAuthSettings(max_failures=10_000))
    from appliance.store.export import export_logs

    adm = admin.create_app(admin.AdminDeps(
        chain=chain, journal=journal, auth=auth, status=lambda: {"mode": str(chain.mode)},
        utc=utc, profile=profile.view,
        export=lambda a, b: export_logs(journal, None, "F-TEST", a, b),
        routers=[shop_admin_router(book)]))
    return passenger.create_app(chain, orders, routers=[shop_router(book)]), adm, writer


_tmp = Path(__import__("tempfile").mkdtemp(prefix="schemathesis-"))
PASSENGER, ADMIN, _WRITER = build_apps(_tmp)
passenger_schema = schemathesis.openapi.from_dict(PASSENGER.openapi())
admin_schema = schemathesis.openapi.from_dict(ADMIN.openapi())
CHECKS = [content_type_conformance, response_schema_conformance]


def _check(case: Any, app: Any, headers: dict[str, str] | None = None) -> None:
    response = case.call(app=app, headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.status_code)
    case.validate_response(response, checks=CHECKS)


@passenger_schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_passenger_api(case: Any) -> None:
    _check(case, PASSENGER)


@admin_schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api(case: Any) -> None:
    _check(case, ADMIN, {"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module", autouse=True)
def _stop_writer():  # type: ignore[no-untyped-def]
    yield
    _WRITER.stop()
    time.sleep(0)
