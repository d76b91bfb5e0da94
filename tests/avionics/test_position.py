"""Position plausibility (``appliance.avionics.position``): alone with lists, then in a real replay.

Properties: a physically possible track (ground speed within the bound, turns at up to 3°/s,
sampled and held, shown up to 0.5 s late, quantised to the ARINC 310/311 resolution) is never
flagged; a jump beyond the bound always is. Then a spoofed jump injected into the AFR34ZG replay
is flagged, counted, absent from the track summary, and the flight info holds the last good
position.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.params import Parameter, ParameterStore, Validity
from appliance.avionics.position import (
    Fix,
    PositionCheck,
    PositionGuard,
    Verdict,
    distance_nm,
)
from firmware_bridge.labels import LabelTable

RES = 180.0 / 2**20  # ARINC 310/311 BNR resolution (deg)
MAX_KT = 750.0


def quantise(v: float) -> float:
    return round(v / RES) * RES


def move(lat: float, lon: float, gs: float, track: float, seconds: float) -> tuple[float, float]:
    nm = gs * seconds / 3600.0
    r = math.radians(track)
    lat2 = lat + nm * math.cos(r) / 60.0
    lon2 = lon + nm * math.sin(r) / (60.0 * math.cos(math.radians((lat + lat2) / 2)))
    return lat2, (lon2 + 180.0) % 360.0 - 180.0


step = st.tuples(
    st.floats(0.05, 15.0),  # seconds to the next fix
    st.floats(-3.0, 3.0),  # turn rate (deg/s): standard rate is 3
    st.floats(-5.0, 5.0),  # acceleration (kt/s)
    st.booleans(),  # the source holds the previous position (sample and hold)
    st.floats(0.0, 0.5),  # how late the fix shows (s)
)


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-70.0, 70.0), lon=st.floats(-180.0, 180.0), gs=st.floats(0.0, 700.0),
       track=st.floats(0.0, 360.0, exclude_max=True), steps=st.lists(step, min_size=1, max_size=40))
def test_a_physically_possible_track_is_never_flagged(lat: float, lon: float, gs: float,
                                                      track: float, steps: list) -> None:
    fixes = [Fix(0.0, quantise(lat), quantise(lon), gs, track)]
    t = 0.0
    shown = fixes[0]
    for seconds, turn, accel, hold, late in steps:
        n = math.ceil(seconds / 0.5)
        for _ in range(n):  # integrate the motion in steps of at most 0.5 s
            h = seconds / n
            lat, lon = move(lat, lon, gs, track, h)
            track = (track + turn * h) % 360.0
            gs = min(700.0, max(0.0, gs + accel * h))
        t += seconds
        shown_at = max(fixes[-1].t, t + late)  # a source shows its fixes in order
        if not hold:
            shown = Fix(shown_at, quantise(lat), quantise(lon), gs, track)
        fixes.append(Fix(shown_at, shown.lat, shown.lon, gs, track))
    verdicts = PositionCheck(MAX_KT).check(fixes)
    assert all(v.ok for v in verdicts), [v.reason for v in verdicts if not v.ok]


@settings(max_examples=300, deadline=None)
@given(lat=st.floats(-70.0, 70.0), lon=st.floats(-179.0, 179.0), gs=st.floats(0.0, 700.0),
       track=st.floats(0.0, 359.0), dt_s=st.floats(0.01, 600.0), bearing=st.floats(0.0, 359.0),
       excess=st.floats(1.001, 50.0))
def test_a_jump_beyond_the_bound_is_always_flagged(lat: float, lon: float, gs: float, track: float,
                                                   dt_s: float, bearing: float,
                                                   excess: float) -> None:
    check = PositionCheck(MAX_KT)
    assert check.push(Fix(0.0, lat, lon, gs, track)).ok
    bound = MAX_KT * (dt_s + check.slack_s) / 3600.0 + check.margin_nm
    lat2, lon2 = move(lat, lon, 1.0, bearing, bound * excess * 3600.0)
    if abs(lat2) > 89.0:
        return
    assert distance_nm(lat, lon, lat2, lon2) > bound
    v = check.push(Fix(dt_s, lat2, lon2, gs, track))
    assert not v.ok and v.rule == "speed", v
    assert check.reference == Fix(0.0, lat, lon, gs, track)  # the last good position is held


def test_a_jump_against_track_and_ground_speed_is_flagged() -> None:
    """At 450 kt heading east, 6 s later a fix 1.2 NM north: a possible speed, wrong place."""
    check = PositionCheck(MAX_KT)
    lat, lon = 45.0, 1.0
    east = move(lat, lon, 450.0, 90.0, 3.0)
    north = move(*east, 450.0, 0.0, 9.6)  # 1.2 NM north, where 0.75 NM east was due
    assert check.check([Fix(0.0, lat, lon, 450.0, 90.0), Fix(3.0, *east, 450.0, 90.0)]) == \
        [Verdict(True), Verdict(True)]  # the straight track is fine
    assert distance_nm(*east, *north) / 7.0 * 3600 < MAX_KT  # not a speed violation
    v = check.push(Fix(9.0, *north, 450.0, 90.0))
    assert not v.ok and v.rule == "track" and "NM off" in v.reason, v
    assert check.reference == Fix(3.0, *east, 450.0, 90.0)


def test_going_backwards_along_the_track_is_flagged_by_the_track_rule() -> None:
    check = PositionCheck(MAX_KT)
    lat, lon = 45.0, 1.0
    back = move(lat, lon, 450.0, 270.0, 8.0)  # 1 NM west in 8 s: 450 kt, the wrong way
    assert check.push(Fix(0.0, lat, lon, 450.0, 90.0)).ok
    v = check.push(Fix(8.0, *back, 450.0, 90.0))
    assert not v.ok and v.rule == "track", v


def _pos(name: str, value: float, t: float) -> Parameter:
    return Parameter(name, value, "deg", Validity.VALID, t, "card")


def test_the_guard_over_the_parameter_stream() -> None:
    """Lists in, lists out: lat/lon words at 4 Hz; a 0.5° jump for 2 s is flagged, then heals."""
    store = ParameterStore(LabelTable.default())
    guard = PositionGuard()
    out = []
    lat, lon = 45.0, 1.0
    for i in range(40):
        t = i * 0.25
        lat, lon = move(lat, lon, 450.0, 90.0, 0.25)
        spoof = 0.5 if 4.0 <= t < 6.0 else 0.0
        for p in (_pos("latitude", quantise(lat + spoof), t), _pos("longitude", quantise(lon), t)):
            p = guard.filter(p, store)
            store.put(p)
            out.append((t, p.name, p.validity))
    bad = {t for t, _, v in out if v is Validity.IMPLAUSIBLE}
    assert bad == {i * 0.25 for i in range(16, 24)}  # exactly the spoofed window
    assert guard.bad_positions == 8 and guard.by_rule == {"speed": 8}
    assert guard.last_good is not None and guard.last_good.t == 9.75
    assert "kt" in (guard.last_reason or "")


def test_a_spoofed_jump_in_the_real_flight(flight_path: Path) -> None:
    """AFR34ZG at cruise (07:20-07:40 UTC), its position shifted 0.5° north for 20 s at 07:30:00.

    The card simulator sends the jumped position (fault ``position-jump``); the bytes go through
    the whole chain as in ``appliance replay``.
    """
    from appliance.avionics.chain import AvionicsChain
    from appliance.avionics.replay import replay_bytes
    from appliance.avionics.summaries import Sample, TrackDownsampler
    from appliance.web.views import flight_view
    from firmware_bridge.recording import load
    from firmware_bridge.simulator import Faults, generate

    def utc(h: int, m: int) -> float:
        return dt.datetime(2024, 7, 6, h, m, tzinfo=dt.UTC).timestamp()

    start = utc(7, 30)
    traj = load(flight_path)
    faults = Faults.parse(["position-jump=0.5,0@07:30:00/20"], traj.start)
    chain = AvionicsChain(LabelTable.default())
    track = TrackDownsampler(period_s=5.0)
    points = []
    views = []
    last = [0.0]

    def on_tick(t: float) -> None:  # a sample per second of card time, as the summaries take
        now, source = chain.clock.utc(t)
        if t - last[0] < 1.0 or source != "avionics":
            return
        last[0] = t
        params = {n: p for n in ("latitude", "longitude", "pressure_altitude", "ground_speed",
                                 "track_angle_true") if (p := chain.store.get(n, t)) is not None}
        if (p := track.push(Sample(t, now, params))) is not None:
            points.append(p)
        if start + 5 <= now < start + 15:
            views.append(flight_view(chain)["position"])

    chain.on_tick(on_tick)
    replay_bytes((c for _, c in generate(traj, faults, start=utc(7, 20), end=utc(7, 40))),
                 chain=chain)
    g = chain.position
    assert g.bad_positions == 20 * 4  # every fix of the 20 s at 4 Hz, nothing else
    assert g.by_rule == {"speed": 80} and "kt" in (g.last_reason or "")
    # absent from the track summary: every point is where the aircraft was
    assert len(points) > 200
    for p in points:
        truth = traj.value("latitude", p.utc)
        assert truth is not None and abs(p.lat - truth) < 0.05, (p, truth)
    assert not [p for p in points if start <= p.utc < start + 20]
    # the flight info holds the last good position, says so, and never shows the jumped one
    assert views and all(v["validity"] == "implausible" and v["held"] for v in views)
    assert all(abs(v["latitude"] - traj.value("latitude", start)) < 0.05 for v in views)


def test_bad_positions_show_on_bite_and_metrics(tmp_path: Path) -> None:
    """The counter is visible: BITE's ``position`` goes amber while recent, /metrics counts."""
    from prometheus_client import CollectorRegistry, generate_latest

    from appliance.avionics.chain import AvionicsChain
    from appliance.daemon.bite import POSITION_AMBER_S, Bite
    from appliance.store.recovery import RecoveryReport
    from appliance.store.writer import WriterStats
    from appliance.web.admin.metrics import ApplianceCollector

    chain = AvionicsChain(LabelTable.default())
    bite = Bite(chain, tmp_path, RecoveryReport("green", "journal ok", 0.0), WriterStats())
    lat, lon = 45.0, 1.0
    params = []
    for i in range(20):
        t = 100.0 + i * 0.25
        lat, lon = move(lat, lon, 450.0, 90.0, 0.25)
        jump = 1.0 if i == 10 else 0.0
        params += [_pos("latitude", lat + jump, t), _pos("longitude", lon, t)]
    assert bite.assess()["position"]["state"] == "green"  # nothing seen yet
    chain.feed(params)
    pos = bite.assess()["position"]
    assert pos["bad_positions"] == 1 and pos["by_rule"] == {"speed": 1}
    assert pos["state"] == "amber" and "implausible position" in pos["reason"], pos
    lat, lon = move(lat, lon, 450.0, 90.0, POSITION_AMBER_S + 1)
    t = 105.0 + POSITION_AMBER_S + 1
    chain.feed([_pos("latitude", lat, t), _pos("longitude", lon, t)])
    pos = bite.assess()["position"]
    assert pos["state"] == "green" and pos["bad_positions"] == 1, pos
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ApplianceCollector(chain, WriterStats(), None, tmp_path))
    text = generate_latest(registry).decode()
    assert 'appliance_implausible_positions_total{rule="speed"} 1.0' in text
    assert 'appliance_implausible_positions_total{rule="track"} 0.0' in text
