"""The read side per flight (issue 17 follow-up), and /metrics behind operator sign-in.

Before: the fleet view and the export counted orders and usage per UTC day of creation, and
``/metrics`` answered anyone. The aircraft knows its flights: each ``flight_health`` summary
names the flight (``flight_id``) and its first and last sample (``first_utc``, ``last_utc``), and
a flight still in the air shows in its ``flight_track`` records. Here one aircraft flies two
flights that cross midnight UTC (so per-day totals cannot give them), with orders and usage
before, during, between and after them, and a third flight still in progress: the fleet view
and the flights export must give each flight its own totals, and records outside every flight
go to ``ground``.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import time
from typing import Any

import zstandard
from fastapi.testclient import TestClient

from ground_receiver.app import create_app
from ground_receiver.db import init_db, make_engine
from ground_receiver.fleet import export_flights, fleet_rows
from ground_receiver.settings import ReceiverSettings
from ground_receiver.store import BatchStore

AC = "F-FLT1"
TOKEN = "flight-test-token-0123456789"
T0 = dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC).timestamp()  # 20:00 UTC
H = 3600.0


def _fid(start: float) -> str:
    return f"{AC}-{dt.datetime.fromtimestamp(start, dt.UTC).isoformat(timespec='seconds')}"


def _body(streams: dict[str, list[tuple[float, Any]]]) -> bytes:
    doc = {"v": 1, "aircraft": AC, "batch_id": f"{AC}:{time.time_ns()}:ab", "streams": [
        {"stream": s, "records": [{"seq": i + 1, "created": c, "payload": p}
                                  for i, (c, p) in enumerate(recs)]}
        for s, recs in streams.items()]}
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


def _flight_records() -> dict[str, list[tuple[float, Any]]]:
    f1, f2, f3 = T0 + 1 * H, T0 + 5 * H, T0 + 10 * H  # 21:00-23:30, 01:00-03:00, 06:00-
    health = [(f1 + 2.5 * H, {"kind": "flight_health", "flight_id": _fid(f1), "final": True,
                              "first_utc": f1 + 5, "last_utc": f1 + 2.5 * H}),
              (f2 + 2 * H, {"kind": "flight_health", "flight_id": _fid(f2), "final": True,
                            "first_utc": f2 + 5, "last_utc": f2 + 2 * H})]
    track = [(f3 + 600, {"kind": "track", "flight_id": _fid(f3), "segment": 1,
                         "points": [[f3 + 10, 43.1, 1.2, 3000, 250, 90]]})]
    orders = [(t, {"seat": "1A"}) for t in
              (T0 + 0.5 * H,                        # at the gate before flight 1
               f1 + 600, f1 + 1.5 * H, f1 + 2 * H,  # three in flight 1 (before midnight)
               f2 + 60, f2 + 1.9 * H,               # two in flight 2 (after midnight)
               f3 + 900)]                           # one in flight 3, in progress
    usage = [(t, {"title": "x"}) for t in (f1 + 1000, f2 + 2 * H + 600, f3 + 1200, f3 + 1300)]
    return {"orders": orders, "usage": usage, "flight_health": health, "flight_track": track}


def _settings(tmp: Any) -> ReceiverSettings:
    return ReceiverSettings.model_validate({
        "database_url": f"sqlite:///{tmp}/ground.db", "aircraft": {AC: TOKEN},
        "operators": {"ops": {"token": "ops-token-0123456789abcdef", "roles": ["fleet", "export"]},
                      "prom": {"token": "prom-token-0123456789abcdef", "roles": ["metrics"]}}})


def _basic(user: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def _client(tmp: Any) -> tuple[TestClient, BatchStore]:
    s = _settings(tmp)
    engine = make_engine(s.database_url)
    init_db(engine)
    store = BatchStore(engine)
    return TestClient(create_app(s, store)), store


def test_orders_and_usage_totals_are_per_flight_in_the_view_and_the_export(tmp_path: Any) -> None:
    client, store = _client(tmp_path)
    r = client.post("/v1/batches", content=_body(_flight_records()), headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
        "Content-Encoding": "zstd"})
    assert r.status_code == 200 and r.json()["applied"] == 14, r.text
    f1, f2, f3 = _fid(T0 + H), _fid(T0 + 5 * H), _fid(T0 + 10 * H)

    (row,) = fleet_rows(store.engine)
    got = {f["flight"]: (f["orders"], f["usage"], f["end"] is None) for f in row["flights"]}
    assert got == {f1: (3, 1, False), f2: (2, 0, False), f3: (1, 2, True)}, row["flights"]
    assert [f["flight"] for f in row["flights"]] == [f1, f2, f3]  # in time order
    assert row["ground"] == {"orders": 1, "usage": 1}  # before flight 1, after flight 2

    page = client.get("/fleet", headers=_basic("ops", "ops-token-0123456789abcdef")).text
    assert f"{f2}: 2 / 0" in page and f"{f3} (in flight): 1 / 2" in page, page
    assert "ground: 1 / 1" in page

    # the flights export of 30 Nov: flight 1 (started that day) with its totals
    day = dt.date(2026, 11, 30)
    rows = list(csv.DictReader(io.StringIO("".join(export_flights(store.engine, day)))))
    assert [(x["flight"], x["orders"], x["usage"]) for x in rows] == [(f1, "3", "1")]
    r = client.get("/fleet/export/2026-12-01/flights.csv",
                   headers=_basic("ops", "ops-token-0123456789abcdef"))
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["aircraft"], x["flight"], x["orders"], x["usage"], x["end"] == "")
            for x in rows] == [(AC, f2, "2", "0", False), (AC, f3, "1", "2", True)]


def test_metrics_need_an_operator_with_the_metrics_role(tmp_path: Any) -> None:
    client, _ = _client(tmp_path)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=_basic("prom", "wrong-token-0123456789")
                      ).status_code == 401
    assert client.get("/metrics", headers=_basic("ops", "ops-token-0123456789abcdef")
                      ).status_code == 403
    r = client.get("/metrics", headers=_basic("prom", "prom-token-0123456789abcdef"))
    assert r.status_code == 200 and "ground_batches_total" in r.text
