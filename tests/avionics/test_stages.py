"""Each stage of the chain alone, lists in and lists out; and the chain is chunking-independent."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.decode import CardDecoder
from appliance.avionics.params import Parameter, ParameterStore, Validity
from appliance.avionics.replay import replay_bytes
from appliance.avionics.stages import (
    ClimbRate,
    Edge,
    ModeStage,
    TimeGrid,
    Vote,
    airground_inputs,
    run,
)
from appliance.avionics.summaries import FlightSummaries, Sample, SummaryConfig
from appliance.modes.airground import AirGround, AirGroundConfig, AirGroundInputs
from appliance.modes.events import ModeChanged, TimeSource
from appliance.modes.policy import Mode
from firmware_bridge.frame import FrameDecoder, encode_discretes
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import generate


def test_time_grid_ticks_at_the_first_time_of_each_period_fixed_on_the_card_clock() -> None:
    times = [10.1, 10.2, 10.26, 10.3, 10.49, 10.5, 10.51, 11.6, 11.7]
    assert run(TimeGrid(0.25), times) == [10.26, 10.5, 11.6]
    # started a little later: the same grid points, so the same ticks from there on
    assert run(TimeGrid(0.25), times[2:]) == [10.5, 11.6]


def test_time_grid_restarts_on_a_card_reset() -> None:
    grid = TimeGrid(0.25, reset_s=5.0)
    assert run(grid, [100.0, 100.3, 100.6, 1.0, 1.1, 1.3]) == [100.3, 100.6, 1.3]
    assert grid.resets == 1


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=200))
def test_time_grid_one_tick_per_period_reached(raw: list[float]) -> None:
    times = sorted(raw)
    ticks = run(TimeGrid(0.25), times)
    windows = [int(t // 0.25) for t in ticks]
    assert windows == sorted(set(windows))  # at most one tick per grid period
    assert int(times[0] // 0.25) not in windows  # the first time only places the grid
    assert set(windows) == {int(t // 0.25) for t in times} - {int(times[0] // 0.25)}


def _ag(t: float, ground: bool | None, cas: float | None = 150.0) -> AirGroundInputs:
    return AirGroundInputs(t, (("wow_left", ground), ("wow_right", ground)), cas, cas)


def test_vote_stage_needs_persistence() -> None:
    inputs = [_ag(0.0, True, 0.0), _ag(3.5, True, 0.0)]  # on ground: decided after 3 s
    inputs += [_ag(4.0 + 0.25 * i, False) for i in range(4)]  # 0.75 s of "air": held
    inputs += [_ag(5.0 + 0.25 * i, True, 0.0) for i in range(2)]
    inputs += [_ag(6.0 + 0.25 * i, False) for i in range(12)]  # 2.75 s of "air": decided
    changes = run(Vote(AirGroundConfig()), inputs)
    assert [(c.previous, c.current, c.t) for c in changes] == [
        (AirGround.UNKNOWN, AirGround.GROUND, 3.5), (AirGround.GROUND, AirGround.AIR, 8.0)]


def test_mode_stage_and_the_maintenance_override() -> None:
    assert run(ModeStage(Mode.GROUND), [AirGround.UNKNOWN, AirGround.GROUND, AirGround.AIR,
                                        AirGround.AIR, AirGround.GROUND]) == [
        (Mode.GROUND, Mode.FLIGHT), (Mode.FLIGHT, Mode.GROUND)]
    m = ModeStage(Mode.MAINTENANCE)
    assert run(m, [AirGround.GROUND, AirGround.AIR, AirGround.GROUND]) == [
        (Mode.MAINTENANCE, Mode.FLIGHT), (Mode.FLIGHT, Mode.GROUND)]  # flying ends the override


def test_climb_rate_from_the_label_else_the_altitude_slope() -> None:
    alts = [(float(t), 1000.0 + 10.0 * t, None) for t in range(8)]  # 600 ft/min
    assert run(ClimbRate(), alts) == [None] * 5 + [600.0] * 3
    assert run(ClimbRate(), [(0.0, 1000.0, -800.0)]) == [-800.0]


def test_edge_stage() -> None:
    assert run(Edge(), [None, False, True, True, None, True]) == [True, False, True]


def test_vote_inputs_read_from_the_validity_store() -> None:
    store = ParameterStore(LabelTable.default())
    for p in (Parameter("wow_left", True, "bool", Validity.VALID, 10.0, "card"),
              Parameter("wow_right", True, "bool", Validity.FAULT, 10.0, "card"),
              Parameter("computed_airspeed", 12.5, "kt", Validity.VALID, 10.0, "card")):
        store.put(p)
    i = airground_inputs(store, 10.1)
    assert i.votes == (("wow_left", True), ("wow_right", None)) and i.cas_kt == 12.5
    stale = airground_inputs(store, 11.0)  # discretes older than 0.75 s, CAS than 0.5 s
    assert stale.votes == (("wow_left", None), ("wow_right", None)) and stale.cas_kt is None


def test_decode_stage_counts_frame_by_frame() -> None:
    frames = FrameDecoder().feed(b"".join(encode_discretes(i * 250_000, 3) for i in range(3)))
    dec = CardDecoder(LabelTable.default())
    seen = []
    for p in dec.iter_decode(frames):
        seen.append((p.t, dec.stats.discrete_frames))
    assert sorted(set(seen)) == [(0.0, 1), (0.25, 2), (0.5, 3)]


def _sample(t: float, lat: float) -> Sample:
    params = {n: Parameter(n, v, "", Validity.VALID, t, "card") for n, v in (
        ("latitude", lat), ("longitude", 1.0), ("track_angle_true", 90.0),
        ("pressure_altitude", 30000.0))}
    return Sample(t, 1_720_000_000 + t, params)


def test_flight_summaries_stage_records_from_lists() -> None:
    agent = FlightSummaries("F-TEST", SummaryConfig(period_s=30, points_per_record=3))
    up = ModeChanged(0.0, 1_720_000_000.0, TimeSource.AVIONICS, Mode.GROUND, Mode.FLIGHT, {})
    down = ModeChanged(200.0, 1_720_000_200.0, TimeSource.AVIONICS, Mode.FLIGHT, Mode.GROUND, {})
    out: list[Any] = agent.on_mode(up)
    for t in range(0, 200, 10):
        out += agent.push(_sample(float(t), 43.0 + t / 1000), "cruise", Mode.FLIGHT)
    out += agent.on_mode(down)
    assert [s for s, _ in out] == ["flight_track", "flight_track", "flight_track",
                                   "flight_health"]
    assert [len(p["points"]) for s, p in out if s == "flight_track"] == [3, 3, 1]
    assert out[-2][1]["final"] is True and out[-1][1]["samples"] == 20
    assert {p["flight_id"] for _, p in out} == {"F-TEST-2024-07-03T09:46:40+00:00"}
    # a sample in FLIGHT with no flight started: the service restarted mid-flight
    resumed = FlightSummaries("F-TEST")
    assert resumed.push(_sample(5.0, 43.0), "cruise", Mode.FLIGHT) == []
    assert resumed.flush()[-1][1]["resumed"] is True


@pytest.fixture(scope="module")
def takeoff_bytes(flight_path: Path) -> bytes:
    """Ten minutes of the real flight around the take-off, as the card's byte stream."""
    traj = load(flight_path)
    t0 = dt.datetime(2024, 7, 6, 6, 55, tzinfo=dt.UTC).timestamp()
    return b"".join(c for _, c in generate(traj, start=t0, end=t0 + 600))


def _replay(chunks: list[bytes]) -> tuple[list[Any], list[Any]]:
    res = replay_bytes(chunks, summaries=SummaryConfig(points_per_record=5))
    return [(e.kind, e.t_card, e.previous, e.current) for e in res.events], res.records


@settings(max_examples=4, deadline=None)
@given(cuts=st.lists(st.integers(1, 10**7), max_size=200))
def test_chunking_changes_nothing(takeoff_bytes: bytes, cuts: list[int]) -> None:
    """The same bytes in other chunks: the same events, and the same summary records."""
    reference = _replay([takeoff_bytes])
    points = sorted({c % len(takeoff_bytes) for c in cuts} | {0, len(takeoff_bytes)})
    chunks = [takeoff_bytes[a:b] for a, b in itertools.pairwise(points)]
    events, records = _replay(chunks)
    assert ("mode", Mode.GROUND, Mode.FLIGHT) in [(k, a, b) for k, _, a, b in events]
    assert records and (events, records) == reference


def test_started_late_the_chain_ticks_on_the_same_grid(takeoff_bytes: bytes) -> None:
    """A service attached to the card a while later evaluates at the same card times."""
    late = AvionicsChain(LabelTable.default())
    full = AvionicsChain(LabelTable.default())
    ticks: dict[str, list[float]] = {"late": [], "full": []}
    late.on_tick(ticks["late"].append)
    full.on_tick(ticks["full"].append)
    frames = FrameDecoder().feed(takeoff_bytes)
    full.feed_frames(frames)
    late.feed_frames(frames[1234:])
    assert ticks["late"] and ticks["full"][-len(ticks["late"]):] == ticks["late"]
