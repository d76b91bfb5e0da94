"""The whole AFR34ZG flight through a pty into the real service, clean and with faults.

Truth (Mode-S flight status, shared/AVIONICS.md): airborne from 06:59:17 UTC, on ground from
07:58:43 UTC on 2024-07-06. Each transition must be journaled within 10 s (flight time) of it, with
UTC from the ARINC time labels, and queued in the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from pathlib import Path

import pytest

from .service import Service, start_card

pytestmark = pytest.mark.e2e

SPEED = 400.0
TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()
FAULTS = [
    "garbage=0.02",  # random bytes (and false sync patterns) before 2% of frames
    "parity=0.01",  # 1% of ARINC words with a flipped bit
    "wow-glitch=07:31:00",  # one WOW sample showing ground at cruise
    "dropout=airground@07:29:00/30",  # both WOW discretes and the air/ground word gone for 30 s
    "ncd=computed_airspeed@07:30:50/20",  # airspeed No Computed Data for 20 s (over the glitch)
]


def _fly(tmp_path: Path, flight_path: Path, faults: list[str], unplugs: list[str] = ()
         ) -> tuple[Service, list[dict], dict]:  # type: ignore[assignment]
    svc = Service(tmp_path, card_speed=SPEED)
    svc.start()
    try:
        card = start_card(flight_path, svc.card_link, SPEED, faults, unplugs)
        try:
            _, err = card.communicate(timeout=4800 / SPEED * 3 + 60)
        finally:
            if card.poll() is None:
                card.kill()
        assert card.returncode == 0, err.decode()
        deadline = time.monotonic() + 20
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = svc.admin("/admin/v1/journal?kind=mode")["rows"]
            if any(r["data"]["current"] == "GROUND" and r["data"]["previous"] == "FLIGHT"
                   for r in rows):
                break
            time.sleep(0.2)
        signals = svc.admin("/admin/v1/signals")
        assert svc.proc is not None and svc.proc.poll() is None, svc.log()
        flight = svc.passenger("/api/v1/flight")
        assert flight["mode"] == "GROUND" and flight["air_ground"] == "ground"
    finally:
        code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"
    return svc, rows, signals


def _check_transitions(svc: Service, rows: list[dict]) -> None:
    changes = [(r["data"]["previous"], r["data"]["current"]) for r in rows]
    assert changes.count(("GROUND", "FLIGHT")) == 1, changes
    assert changes.count(("FLIGHT", "GROUND")) == 1, changes
    assert [c for c in changes if c[0] is not None] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    up = next(r for r in rows if r["data"]["current"] == "FLIGHT")
    down = next(r for r in rows if r["data"]["current"] == "GROUND" and r["data"]["previous"])
    for row, truth in ((up, TAKEOFF), (down, LANDING)):
        assert row["time_source"] == "avionics"
        assert abs(row["utc"] - truth) <= 10.0, (row["utc_iso"], truth)
        assert row["data"]["evidence"]["votes"], row
    db = sqlite3.connect(svc.workdir / "data" / "journal.db")
    try:
        outbox = db.execute("SELECT idempotency_key, json_extract(payload, '$.journal_id'),"
                            " json_extract(payload, '$.data.current') FROM outbox"
                            " WHERE stream = 'events' ORDER BY seq").fetchall()
    finally:
        db.close()
    queued = {jid: (key, cur) for key, jid, cur in outbox}
    for row in (up, down):
        key, cur = queued[row["id"]]
        assert cur == row["data"]["current"] and key.startswith("F-E2E:events:")


def test_clean_flight(tmp_path: Path, flight_path: Path) -> None:
    svc, rows, signals = _fly(tmp_path, flight_path, [])
    _check_transitions(svc, rows)
    card = signals["sources"]["card"]
    assert card["bad_words"] == 0 and card["crc_errors"] == 0
    assert card["card_time_jumps"] == 0, card  # x400 is within serial.max_card_time_rate
    assert card["frames"] > 300_000


def test_flight_with_faults(tmp_path: Path, flight_path: Path) -> None:
    svc, rows, signals = _fly(tmp_path, flight_path, FAULTS, unplugs=["07:45:00/1"])
    _check_transitions(svc, rows)
    card = signals["sources"]["card"]
    assert card["parity_errors"] > 1000, card
    assert card["garbage_bytes"] > 10_000, card
    assert card["no_computed_data"] > 0, card
    assert card["disconnects"] >= 1 and card["connects"] >= 2, card
    assert card["card_time_jumps"] == 0, card  # re-anchored on reconnect
    assert "bad input" in svc.log()
