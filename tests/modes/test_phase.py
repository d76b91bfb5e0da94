"""Flight phase machine: tables of (state, inputs) -> phase."""

from __future__ import annotations

from appliance.modes.airground import AirGround
from appliance.modes.phase import Phase, PhaseInputs, PhaseState, step

G, A = AirGround.GROUND, AirGround.AIR


def drive(s: PhaseState, t0: float, t1: float, **kw: object) -> tuple[PhaseState, list[Phase]]:
    seen = []
    t = t0
    while t < t1:
        s, ch = step(s, PhaseInputs(t, **kw))  # type: ignore[arg-type]
        if ch:
            seen.append(ch.current)
        t += 0.25
    return s, seen


def test_a_whole_flight() -> None:
    s = PhaseState()
    s, seen = drive(s, 0, 30, air_ground=G, altitude_ft=575, gs_kt=0.0)
    assert s.phase is Phase.PARKED and s.field_alt_ft == 575
    s, seen = drive(s, 30, 60, air_ground=G, altitude_ft=575, gs_kt=12.0)
    assert seen == [Phase.TAXI_OUT]
    s, seen = drive(s, 60, 70, air_ground=G, altitude_ft=575, gs_kt=120.0, cas_kt=125.0)
    assert seen == [Phase.TAKEOFF]
    s, seen = drive(s, 70, 80, air_ground=A, altitude_ft=1500, gs_kt=160.0, rate_fpm=2000)
    assert seen == [] and s.phase is Phase.TAKEOFF and s.flown  # below 1500 ft above the field
    s, seen = drive(s, 80, 90, air_ground=A, altitude_ft=2500, gs_kt=170.0, rate_fpm=2000)
    assert seen == [Phase.CLIMB]
    s, seen = drive(s, 90, 200, air_ground=A, altitude_ft=35000, gs_kt=450.0, rate_fpm=0)
    assert seen == [Phase.CRUISE]
    s, seen = drive(s, 200, 215, air_ground=A, altitude_ft=35000, gs_kt=450.0, rate_fpm=-1500)
    assert seen == []  # 30 s persistence: a short dip is not a descent
    s, seen = drive(s, 215, 300, air_ground=A, altitude_ft=20000, gs_kt=400.0, rate_fpm=-1500)
    assert seen == [Phase.DESCENT]
    s, seen = drive(s, 300, 320, air_ground=A, altitude_ft=2500, gs_kt=150.0, rate_fpm=-700)
    assert seen == [Phase.APPROACH]
    s, seen = drive(s, 320, 321, air_ground=G, altitude_ft=575, gs_kt=130.0)
    assert seen == [Phase.LANDING]
    s, seen = drive(s, 321, 330, air_ground=G, altitude_ft=575, gs_kt=20.0)
    assert seen == [Phase.TAXI_IN]
    s, seen = drive(s, 330, 500, air_ground=G, altitude_ft=575, gs_kt=0.0)
    assert seen == [Phase.PARKED] and not s.flown


def test_unknown_air_ground_holds() -> None:
    s = PhaseState(Phase.CRUISE, flown=True)
    s, seen = drive(s, 0, 100, air_ground=AirGround.UNKNOWN, altitude_ft=None, gs_kt=None)
    assert seen == [] and s.phase is Phase.CRUISE


def test_missing_rate_holds_in_air() -> None:
    s = PhaseState(Phase.CLIMB, flown=True, field_alt_ft=0)
    s, seen = drive(s, 0, 100, air_ground=A, altitude_ft=30000, rate_fpm=None, gs_kt=400)
    assert seen == []


def test_stopped_with_a_door_open_is_parked_at_the_gate_after_5_s() -> None:
    s = PhaseState(Phase.TAXI_IN, flown=True)
    seen = []
    for i in range(40):  # 10 s stopped on the ground; a door open from 2 s
        t = i * 0.25
        s, ch = step(s, PhaseInputs(t, AirGround.GROUND, 600.0, 0.0, 0.0, 0.0,
                                    doors_open=t >= 2.0))
        if ch is not None:
            seen.append((ch.current, t))
    assert seen == [(Phase.PARKED, 5.0)]  # stopped 5 s with a door open, not 120 s
    s = PhaseState(Phase.TAXI_IN, flown=True)
    for i in range(40):  # doors closed: still taxiing-in after 10 s stopped (120 s rule)
        s, ch = step(s, PhaseInputs(i * 0.25, AirGround.GROUND, 600.0, 0.0, 0.0, 0.0,
                                    doors_open=False))
    assert s.phase is Phase.TAXI_IN
