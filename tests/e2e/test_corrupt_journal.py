"""A journal corrupted on purpose: the service starts, reports it, serves, and keeps new writes."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from .service import Service

pytestmark = pytest.mark.e2e


def post(port: int, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.load(r)


def test_corrupt_journal(tmp_path: Path) -> None:
    # No card attached: the service runs without avionics. 300 quick orders from one address for
    # one seat fill the journal before it is corrupted: far past a passenger's rate, so lifted.
    svc = Service(tmp_path, extra_config="[orders]\nclient_burst = 1000\nseat_burst = 1000\n")
    svc.start()
    for i in range(300):
        assert post(svc.passenger_port, "/api/v1/orders", {
            "idempotency_key": f"before-{i:04d}", "seat": "1A",
            "items": [{"sku": "TEA", "qty": 1}]})[0] == 201
    assert svc.stop() == 0
    db = tmp_path / "data" / "journal.db"
    # the first start took a last-good backup; corrupt the live journal in its middle
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(os.urandom(16384))
    svc.start()
    try:
        status = svc.admin("/admin/v1/status")
        bite = status["bite"]["journal"]
        assert bite["state"] == "red" and "corrupt" in bite["reason"], bite
        assert status["bite"]["overall"] == "red"
        # Issue 14: the running version and slot (a checkout: "dev").
        assert status["software"]["slot"] == "dev" and status["software"]["version"] == status["version"]
        rec = status["recovery"]
        assert rec["moved_aside"] and Path(rec["moved_aside"], "journal.db").exists()
        code, body = post(svc.passenger_port, "/api/v1/orders", {
            "idempotency_key": "after-0001", "seat": "2B", "items": [{"sku": "TEA", "qty": 1}]})
        assert code == 201 and body["created"]
        rows = svc.admin("/admin/v1/journal?kind=bite")["rows"]
        assert rows and rows[-1]["data"]["state"] == "red"
        assert svc.passenger("/api/v1/flight")["mode"] in ("GROUND", "FLIGHT")
    finally:
        assert svc.stop() == 0
