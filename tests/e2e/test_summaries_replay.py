"""Acceptance (issue 18, 5): the live service queues the same track and health records as a replay.

The AFR34ZG flight is played by the card simulator onto a pty at high speed into the real service
(a subprocess on loopback); the ``flight_track`` and ``flight_health`` records it queued in its
outbox must equal, record for record, what ``appliance replay --records`` computes for the same
recording. Both sample the flight on card (avionics) time; sampling on the host's clock would
give other samples at every playback speed (and at x1 on a busy machine).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .service import Service, start_card

# Over 20 s (a flight at x600 and a replay): a whole-system test (make test-system).
pytestmark = [pytest.mark.e2e, pytest.mark.system]

SPEED = 600.0
STREAMS = ("flight_track", "flight_health")


def _outbox(db: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT stream, payload FROM outbox WHERE stream IN (?, ?) ORDER BY id",
                            STREAMS).fetchall()
    finally:
        conn.close()
    return [(s, json.loads(p)) for s, p in rows]


def test_live_summaries_equal_the_replay(tmp_path: Path, flight_path: Path) -> None:
    svc = Service(tmp_path, card_speed=SPEED)
    svc.start()
    db = svc.workdir / "data" / "journal.db"
    try:
        card = start_card(flight_path, svc.card_link, SPEED)
        try:
            _, err = card.communicate(timeout=4800 / SPEED * 4 + 60)
        finally:
            if card.poll() is None:
                card.kill()
        assert card.returncode == 0, err.decode()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                s == "flight_health" for s, _ in _outbox(db)):
            time.sleep(0.2)
        assert svc.proc is not None and svc.proc.poll() is None, svc.log()
    finally:
        code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"
    live = _outbox(db)

    out = subprocess.run([sys.executable, "-m", "appliance.cli", "replay", str(flight_path),
                          "--records", "--aircraft-id", "F-E2E"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    replayed = [(r["stream"], r["payload"]) for r in map(json.loads, out.splitlines())]

    health = [p for s, p in replayed if s == "flight_health"]
    assert len(health) == 1 and health[0]["final"] is True, replayed
    assert sum(s == "flight_track" for s, _ in replayed) >= 5
    assert [s for s, _ in live] == [s for s, _ in replayed]
    for i, (a, b) in enumerate(zip(live, replayed, strict=True)):
        assert a == b, f"record {i} ({a[0]}) differs"
