"""Serial and CAN together in one chain: every valid source votes, sources are cross-checked.

In memory and fast: the card simulator's bytes (serial) and the CAN simulator's frames from the
real AFR34ZG recording, interleaved in flight time, through the real decoders, the real
:class:`TimeBase` (CAN joins the card's time base on avionics UTC) and a real chain. The CAN side
fails mid-flight: silent, then garbage, then lying about weight on wheels; the serial side stays
good. The whole-flight version through the real service is ``tests/e2e/test_can_flight.py``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import struct
from pathlib import Path

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.can_source import CanReader
from appliance.avionics.chain import AvionicsChain
from appliance.avionics.params import Parameter, ParameterStore, Validity
from appliance.avionics.redundancy import Redundancy, RedundancyConfig
from appliance.avionics.timebase import TimeBase
from appliance.modes.airground import AirGround, AirGroundInputs, AirGroundState, step
from appliance.modes.events import AirGroundChanged, Event, ModeChanged
from firmware_bridge.can_sim import CanFaults
from firmware_bridge.canaerospace import canaerospace_messages
from firmware_bridge.frame import Frame, FrameDecoder, FrameType
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import Trajectory, load
from firmware_bridge.simulator import Faults, generate

TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()


def utc(hms: str) -> float:
    return dt.datetime.combine(dt.date(2024, 7, 6), dt.time.fromisoformat(hms), dt.UTC).timestamp()


@pytest.fixture(scope="module")
def traj(flight_path: Path) -> Trajectory:
    return load(flight_path)


def fly_both(traj: Trajectory, can_faults: CanFaults, start: float, end: float,
             serial_faults: list[str] = ()) -> tuple[AvionicsChain, list[Event], TimeBase]:  # type: ignore[assignment]
    """Serial and CAN, interleaved in flight time, into one chain through one TimeBase."""
    chain = AvionicsChain(LabelTable.default())
    events: list[Event] = []
    chain.subscribe(events.append)
    tb = TimeBase(lambda: chain.store.now)
    frames = FrameDecoder()
    card = chain.decoder("card")
    bus = can.Bus(interface="virtual", channel="redundancy-unused")
    reader = CanReader(bus, lambda ps: None, chain.decoder("can").stats)
    serial = ((t, 0, chunk) for t, chunk in generate(
        traj, Faults.parse(list(serial_faults), traj.start), start=start, end=end))
    canbus = ((t, 1, msg) for t, msg in canaerospace_messages(traj, can_faults, start, end))
    try:
        for _, kind, item in heapq.merge(serial, canbus, key=lambda x: (x[0], x[1])):
            if kind == 0:
                chain.feed(tb.align("card", card.decode(frames.feed(item))))
            else:
                chain.feed(tb.align("can", reader.decode_message(item)))
    finally:
        bus.shutdown()
    return chain, events, tb


def transitions(events: list[Event]) -> list[tuple[str, str, float]]:
    return [(str(e.previous), str(e.current), e.utc) for e in events if isinstance(e, ModeChanged)]


def test_takeoff_with_both_sources_joins_on_utc_and_is_on_time(traj: Trajectory) -> None:
    chain, events, tb = fly_both(traj, CanFaults(), utc("06:57:00"), utc("07:01:00"))
    assert tb.joined == {"card": "reference", "can": "utc"}
    assert tb.offset("can") is not None
    m = transitions(events)
    assert [(a, b) for a, b, _ in m] == [("GROUND", "FLIGHT")]
    assert abs(m[0][2] - TAKEOFF) <= 10
    up = next(e for e in events if isinstance(e, AirGroundChanged) and e.current == "air")
    votes = up.evidence["votes"]
    assert set(votes) == {"wow_left@card", "wow_right@card", "air_ground_word",  # both voted
                          "wow_left@can/node1", "wow_right@can/node1", "air_ground"}, votes
    assert all(v is False for v in votes.values())
    assert chain.redundancy.counts["air_ground"] == 0


def test_can_failing_at_cruise_changes_nothing_and_the_disagreement_is_recorded(
        traj: Trajectory) -> None:
    faults = CanFaults(silent=[(utc("07:30:00"), utc("07:31:00"))],
                       garbage=[(utc("07:31:00"), utc("07:32:00"))],
                       wow_lie=[(utc("07:32:00"), utc("07:37:00"))], seed=3)
    chain, events, _ = fly_both(traj, faults, utc("07:28:00"), utc("07:38:00"))
    assert [(a, b) for a, b, _ in transitions(events)] == [("GROUND", "FLIGHT")]
    assert chain.ag.state is AirGround.AIR
    can = chain.decoders["can"].stats
    assert can.decode_errors + can.unknown_labels > 100  # the garbage was seen and thrown away
    lies = [d for d in chain.redundancy.history if d.name == "air_ground"]
    assert lies, list(chain.redundancy.history)
    lie = lies[0]
    assert lie.values["wow_left@can/node1"] is True and lie.values["wow_left@card"] is False
    assert 4 * 60 < lie.until_t - lie.since_t < 6 * 60  # the whole lie, not more


# --- the rules, alone ------------------------------------------------------------------------


def _store(values: dict[str, float], name: str = "computed_airspeed", t: float = 10.0
           ) -> ParameterStore:
    store = ParameterStore(LabelTable.default())
    for src, v in values.items():
        store.put(Parameter(name, v, "kt", Validity.VALID, t, src))
    return store


@settings(max_examples=200, deadline=None)
@given(a=st.floats(0, 500), b=st.floats(0, 500))
def test_two_speeds_are_trusted_only_within_tolerance(a: float, b: float) -> None:
    red = Redundancy(_store({"card": a, "can/node2": b}), {}, RedundancyConfig(
        tolerances={"computed_airspeed": 25.0}))
    v = red.value("computed_airspeed", 10.0)
    if abs(a - b) > 25.0:
        assert v is None and "computed_airspeed" in red.current
    else:
        assert v == pytest.approx((a + b) / 2) and not red.current


def test_speeds_disagreeing_hold_the_air_ground_state() -> None:
    s = AirGroundState(AirGround.AIR)
    ground = (("wow_left", True), ("wow_right", True))
    for i in range(40):  # 10 s of "ground" votes at taxi speed, but the speed sources disagree
        s, ch = step(s, AirGroundInputs(i * 0.25, ground, None, None,
                                        "sources disagree on computed_airspeed"))
        assert ch is None
    assert s.state is AirGround.AIR and "disagree" in s.reason


def test_a_discrete_is_debounced_per_input() -> None:
    store = ParameterStore(LabelTable.default())
    red = Redundancy(store, {"wow_left": bool}, RedundancyConfig(discrete_debounce_s=0.5))
    votes = []
    for i in range(20):  # 4 Hz: air, one ground sample (a glitch) at 1.0 s, air again
        t = i * 0.25
        store.put(Parameter("wow_left", i == 4, "bool", Validity.VALID, t, "card"))
        votes.append(red.votes(t)[0][1])
    assert votes == [False] * 20  # the one-sample glitch never counts
    for i in range(20, 26):  # a real change: counts once it has held 0.5 s
        t = i * 0.25
        store.put(Parameter("wow_left", True, "bool", Validity.VALID, t, "card"))
        votes.append(red.votes(t)[0][1])
    assert votes[20:] == [False, False, True, True, True, True]


def test_left_and_right_systems_by_sdi_are_two_sources_and_are_cross_checked() -> None:
    table = LabelTable.default()
    cas = table.by_name["computed_airspeed"]
    chain = AvionicsChain(table)
    frames = []
    for i in range(40):  # 5 s at 8 Hz: left says 250 kt; right agrees, then lies (120 kt) from 2 s
        t_us = 1_000_000 + i * 125_000
        right = 250.0 if i < 16 else 120.0
        for sdi, v in ((1, 250.0), (2, right)):
            w = cas.encode(v, sdi=sdi, label_reversed=table.label_reversed)
            frames.append(Frame(FrameType.A429_WORD, 1, t_us, struct.pack("<I", w)))
    chain.feed_frames(frames)
    srcs = {p.source: p.value for p in chain.store.sources("computed_airspeed")}
    assert srcs == {"card/sdi1": 250.0, "card/sdi2": 120.0}
    assert chain.redundancy.value("computed_airspeed", chain.store.now) is None  # neither trusted
    d = chain.redundancy.current["computed_airspeed"]
    assert d.values == {"card/sdi1": 250.0, "card/sdi2": 120.0}
    assert 2.0 <= d.since_t - 1.0 <= 2.5
