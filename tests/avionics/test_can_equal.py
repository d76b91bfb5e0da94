"""CAN as an equal source: the AFR34ZG flight played onto CAN drives the same machines as serial.

The failures measured on the CAN path (issue 18), reproduced on every CAN profile (ARINC 825 29-bit
identifiers, the default; CANaerospace 11-bit; the integration's own ``airground.dbc``): a 6 s
weight-on-wheels glitch at cruise (~250 kt) switched FLIGHT -> GROUND -> FLIGHT, and the phase
stayed TAKEOFF at 11,488 ft, because CAN speeds and altitude fed neither the plausibility check nor
the phase machine.

Frames go through the real ``CanReader`` decoding (its per-message path, without a bus thread) into
a real :class:`AvionicsChain`; the frames are the simulator's, from the real recording.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from appliance.avionics.can_source import CanReader
from appliance.avionics.chain import AvionicsChain
from appliance.avionics.params import SourceStats, Validity
from appliance.modes.events import AirGroundChanged, Event, ModeChanged, PhaseChanged
from appliance.modes.phase import Phase
from firmware_bridge.can_sim import CanFaults, can_messages
from firmware_bridge.canaerospace import canaerospace_messages
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import Trajectory, load

LAYOUTS = {"arinc825": functools.partial(canaerospace_messages, profile="arinc825"),
           "canaerospace": canaerospace_messages, "integration": can_messages}


def utc(hms: str) -> float:
    return dt.datetime.combine(dt.date(2024, 7, 6), dt.time.fromisoformat(hms), dt.UTC).timestamp()


@pytest.fixture(scope="module")
def traj(flight_path: Path) -> Trajectory:
    return load(flight_path)


def fly(messages: Iterator[tuple[float, can.Message]]) -> tuple[AvionicsChain, list[Event]]:
    chain = AvionicsChain(LabelTable.default())
    events: list[Event] = []
    chain.subscribe(events.append)
    bus = can.Bus(interface="virtual", channel="can-equal-unused")
    try:
        reader = CanReader(bus, chain.feed, SourceStats())
        for _, msg in messages:
            reader._on_message(msg)  # the reader's decoding, as the Notifier calls it
    finally:
        bus.shutdown()
    return chain, events


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_6s_wow_glitch_at_cruise_on_can_changes_nothing(traj: Trajectory, layout: str) -> None:
    faults = CanFaults(wow_lie=[(utc("07:31:00"), utc("07:31:06"))])
    chain, events = fly(LAYOUTS[layout](traj, faults, utc("07:29:30"), utc("07:33:00")))
    modes = [(e.previous, e.current) for e in events if isinstance(e, ModeChanged)]
    assert modes == [("GROUND", "FLIGHT")], modes  # the first decision only; no GROUND at cruise
    ag = [(e.previous, e.current) for e in events if isinstance(e, AirGroundChanged)]
    assert ag == [("unknown", "air")], ag
    cas = chain.store.value("computed_airspeed")
    assert isinstance(cas, float) and 200 < cas < 320  # the CAN airspeed is a chain input


@pytest.mark.parametrize("layout", LAYOUTS)
def test_can_altitude_and_speeds_drive_the_phase_machine(traj: Trajectory, layout: str) -> None:
    chain, events = fly(LAYOUTS[layout](traj, CanFaults(), utc("06:56:00"), utc("07:10:00")))
    phases = [e.current for e in events if isinstance(e, PhaseChanged)]
    assert Phase.TAKEOFF in phases and Phase.CLIMB in phases, phases
    alt = chain.store.value("pressure_altitude")
    assert isinstance(alt, float) and alt > 10_000
    assert chain.phase.phase is not Phase.TAKEOFF


def test_time_from_the_bus_utc_ignores_a_garbled_utc_frame_and_follows_a_set_clock() -> None:
    from firmware_bridge.canaerospace import load_canaerospace

    db = load_canaerospace()
    utc_msg, date_msg = db.get_message_by_name("UTC"), db.get_message_by_name("DATE")

    def frame(msg: object, ts: float, **values: int) -> can.Message:
        head = {"NODE_ID": 3, "DATA_TYPE": 16, "SERVICE_CODE": 0, "MESSAGE_CODE": 0}
        return can.Message(timestamp=ts, arbitration_id=msg.frame_id,  # type: ignore[attr-defined]
                           data=msg.encode({**head, **values}),  # type: ignore[attr-defined]
                           is_extended_id=False)

    bus = can.Bus(interface="virtual", channel="can-equal-utc")
    try:
        reader = CanReader(bus, lambda ps: None, SourceStats(), time_rate=10.0,
                           time_source="utc")
        assert reader.decode_message(frame(date_msg, 100.0, DAY=6, MONTH=7, YEAR=2024)) == []
        cas_msg = db.get_message_by_name("CALIBRATED_AIRSPEED")
        out = []
        for i in range(12):  # 1 Hz of flight time at x10: a UTC frame every 0.1 s of stamp
            ts = 100.05 + i * 0.1
            hms = {"HOURS": 7, "MINUTES": 0, "SECONDS": i}
            if i == 4:  # garbled: 13:37:00
                hms = {"HOURS": 13, "MINUTES": 37, "SECONDS": 0}
            out += reader.decode_message(frame(utc_msg, ts, **hms, SPARE=0))
            for k in range(1, 8):  # air data at 8 Hz in between
                head = {"NODE_ID": 2, "DATA_TYPE": 2, "SERVICE_CODE": 0, "MESSAGE_CODE": k}
                reader.decode_message(can.Message(
                    timestamp=ts + k * 0.0125, arbitration_id=cas_msg.frame_id,
                    data=cas_msg.encode({**head, "VALUE": 100.0}), is_extended_id=False))
        seven = utc("07:00:00")
        # the garbled frame's time is the expected one (4); after it the time catches up
        assert [p.t - seven for p in out][:5] == pytest.approx([0, 1, 2, 3, 4])
        assert [p.t - seven for p in out][6:] == pytest.approx([6, 7, 8, 9, 10, 11], abs=0.2)
        assert out[4].value == 13 * 3600 + 37 * 60  # kept for display, flagged, time not taken
        assert out[4].validity is Validity.OUT_OF_RANGE
        assert all(p.valid for i, p in enumerate(out) if i != 4)
        for i in range(6):  # the clock on the bus was set to 12:00:00 and runs on
            reader.decode_message(frame(utc_msg, 101.25 + i * 0.1, HOURS=12, MINUTES=0,
                                        SECONDS=i, SPARE=0))
        assert reader.message_time(101.75) == pytest.approx(utc("12:00:00") + 4, abs=1.01)
    finally:
        bus.shutdown()
