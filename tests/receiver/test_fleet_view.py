"""The read side (issue 17, acceptance 5): the fleet view in Chromium, the export, the metrics.

Before: the receiver had no read side at all. Here a real receiver process (SQLite, loopback)
takes the uploads of 12 simulated aircraft (:mod:`.fleetgen`: each stops after two batches, so
part of its backlog stays on board), one of them declares a dropped range (a gap), and a fleet
configuration is published and applied by some. Debian's Chromium (Playwright, no download)
signs in as an operator and must show every aircraft with its backlog, software and content
versions, BITE, gaps and applied configuration version; the screenshot is kept in
``var/artifacts/fleet/``. Without credentials the page is 401, without the role 403; the CSV
export and the Prometheus metrics hold what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.sync.batch import BatchLimits
from ground_receiver.db import init_db, make_engine
from ground_receiver.downlink import Downlink
from ground_receiver.identity import KeyRing

from .conftest import _free_port, batch_body
from .fleetgen import make_keys, run_fleet

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "artifacts" / "fleet"
CHROMIUM = "/usr/bin/chromium"
OPS, OPS_TOKEN = "ops", "ops-token-0123456789abcdef"
VIEWER, VIEWER_TOKEN = "auditor", "auditor-token-0123456789ab"
PROM_TOKEN = "prom-token-0123456789abcdef"


def _basic(user: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.system  # a Chromium run over ~20 s on this machine: make test-system
@pytest.mark.timeout(180)
def test_fleet_view_in_chromium_export_and_metrics(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="PyPI playwright not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian chromium needed under CI")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    db = f"sqlite:///{tmp_path}/ground.db"
    engine = make_engine(db)
    init_db(engine)
    keys = make_keys(tmp_path, 12, prefix="F-V")
    ring = KeyRing(engine)
    for ac, key in keys.items():
        ring.register(ac, key.public_b64)
    ground = Downlink(engine, Ed25519PrivateKey.generate())
    ground.publish("config", {"link_budgets": {"satcom": 3_000_000}})
    cfg = tmp_path / "ground.toml"
    cfg.write_text(f'[operators.{OPS}]\ntoken = "{OPS_TOKEN}"\nroles = ["fleet", "export"]\n'
                   f'[operators.{VIEWER}]\ntoken = "{VIEWER_TOKEN}"\nroles = ["export"]\n'
                   f'[operators.prom]\ntoken = "{PROM_TOKEN}"\nroles = ["metrics"]\n')
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "ground_receiver", "serve", "--config",
                             str(cfg), "--host", "127.0.0.1", "--port", str(port),
                             "--database-url", db], stdout=(tmp_path / "rx.log").open("wb"),
                            stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "GROUND_RECEIVER_LOG_LEVEL": "WARNING"})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(url + "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "receiver did not start"
            time.sleep(0.1)
        result = asyncio.run(run_fleet([url], keys, 300, deadline_s=60, outage_share=0,
                                       max_batches=2,
                                       limits=BatchLimits(max_records=60, max_bytes=50_000)))
        assert not result.unfinished
        gap_ac = "F-V0003"  # declares logs 1..10 dropped on board (its disk budget), unsent
        _, body = batch_body(gap_ac, {"logs": []}, dropped={"logs": [(1, 10)]})
        k = keys[gap_ac]
        r = httpx.post(url + "/v1/batches", content=body, headers={
            **k.headers("POST", "/v1/batches", body), "Content-Type": "application/json",
            "Content-Encoding": "zstd"})
        assert r.status_code == 200 and r.json()["gaps"] == 1, r.text
        for ac in list(keys)[:8]:  # eight of them applied the configuration
            ground.ack(ac, {"kind": "config", "version": 1, "status": "applied",
                            "mode": "GROUND"})

        assert _get(url + "/fleet")[0] == 401
        assert _get(url + "/fleet", _basic(OPS, "wrong-token-0123456789"))[0] == 401
        assert _get(url + "/fleet", _basic(VIEWER, VIEWER_TOKEN))[0] == 403

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                         args=["--no-sandbox"])
            try:
                page = browser.new_context(http_credentials={"username": OPS,
                                                             "password": OPS_TOKEN},
                                           viewport={"width": 1500, "height": 900}).new_page()
                page.goto(url + "/fleet")
                rows = page.locator("#fleet tbody tr")
                assert rows.count() == 12
                page.screenshot(path=ARTIFACTS / "fleet-view.png", full_page=True)
                first = page.locator("tr[data-aircraft='F-V0000']").inner_text()
                assert "1.4.2" in first and "2026-11" in first, first
                assert "logs" in first and "v1 / v1" in first and "GROUND" in first, first
                assert "F-V0000-2024-07-06T05:00:00+00:00 (in flight): 15 / 60" in first, first
                backlog = page.locator("tr[data-aircraft='F-V0000'] td").nth(2).inner_text()
                assert backlog != "0" and "logs" in backlog, backlog
                gap = page.locator(f"tr[data-aircraft='{gap_ac}']").inner_text()
                assert "1 gaps (10)" in gap, gap
                assert "v0 / v1" in page.locator("tr[data-aircraft='F-V0011']").inner_text()
                assert "Fleet: 12 aircraft" in page.locator("h1").inner_text()
            finally:
                browser.close()
        assert (ARTIFACTS / "fleet-view.png").stat().st_size > 10_000

        today = dt.datetime.now(dt.UTC).date().isoformat()
        status, data = _get(f"{url}/fleet/export/{today}.csv", _basic(VIEWER, VIEWER_TOKEN))
        assert status == 200
        rows_csv = list(csv.DictReader(io.StringIO(data.decode())))
        streams = {r["stream"] for r in rows_csv}
        assert {"orders", "usage"} <= streams and "logs" not in streams
        assert _get(f"{url}/fleet/export/yesterday.csv", _basic(VIEWER, VIEWER_TOKEN))[0] == 400
        assert _get(url + "/metrics")[0] == 401
        status, data = _get(url + "/metrics", _basic("prom", PROM_TOKEN))
        text = data.decode()
        assert status == 200 and 'ground_batches_total{result="applied"} 25.0' in text, text
        assert "ground_records_applied_total" in text and "ground_batch_seconds_bucket" in text
        assert 'ground_requests_refused_total{code="unauthorized"}' not in text  # ops 401s apart
    finally:
        proc.terminate()
        proc.wait(10)
        engine.dispose()
