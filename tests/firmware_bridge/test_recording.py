"""Recorded flights (``firmware_bridge.recording``) and the card simulator that replays them.

Tiny recordings are built in ``tmp_path`` in both formats described in shared/AVIONICS.md; the
simulator's byte stream is decoded back with the real ``FrameDecoder`` and label table.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import cli
from firmware_bridge.arinc429 import ParityError, Status
from firmware_bridge.frame import DiscreteBits, Frame, FrameDecoder, FrameType, Heartbeat
from firmware_bridge.labels import LabelTable, Reading
from firmware_bridge.recording import HOLD_MAX_S, RecordingError, Series, Trajectory, load
from firmware_bridge.simulator import (
    CARD_BOOT_S,
    DISCRETE_HZ,
    GROUPS,
    TICK_HZ,
    Faults,
    FaultSpecError,
    generate,
)

T0 = dt.datetime(2024, 7, 6, 6, 0, 0, tzinfo=dt.UTC).timestamp()
TABLE = LabelTable.default()


# --- builders --------------------------------------------------------------------------------


def mode_s_frame(df: int, low3: int, nbytes: int = 7) -> str:
    """A Mode-S frame in hex whose first byte carries DF (5 bits) and FS/CA (3 bits)."""
    return f"{(df << 3) | low3:02X}" + "00" * (nbytes - 1)


def rs1090_line(t: float, df: int, low3: int, **fields: Any) -> str:
    row = {"timestamp": t, "frame": mode_s_frame(df, low3, 14 if df >= 16 else 7), "df": str(df)}
    row.update(fields)
    return json.dumps(row)


def write_jsonl(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def write_samples(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(gzip.compress(json.dumps(records).encode()))
    return path


def ms(t: float) -> int:
    return round(t * 1000)


def lerp(t: float, t0: float, v0: float, t1: float, v1: float) -> float:
    return v0 + (t - t0) / (t1 - t0) * (v1 - v0)


# --- rs1090 JSONL: air/ground from the first byte of the frame ---------------------------------

# (DF, FS or CA, bds, on ground?) from shared/AVIONICS.md; None = the frame says nothing
STATUS_CASES = [
    (4, 0, None, False), (4, 1, None, True), (4, 2, None, False), (4, 3, None, True),
    (4, 4, None, None), (4, 5, None, None), (5, 1, None, True), (5, 2, None, False),
    (20, 3, None, True), (20, 0, None, False), (21, 1, None, True), (21, 2, None, False),
    (17, 4, None, True), (17, 5, None, False), (17, 0, None, None), (17, 6, None, None),
    (17, 5, "06", True),  # surface position: only sent on the ground
    (11, 1, None, None), (0, 1, None, None), (18, 4, None, None),
]


@pytest.mark.parametrize(("df", "low3", "bds", "expected"), STATUS_CASES)
def test_onground_from_first_byte(tmp_path: Path, df: int, low3: int, bds: str | None,
                                  expected: bool | None) -> None:
    for before in (False, True):  # the frame under test follows a known state
        lines = [rs1090_line(T0, 17, 4 if before else 5, altitude=1000)]
        extra = {"bds": bds} if bds else {}
        lines.append(rs1090_line(T0 + 1, df, low3, **extra))
        traj = load(write_jsonl(tmp_path / "f.jsonl", lines))
        og = traj.series["onground"]
        assert traj.value("onground", T0 + 1) is (before if expected is None else expected)
        assert len(og.t) == (1 if expected is None else 2)


def test_rs1090_series_transitions_and_hold(tmp_path: Path) -> None:
    glitch = T0 + 40
    lines = [
        rs1090_line(T0 + 0, 17, 4, altitude=575, groundspeed=0.0, callsign=" AFR34ZG "),
        rs1090_line(T0 + 10, 4, 1),
        rs1090_line(T0 + 20, 17, 5, altitude=1500, track=359.0),  # airborne
        rs1090_line(T0 + 30, 20, 0, altitude=3000),
        rs1090_line(glitch, 4, 1),  # a single-frame "ground" glitch in flight
        rs1090_line(glitch + 0.5, 5, 0, vertical_rate=float("nan")),
        rs1090_line(T0 + 200, 21, 2),
        "",
        rs1090_line(T0 + 300, 17, 4, altitude=600),  # landed
    ]
    lines[2], lines[3] = lines[3], lines[2]  # out of order in the file
    traj = load(write_jsonl(tmp_path / "f.jsonl", lines))
    assert (traj.start, traj.end) == (T0, T0 + 300)
    assert traj.transitions() == [(T0, True), (T0 + 20, False), (glitch, True),
                                  (glitch + 0.5, False), (T0 + 300, True)]
    # hold: last value up to HOLD_MAX_S, then unknown
    assert traj.value("altitude", T0 + 30 + HOLD_MAX_S) == 3000
    assert traj.value("altitude", T0 + 30 + HOLD_MAX_S + 0.1) is None
    assert traj.value("altitude", T0 - 1) is None
    # on-ground state never goes stale
    assert traj.value("onground", T0 + 250) is False
    assert traj.value("callsign", T0 + 5) == "AFR34ZG"
    assert traj.series["altitude"].mode == "hold"
    assert "vertical_rate" not in traj.series  # NaN values are dropped


# --- traffic sample lists: interpolation ----------------------------------------------------


def sample_records(**overrides: Any) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = [
        {"timestamp": ms(T0), "altitude": 0, "groundspeed": 10.0, "track": 350.0},
        {"timestamp": ms(T0 + 10), "altitude": "ground", "groundspeed": 30.0, "track": 10.0},
        {"timestamp": ms(T0 + 20), "altitude": 1000, "groundspeed": 150.0, "track": 20.0},
        {"timestamp": ms(T0 + 30), "altitude": 2000, "groundspeed": 170.0, "track": 30.0,
         "callsign": "AFR34ZG"},
    ]
    for r in recs:
        r.update(overrides)
    return recs


def test_samples_on_ground_series(tmp_path: Path) -> None:
    traj = load(write_samples(tmp_path / "s.json.gz", sample_records()))
    assert (traj.start, traj.end) == (T0, T0 + 30)  # epoch ms read as ms
    assert traj.value("onground", T0) is True  # altitude 0
    assert traj.value("onground", T0 + 10) is True  # "ground"
    assert traj.value("altitude", T0 + 10) == 0.0
    assert traj.value("onground", T0 + 20) is False
    assert traj.value("onground", T0 + 10_000) is False  # never stale
    assert traj.transitions() == [(T0, True), (T0 + 20, False)]
    # an explicit onground field wins over the altitude rule
    recs = sample_records()
    recs[2]["onground"] = True
    assert load(write_samples(tmp_path / "s2.json.gz", recs)).value("onground", T0 + 20) is True


def test_samples_linear_interpolation(tmp_path: Path) -> None:
    traj = load(write_samples(tmp_path / "s.json.gz", sample_records()))
    for t in (T0 + 20, T0 + 21.5, T0 + 25, T0 + 29.9):
        assert traj.value("altitude", t) == pytest.approx(lerp(t, T0 + 20, 1000, T0 + 30, 2000))
        assert traj.value("groundspeed", t) == pytest.approx(lerp(t, T0 + 20, 150, T0 + 30, 170))
    assert traj.value("altitude", T0 + 12) == pytest.approx(lerp(T0 + 12, T0 + 10, 0, T0 + 20,
                                                                 1000))
    # no airspeed in this format: CAS is approximated from ground speed
    assert traj.value("IAS", T0 + 25) == traj.value("groundspeed", T0 + 25)


def test_angle_interpolation_wraps_through_north(tmp_path: Path) -> None:
    traj = load(write_samples(tmp_path / "s.json.gz", sample_records()))
    assert traj.value("track", T0 + 5) == pytest.approx(0.0, abs=1e-9)
    assert traj.value("track", T0 + 2.5) == pytest.approx(355.0)
    assert traj.value("track", T0 + 7.5) == pytest.approx(5.0)
    for i in range(101):  # 350 -> 10 the short way: never near 180
        v = traj.value("track", T0 + i / 10)
        assert 0.0 <= v < 360.0
        assert v >= 350.0 - 1e-9 or v <= 10.0 + 1e-9
    s = Series([0.0, 10.0], [10.0, 350.0], mode="linear", angle=True)
    assert s.at(5.0) == pytest.approx(0.0, abs=1e-9)  # and the other way round
    assert s.at(2.5) == pytest.approx(5.0)


def test_series_gaps() -> None:
    lin = Series([0.0, 300.0], [100.0, 400.0], mode="linear", max_gap_s=120.0)
    assert lin.at(100.0) == 100.0  # samples too far apart: hold the last one, no interpolation
    assert lin.at(120.0) == 100.0
    assert lin.at(150.0) is None
    assert lin.at(300.0) == 400.0
    assert lin.at(420.0) == 400.0 and lin.at(420.1) is None
    assert lin.at(-0.1) is None
    close = Series([0.0, 100.0], [100.0, 400.0], mode="linear", max_gap_s=120.0)
    assert close.at(50.0) == pytest.approx(250.0)
    hold = Series([0.0, 10.0], [1.0, 2.0], mode="hold", max_gap_s=5.0)
    assert hold.at(4.9) == 1.0 and hold.at(5.0) == 1.0 and hold.at(5.1) is None
    assert hold.at(12.0) == 2.0
    text = Series([0.0, 10.0], ["A", "B"], mode="linear", max_gap_s=60.0)
    assert text.at(5.0) == "A"  # non-numeric values are held even in linear mode


def test_samples_timestamp_in_seconds(tmp_path: Path) -> None:
    recs = sample_records()
    for r in recs:
        r["timestamp"] = r["timestamp"] / 1000
    path = tmp_path / "s.json"
    path.write_text(json.dumps(recs))
    traj = load(path)
    assert (traj.start, traj.end) == (T0, T0 + 30)


# --- garbage files ---------------------------------------------------------------------------

GARBAGE = {
    "empty": b"",
    "binary": bytes(range(0x20, 0x7B)).replace(b"[", b"").replace(b"{", b"") * 3,
    "text": b"hello, this is not a flight\n",
    "empty list": b"[]",
    "list of numbers": b"[1, 2, 3]",
    "list of non-records": b'[[1], 5, "x", null]',
    "no altitude": json.dumps([{"timestamp": 1, "groundspeed": 3}]).encode(),
    "bad timestamps": json.dumps([{"timestamp": "noon", "altitude": 0}, {"altitude": 1}]).encode(),
    "broken JSON list": b'[{"timestamp": 1,',
    "broken JSONL": b'{"timestamp": 1, "frame": "8D00"}\n{oops\n',
    "JSONL without frames": b'{"a": 1}\n{"b": 2}\n',
    "JSONL non-object lines": b'{"timestamp": 1.0}\n42\n"x"\n[1, 2]\nnull\n',
    "JSONL missing timestamps": b'{"frame": "8D00", "altitude": 100}\n{"frame": "20"}\n',
    "JSONL string timestamps": b'{"timestamp": "x", "frame": "8D00", "altitude": 1}\n',
    "JSONL non-hex frame": b'{"timestamp": 1.0, "frame": "zz", "altitude": 1}\n',
    "gzip of text": gzip.compress(b"hello world"),
    "truncated gzip": gzip.compress(json.dumps(sample_records()).encode())[:40],
    "gzip magic only": b"\x1f\x8b",
    "corrupt gzip": b"\x1f\x8b\x08\x00" + bytes(range(40)),
}


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_raises_recording_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(content)
    with pytest.raises(RecordingError):
        load(path)


def test_missing_file_is_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load(tmp_path / "nope.jsonl")


def test_bad_rows_are_skipped_not_fatal(tmp_path: Path) -> None:
    lines = [rs1090_line(T0, 17, 5, altitude=1000), "42", '{"frame": "8D00"}',
             '{"timestamp": 5, "frame": "zz"}', rs1090_line(T0 + 1, 4, 1)]
    traj = load(write_jsonl(tmp_path / "f.jsonl", lines))
    assert traj.transitions() == [(T0, False), (T0 + 1, True)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**14) | st.floats()
    | st.text(max_size=6) | st.sampled_from(["ground", "06", "8D00", "20", "AFR34ZG"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=12,
)
record_keys = st.sampled_from(["timestamp", "frame", "altitude", "onground", "groundspeed",
                               "track", "callsign", "bds", "latitude", "IAS"])
records_st = st.lists(st.one_of(st.dictionaries(record_keys, json_values, max_size=8),
                                json_values), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(records=records_st, form=st.sampled_from(["list", "jsonl", "gzip-list", "gzip-jsonl"]))
def test_arbitrary_json_loads_or_raises_recording_error(tmp_path: Path, records: list[Any],
                                                        form: str) -> None:
    if form.endswith("jsonl"):
        text = "\n".join(json.dumps(r) for r in records)
        if not text.lstrip().startswith("{"):
            text = "{}\n" + text
    else:
        text = json.dumps(records)
    raw = text.encode()
    if form.startswith("gzip"):
        raw = gzip.compress(raw)
    path = tmp_path / "any"
    path.write_bytes(raw)
    try:
        traj = load(path)
    except RecordingError:
        return
    assert isinstance(traj, Trajectory)
    assert "onground" in traj.series and "altitude" in traj.series


# --- the simulator ---------------------------------------------------------------------------

CALLSIGN = "AFR34ZG"


def flight_records(t0: float, seconds: int, on_ground: bool = False) -> list[dict[str, Any]]:
    """An airborne (or parked) flight sampled every 10 s with every field the card sends."""
    recs = []
    for i in range(seconds // 10 + 2):
        t = t0 + 10 * i
        recs.append({
            "timestamp": ms(t), "altitude": 0 if on_ground else 10000 + 100 * i,
            "groundspeed": 0.0 if on_ground else 300.0 + i, "track": 170.0 + 2 * i,
            "heading": 172.0 + 2 * i, "latitude": 45.5 - 0.01 * i, "longitude": 2.0 + 0.01 * i,
            "vertical_rate": 0.0 if on_ground else 600.0, "IAS": 0.0 if on_ground else 250.0 + i,
            "TAS": 0.0 if on_ground else 380.0 + i, "callsign": CALLSIGN,
        })
    return recs


@pytest.fixture
def flight(tmp_path: Path) -> Trajectory:
    return load(write_samples(tmp_path / "flight.json.gz", flight_records(T0, 60)))


def tick_of(t_us: int) -> int:
    """The 1/8 s tick of a card timestamp (the card clock runs in flight time from power-up)."""
    return (t_us - round(CARD_BOOT_S * 1e6) + 1) // round(1e6 / TICK_HZ)


def run(traj: Trajectory, seconds: float, faults: Faults | None = None, idle: bytes = b"",
        ) -> tuple[list[Frame], FrameDecoder, int]:
    """Generate ``seconds`` of flight (ticks 0 .. seconds*8 - 1) and decode it.

    ``idle`` is fed after the stream, as the line would carry more bytes: a false sync near the
    end may hold the last frames back until then. Returns frames, decoder, stream length.
    """
    dec = FrameDecoder()
    frames: list[Frame] = []
    n = 0
    for _, chunk in generate(traj, faults, end=traj.start + seconds - 1 / TICK_HZ):
        frames += dec.feed(chunk)
        n += len(chunk)
    frames += dec.feed(idle)
    return frames, dec, n


def words(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(tick_of(f.t_us), f.word()) for f in frames if f.type == FrameType.A429_WORD]


def readings(frames: list[Frame]) -> list[tuple[int, Reading]]:
    out = []
    for tick, w in words(frames):
        out.append((tick, TABLE.by_wire[w & 0xFF].decode(w)))
    return out


def test_sim_sends_every_label_at_its_rate(flight: Trajectory) -> None:
    seconds = 20
    frames, dec, nbytes = run(flight, seconds)
    assert dec.stats.bytes_in == nbytes
    assert dec.stats.garbage_bytes == dec.stats.crc_errors == dec.stats.bad_length == 0
    per_label = Counter(r.spec.name for _, r in readings(frames))
    assert per_label == {s.name: seconds * s.rate_hz for s in TABLE}
    types = Counter(f.type for f in frames)
    assert types[FrameType.DISCRETES] == seconds * DISCRETE_HZ
    assert types[FrameType.HEARTBEAT] == seconds
    assert {f.channel for f in frames if f.type == FrameType.A429_WORD} == {1}
    assert all(r.status is Status.NORMAL for _, r in readings(frames))


def test_sim_values_and_card_clock(flight: Trajectory) -> None:
    frames, _, _ = run(flight, 12)
    ts = [f.t_us for f in frames]
    assert ts == sorted(ts)  # the card clock only moves forward
    for f in frames:
        if f.type == FrameType.HEARTBEAT:
            tick = tick_of(f.t_us)
            assert abs(f.t_us - ((CARD_BOOT_S + tick / TICK_HZ) * 1e6 + 50_000)) <= 1
            assert Heartbeat.unpack(f.payload).uptime_s == int(CARD_BOOT_S + tick / TICK_HZ)
        if f.type == FrameType.DISCRETES:
            states, fault_mask = int.from_bytes(f.payload[:2], "little"), f.payload[2:]
            assert states == DiscreteBits.DOOR_FWD_CLOSED | DiscreteBits.DOOR_AFT_CLOSED
            assert fault_mask == b"\x00\x00"
    seen = set()
    for tick, r in readings(frames):
        t = flight.start + tick / TICK_HZ  # flight time of the tick the card stamped
        name, res = r.spec.name, r.spec.resolution
        seen.add(name)
        if name in ("track_angle_true", "true_heading"):
            src = flight.value("track" if name == "track_angle_true" else "heading", t)
            diff = (r.value - src + 180) % 360 - 180
            assert abs(diff) <= res / 2 + 1e-9
        elif r.spec.encoding == "bnr":
            field = {"pressure_altitude": "altitude", "computed_airspeed": "IAS",
                     "true_airspeed": "TAS", "altitude_rate": "vertical_rate",
                     "ground_speed": "groundspeed", "latitude": "latitude",
                     "longitude": "longitude"}[name]
            assert abs(r.value - flight.value(field, t)) <= res / 2 + 1e-9, name
        elif name == "utc_time":
            assert r.value == int(t) % 86400
        elif name == "utc_date":
            assert r.value == "2024-07-06"
        elif name.startswith("flight_number_"):
            i = int(name[-1]) - 1
            assert r.value == CALLSIGN.ljust(8)[2 * i:2 * i + 2]
        elif name == "air_ground_word":
            assert r.value == 0  # airborne: bit 11 (on ground) clear
    assert seen == {s.name for s in TABLE}


def test_sim_card_clock_counts_from_the_recording_not_the_playback_start(
        flight: Trajectory) -> None:
    # starting the playback 5 s in: the card was still powered CARD_BOOT_S before the recording
    chunks = list(generate(flight, start=flight.start + 5, end=flight.start + 6))
    frames = FrameDecoder().feed(b"".join(c for _, c in chunks))
    hb = [f for f in frames if f.type == FrameType.HEARTBEAT]
    assert chunks[0][0] == flight.start + 5
    assert abs(hb[0].t_us - ((CARD_BOOT_S + 5) * 1e6 + 50_000)) <= 1
    assert Heartbeat.unpack(hb[0].payload).uptime_s == CARD_BOOT_S + 5


def test_sim_parked_on_ground(tmp_path: Path) -> None:
    traj = load(write_samples(tmp_path / "parked.json.gz", flight_records(T0, 20, on_ground=True)))
    frames, _, _ = run(traj, 4)
    discretes = [int.from_bytes(f.payload[:2], "little") for f in frames
                 if f.type == FrameType.DISCRETES]
    assert discretes and all(d == DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT for d in discretes)
    ag = [r for _, r in readings(frames) if r.spec.name == "air_ground_word"]
    bit = ag[0].spec.bits["on_ground"] - ag[0].spec.lsb
    assert ag and all(int(r.value) >> bit & 1 for r in ag)


def test_sim_missing_values_are_ncd(tmp_path: Path) -> None:
    recs = flight_records(T0, 20)
    for r in recs:
        del r["TAS"]
    traj = load(write_samples(tmp_path / "notas.json.gz", recs))
    frames, _, _ = run(traj, 4)
    status = {r.spec.name: r.status for _, r in readings(frames)}
    assert status.pop("true_airspeed") is Status.NO_COMPUTED_DATA
    assert set(status.values()) == {Status.NORMAL}


def test_sim_follows_the_table_label_orientation(flight: Trajectory) -> None:
    straight = LabelTable.default(label_reversed=False)
    frames = []
    dec = FrameDecoder()
    for _, chunk in generate(flight, table=straight, end=flight.start + 2 - 1 / TICK_HZ):
        frames += dec.feed(chunk)
    ws = [f.word() for f in frames if f.type == FrameType.A429_WORD]
    reversed_run = [w for _, w in words(run(flight, 2)[0])]
    assert len(ws) == len(reversed_run) > 0
    for w, wr in zip(ws, reversed_run, strict=True):
        assert straight.by_wire[w & 0xFF].label == TABLE.by_wire[wr & 0xFF].label
        assert w & 0xFF == int(format(wr & 0xFF, "08b")[::-1], 2)
        assert w & ~0xFF == wr & ~0xFF  # only bits 1-8 differ


def test_sim_heading_just_below_180_is_sent(tmp_path: Path) -> None:
    recs = flight_records(T0, 20)
    res = TABLE.by_name["true_heading"].resolution
    for r in recs:
        r["heading"] = 180.0 - res / 4  # rounds to +180, which BNR cannot carry
    traj = load(write_samples(tmp_path / "south.json.gz", recs))
    hdg = [r for _, r in readings(run(traj, 2)[0]) if r.spec.name == "true_heading"]
    assert hdg and all(r.status is Status.NORMAL for r in hdg)
    assert all(abs(r.value - (180.0 - res)) < 1e-9 for r in hdg)  # type: ignore[operator]


def test_sim_ncd_spell_on_one_label_only(flight: Trajectory) -> None:
    faults = Faults.parse(["ncd=pressure_altitude@+5/3"], flight.start)
    frames, _, _ = run(flight, 12, faults)
    spec = TABLE.by_name["pressure_altitude"]
    ncd_ticks = set()
    for tick, r in readings(frames):
        in_spell = 5 * TICK_HZ <= tick < 8 * TICK_HZ
        if r.spec is spec and in_spell:
            assert r.status is Status.NO_COMPUTED_DATA
            ncd_ticks.add(tick)
        else:
            assert r.status is Status.NORMAL, (tick, r.spec.name)
    assert len(ncd_ticks) == 3 * spec.rate_hz


def test_sim_dropout_removes_label(flight: Trajectory) -> None:
    seconds = 12
    clean = Counter(r.spec.name for _, r in readings(run(flight, seconds)[0]))
    faults = Faults.parse(["dropout=206@+4/2", "dropout=wow@+6/1"], flight.start)
    frames, _, _ = run(flight, seconds, faults)
    got = Counter(r.spec.name for _, r in readings(frames))
    cas = TABLE.by_label[0o206]
    assert got[cas.name] == clean[cas.name] - 2 * cas.rate_hz
    assert all(not (4 * TICK_HZ <= tick < 6 * TICK_HZ)
               for tick, r in readings(frames) if r.spec is cas)
    assert {k: v for k, v in got.items() if k != cas.name} == \
        {k: v for k, v in clean.items() if k != cas.name}
    disc = [tick_of(f.t_us) for f in frames if f.type == FrameType.DISCRETES]
    assert len(disc) == seconds * DISCRETE_HZ - 1 * DISCRETE_HZ
    assert not [t for t in disc if 6 * TICK_HZ <= t < 7 * TICK_HZ]


def test_sim_wow_glitch_inverts_one_sample(flight: Trajectory) -> None:
    faults = Faults.parse(["wow-glitch=+3.1"], flight.start)
    frames, _, _ = run(flight, 6, faults)
    wow = DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT
    samples = [(tick_of(f.t_us), int.from_bytes(f.payload[:2], "little") & wow)
               for f in frames if f.type == FrameType.DISCRETES]
    glitched = [t for t, s in samples if s]
    first_after = min(t for t, _ in samples if flight.start + t / TICK_HZ >= flight.start + 3.1)
    assert glitched == [first_after]


def test_sim_parity_fault_rate(flight: Trajectory) -> None:
    p = 0.05
    seconds = 60
    frames, _, _ = run(flight, seconds, Faults(parity_rate=p, seed=3))
    ws = words(frames)
    bad = 0
    for _, w in ws:
        spec = TABLE.by_wire[w & 0xFF]  # the flipped bit is a data bit: the label is intact
        try:
            spec.decode(w)
        except ParityError:
            bad += 1
    n = len(ws)
    assert n == seconds * sum(s.rate_hz for s in TABLE)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(bad - n * p) <= 6 * sigma, (bad, n * p)
    assert bad > 0


def test_sim_garbage_keeps_every_real_frame(flight: Trajectory) -> None:
    idle = bytes(79)  # a maximal frame: any false header near the end is resolved
    clean, _, clean_bytes = run(flight, 30)
    frames, dec, nbytes = run(flight, 30, Faults(garbage_rate=0.3, seed=11), idle)
    assert frames == clean
    assert nbytes > clean_bytes
    assert dec.stats.garbage_bytes == nbytes - clean_bytes + len(idle)  # the inserted bytes
    assert dec.stats.crc_errors + dec.stats.bad_length > 0  # false syncs were tried


# --- fault specs -----------------------------------------------------------------------------


def test_faults_parse_forms() -> None:
    f = Faults.parse([
        "garbage=0.25", "parity=0.001", "wow-glitch=+30", "wow-glitch=07:31:19",
        "dropout=speeds@+10/5", "ncd=203+latitude@+0/2s", "dropout=airground@06:30:00/60",
        "ncd=wow_left@05:30:00/1", "dropout=150@00:30:00/1",
    ], T0, seed=9)
    assert (f.garbage_rate, f.parity_rate, f.seed) == (0.25, 0.001, 9)
    day = dt.datetime(2024, 7, 6, tzinfo=dt.UTC).timestamp()
    assert f.wow_glitches == [T0 + 30, day + 7 * 3600 + 31 * 60 + 19]
    assert f.dropouts[0] == (GROUPS["speeds"], T0 + 10, T0 + 15)
    assert f.dropouts[0][0] == {"computed_airspeed", "true_airspeed", "ground_speed"}
    assert f.ncd[0] == (frozenset({"pressure_altitude", "latitude"}), T0, T0 + 2)
    assert f.dropouts[1] == (GROUPS["airground"], day + 6.5 * 3600, day + 6.5 * 3600 + 60)
    # up to an hour before the start: same day; earlier: the next day (a flight past midnight)
    assert f.ncd[1] == (frozenset({"wow_left"}), day + 5.5 * 3600, day + 5.5 * 3600 + 1)
    assert f.dropouts[2] == (frozenset({"utc_time"}), day + 86400 + 1800, day + 86400 + 1801)
    assert f.is_dropped("ground_speed", T0 + 10) and f.is_dropped("ground_speed", T0 + 14.9)
    assert not f.is_dropped("ground_speed", T0 + 15) and not f.is_dropped("latitude", T0 + 12)
    assert f.is_ncd("latitude", T0 + 1) and not f.is_ncd("latitude", T0 + 2)
    assert Faults.parse([], T0) == Faults()


@pytest.mark.parametrize("spec", [
    "bogus=1", "garbage", "garbage=abc", "parity=", "wow-glitch=noon", "wow-glitch=+x",
    "dropout=foo@+1/2", "dropout=speeds+1/2", "dropout=speeds@+1", "dropout=speeds@+1/x",
    "ncd=777@+1/2", "ncd=speeds@25:00:00/2", "ncd=speeds,wow@+1/2", "ncd=@+1/2",
])
def test_faults_parse_errors(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        Faults.parse([spec], T0)
    assert issubclass(FaultSpecError, ValueError)


def test_cli_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = write_samples(tmp_path / "f.json.gz", flight_records(T0, 20))
    out = tmp_path / "stream.bin"
    assert cli.main(["dump", str(rec), "-o", str(out), "--end", "+4",
                     "--fault", "garbage=0.2"]) == 0
    dec = FrameDecoder()
    frames = dec.feed(out.read_bytes())
    assert Counter(f.type for f in frames)[FrameType.HEARTBEAT] == 5  # ticks 0..32 inclusive
    assert dec.stats.garbage_bytes > 0
    assert cli.main(["dump", str(rec), "-o", str(out), "--fault", "nope=1"]) == 2
    assert "unknown fault" in capsys.readouterr().err
    (tmp_path / "junk").write_bytes(b"junk")
    assert cli.main(["dump", str(tmp_path / "junk"), "-o", str(out)]) == 2


def test_sim_card_failing_silent_then_garbage_then_wow_lie(flight: Trajectory) -> None:
    """Window faults of the whole card, the same specs as can_sim's (serial failing mid-flight)."""
    WOW = DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT
    faults = Faults.parse(["silent=+2/2", "garbage=+4/2", "wow-glitch=+6/3"], flight.start)
    assert faults.garbage_rate == 0.0 and faults.wow_glitches == []  # windows, not rate/sample
    chunks = list(generate(flight, faults, end=flight.start + 10 - 1 / TICK_HZ))
    assert len(chunks) == 10 * TICK_HZ  # silent ticks still yield (empty) chunks: CAN stays paced
    assert all(c == b"" for t, c in chunks if 2 <= t - flight.start < 4)
    frames, dec, _ = run(flight, 10, faults)
    ticks = {tick_of(f.t_us) for f in frames}
    assert not {t for t in ticks if 2 * TICK_HZ <= t < 6 * TICK_HZ}  # nothing, then no frame
    assert dec.stats.garbage_bytes > 1000
    assert {t for t in ticks if t < 2 * TICK_HZ} and {t for t in ticks if t >= 6 * TICK_HZ}
    disc = [(tick_of(f.t_us), int.from_bytes(f.payload[:2], "little"),
             int.from_bytes(f.payload[2:4], "little"))
            for f in frames if f.type == FrameType.DISCRETES]
    lie = [(s & WOW, fault) for t, s, fault in disc if 6 * TICK_HZ <= t < 9 * TICK_HZ]
    rest = [s & WOW for t, s, _ in disc if t >= 9 * TICK_HZ or t < 2 * TICK_HZ]
    assert lie and all(w == WOW and fault == 0 for w, fault in lie)  # "on ground", no fault
    assert rest and all(w == 0 for w in rest)  # airborne
