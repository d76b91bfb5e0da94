"""The moving map's track and times on the real chain, fed with the recorded AFR34ZG flight.

Two windows of the recording go through the frame decoder and the chain as the serial reader
would feed them: the approach and landing at Toulouse, then (the card clock going back, as when
`make run` loops the recording) the gate and take-off at Paris. The passengers' track is compared
with the flight_track records the summaries stage queues for the ground; it is the landed flight's
at the destination, gone at the origin, and a new one (no point of the old) after the next take-off.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.summaries import FlightSummaries, Record, SummaryConfig, SummarySampler
from appliance.modes.policy import Mode, PolicyTable
from appliance.web.passenger.flightinfo import FlightInfo, airport, great_circle_nm, local_time
from appliance.web.passenger.track import PassengerTrack, track_router
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import generate

TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()
LFPG, LFBO = airport("LFPG"), airport("LFBO")


class Feed:
    """The card's bytes for a window of the recording, into the chain, stopping where asked."""

    def __init__(self, chain: AvionicsChain, traj: Any) -> None:
        self.chain, self.traj = chain, traj

    def play(self, start: float, end: float, stop: Any = None) -> None:
        decoder = FrameDecoder()  # a new card session: a new byte stream
        for t, chunk in generate(self.traj, start=start, end=end):
            self.chain.feed_frames(decoder.feed(chunk))
            if stop is not None and stop(t):
                return


def _records_points(records: list[Record], flight_id: str) -> list[list[float]]:
    return [[round(p[1], 4), round(p[2], 4)] for s, r in records if s == "flight_track"
            and r["flight_id"] == flight_id for p in r["points"]]


@pytest.fixture(scope="module")
def traj(flight_path: Path) -> Any:
    return load(flight_path)


def test_track_is_the_summary_resets_at_a_new_flight_and_tells_the_times(traj: Any) -> None:
    chain = AvionicsChain(LabelTable.default())
    cfg = SummaryConfig()
    track = PassengerTrack(chain, None, cfg)  # the map's own agent, beside the ground's
    records: list[Record] = []
    ground = FlightSummaries("F-TEST", cfg)
    sampler = SummarySampler(chain, ground, lambda s, p: records.append((s, p)))
    info = FlightInfo(chain, PolicyTable.default(), LFPG, LFBO, track=track)
    feed = Feed(chain, traj)

    # approach into Toulouse: the track is the flight's summary from its first fix
    feed.play(LANDING - 420, LANDING + 240, stop=lambda t: t >= LANDING - 120)
    assert chain.mode is Mode.FLIGHT
    doc = track.document()
    first = doc["id"]
    assert first and doc["n"] == len(doc["points"]) >= 8
    assert doc["id"].removeprefix("map-") == ground.flight_id.removeprefix("F-TEST-")  # same start
    ours = [[p[0], p[1]] for p in doc["points"]]
    flushed = _records_points(records, ground.flight_id) + [
        [round(p.lat, 4), round(p.lon, 4)] for p in ground.points]
    assert ours == flushed
    assert track.document(since=doc["n"] - 2)["points"] == doc["points"][-2:]
    # time to destination and the local arrival time at Toulouse (CEST in July)
    snap = info.snapshot()
    assert snap["track"] == {"id": first, "n": doc["n"]}
    assert snap["time_to_go_s"] is not None and 60 < snap["time_to_go_s"] < 1800
    utc, _ = chain.utc()
    assert snap["eta_local"] == local_time(utc + snap["time_to_go_s"], "Europe/Paris")
    assert snap["eta_local"].endswith("+02:00") and snap["destination"]["tz"] == "Europe/Paris"
    eta = dt.datetime.fromisoformat(snap["eta_local"])
    assert abs(eta.timestamp() - (utc + snap["time_to_go_s"])) < 60

    # landed and at the gate: the finished flight's track stays, whole
    feed.play(LANDING - 119, LANDING + 240)
    assert chain.mode is Mode.GROUND
    landed = track.document()
    assert landed["id"] == first and landed["n"] >= doc["n"]
    assert snap_sum(records, ground) == landed["n"]
    assert info.snapshot()["time_to_go_s"] is None

    # the recording loops: at the gate in Paris the old track is gone ...
    feed.play(TAKEOFF - 240, TAKEOFF + 420, stop=lambda t: t >= TAKEOFF - 200)
    assert track.document()["id"] is None and track.document()["points"] == []
    # ... and after take-off a new one starts at Paris, with no point of the old flight
    feed.play(TAKEOFF - 199, TAKEOFF + 420)
    new = track.document()
    assert new["id"] and new["id"] != first and new["n"] >= 5
    assert all(great_circle_nm(p[0], p[1], LFPG.lat, LFPG.lon) < 80 for p in new["points"])
    assert great_circle_nm(*new["points"][0][:2], LFPG.lat, LFPG.lon) < 5
    sampler.close()
    track.close()


def snap_sum(records: list[Record], ground: FlightSummaries) -> int:
    """Points of the last flight's flight_track records (the flight has ended)."""
    last = [r for s, r in records if s == "flight_track"][-1]["flight_id"]
    return len(_records_points(records, last))


def test_track_route_etag_and_since(traj: Any) -> None:
    chain = AvionicsChain(LabelTable.default())
    track = PassengerTrack(chain)
    Feed(chain, traj).play(TAKEOFF - 60, TAKEOFF + 300)
    app = FastAPI()
    app.include_router(track_router(track))

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://p") as c:
            r = await c.get("/api/v1/flight/track")
            doc = r.json()
            assert r.status_code == 200 and doc["n"] == len(doc["points"]) > 3
            assert len(r.content) < 40 * doc["n"] + 200  # small: [lat, lon, alt] per point
            etag = r.headers["etag"]
            assert (await c.get("/api/v1/flight/track",
                                headers={"If-None-Match": etag})).status_code == 304
            part = (await c.get(f"/api/v1/flight/track?since={doc['n'] - 1}")).json()
            assert part["since"] == doc["n"] - 1 and part["points"] == doc["points"][-1:]
            assert (await c.get("/api/v1/flight/track?since=-1")).status_code == 422
            Feed(chain, traj).play(TAKEOFF + 300, TAKEOFF + 420)
            r2 = await c.get("/api/v1/flight/track", headers={"If-None-Match": etag})
            assert r2.status_code == 200 and r2.json()["n"] > doc["n"]
    asyncio.run(go())
    track.close()
