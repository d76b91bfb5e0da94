"""The summaries agents on the real recorded flight (AFR34ZG CDG -> TLS), through the chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.summaries import SummaryAgents, SummaryConfig
from appliance.store.models import outbox
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import Faults, generate

from .helpers import AIRCRAFT, Journal


def test_track_and_health_summary_of_a_real_flight(flight_path: Path, journal: Journal) -> None:
    traj = load(flight_path)
    chain = AvionicsChain(LabelTable.default())
    agents = SummaryAgents(chain, journal.writer, AIRCRAFT,
                           SummaryConfig(period_s=30, points_per_record=50))
    decoder = FrameDecoder()

    async def run() -> None:
        for _, chunk in generate(traj, Faults.parse([], traj.start)):
            chain.feed_frames(decoder.feed(chunk))  # a sample per second of card time
        await agents.stop()

    asyncio.run(run())
    with journal.reader.connect() as c:
        rows = c.execute(select(outbox.c.stream, outbox.c.payload).order_by(outbox.c.id)).all()
    track = [p for s, p in rows if s == "flight_track"]
    health = [p for s, p in rows if s == "flight_health"]
    assert len(health) == 1, [s for s, _ in rows]
    h = health[0]
    points = [pt for seg in track for pt in seg["points"]]
    assert track[-1]["final"] is True and all(seg["flight_id"] == h["flight_id"] for seg in track)
    dur = h["duration_s"]
    assert 2400 < dur < 7200, dur  # CDG -> TLS is a bit over an hour
    assert dur / 30 * 0.8 <= len(points) <= dur / 30 * 1.6  # ~one per 30 s, plus the turns
    lats = [pt[1] for pt in points]
    assert max(lats) > 48.5 and min(lats) < 44.0  # from Paris to Toulouse
    assert h["max"]["pressure_altitude"] > 30000
    assert {"climb", "cruise", "descent"} <= set(h["phases"])
    assert h["parameters"]["pressure_altitude"]["valid_ratio"] > 0.9
    print(f"\n{len(points)} track points in {len(track)} records; health: "
          f"{json.dumps(h['max'])}, phases {h['phases']}")
