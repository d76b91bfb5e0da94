"""Every layout public recorded flights come in, written from the real AFR34ZG recording.

The raw Mode-S JSONL (var/cache) is sampled every ``STEP_S`` seconds into state vectors with the
``traffic`` library's column names; each test writes them in one layout (as pandas, readsb or
Flightradar24 would) and reads it back with :func:`firmware_bridge.recording.load`. Every layout
must give the same trajectory as the plain JSON list of the same records, hence the same replay;
the full replays of every layout against the JSONL's are whole-system tests (about 5 s each).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.recording import RecordingError, Trajectory, load

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.filterwarnings("ignore:.*epoch.*")  # pandas 3 on traffic's date format

STEP_S = 2.0
FIELDS = ("latitude", "longitude", "altitude", "groundspeed", "track", "vertical_rate", "IAS")
TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def vectors(flight_path: Path) -> list[dict[str, Any]]:
    """The AFR34ZG flight as state vectors every STEP_S s (epoch s, traffic's column names)."""
    traj = load(flight_path)
    out = []
    n = int((traj.end - traj.start) / STEP_S)
    for i in range(n + 1):
        t = round(traj.start + i * STEP_S, 3)
        og = traj.value("onground", t)
        if og is None:  # before the first frame with an air/ground status
            continue
        row: dict[str, Any] = {"timestamp": t, "icao24": "393322", "callsign": "AFR34ZG",
                               "onground": bool(og)}
        for f in FIELDS:
            v = traj.value(f, t)
            row[f] = None if v is None else round(float(v), 6)
        out.append(row)
    return out


def frame(vectors: list[dict[str, Any]]) -> Any:
    df = pd.DataFrame(vectors)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)  # as traffic holds it
    return df


def readsb(vectors: list[dict[str, Any]]) -> dict[str, Any]:
    base = math.floor(vectors[0]["timestamp"])
    trace = []
    for r in vectors:
        alt = "ground" if r["onground"] else r["altitude"]
        details = {"type": "adsb_icao", "flight": "AFR34ZG "} if not trace else None
        trace.append([round(r["timestamp"] - base, 2), r["latitude"], r["longitude"], alt,
                      r["groundspeed"], r["track"], 0, r["vertical_rate"], details, "adsb_icao",
                      None, None, r["IAS"], None])
    return {"icao": "393322", "r": "F-HEPB", "t": "A320", "timestamp": base, "trace": trace}


def fr24(vectors: list[dict[str, Any]]) -> dict[str, Any]:
    track = []
    for r in vectors:
        alt = 0 if r["onground"] else r["altitude"]
        ft = None if alt is None else alt
        track.append({
            "latitude": r["latitude"], "longitude": r["longitude"],
            "altitude": {"feet": ft, "meters": None if ft is None else round(ft * 0.3048)},
            "speed": {"kts": r["groundspeed"], "kmh": None, "mph": None},
            "verticalSpeed": {"fpm": r["vertical_rate"], "ms": None},
            "heading": r["track"], "squawk": "1000", "timestamp": r["timestamp"],
            "ems": None if r["IAS"] is None else {"ts": r["timestamp"], "ias": r["IAS"]}})
    flight = {"identification": {"id": "35f0c2a1", "callsign": "AFR34ZG"},
              "aircraft": {"model": {"code": "A320"}, "identification": {"modes": "393322"}},
              "airport": {"origin": {"code": {"icao": "LFPG"}},
                          "destination": {"code": {"icao": "LFBO"}}},
              "track": track}
    return {"result": {"request": {}, "response": {"data": {"flight": flight}}}}


def _json(orient: str, iso: bool = False) -> Callable[[list[dict[str, Any]]], bytes]:
    def write(vectors: list[dict[str, Any]]) -> bytes:  # default: epoch ms, as traffic's samples
        kw = {"date_format": "iso"} if iso else {}
        return frame(vectors).to_json(orient=orient, **kw).encode()
    return write


def _parquet(vectors: list[dict[str, Any]]) -> bytes:
    import io

    buf = io.BytesIO()
    frame(vectors).to_parquet(buf, index=False)
    return buf.getvalue()


WRITERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
    "records.json": _json("records"),
    "records-iso.json": _json("records", iso=True),
    "columns.json": _json("columns"),
    "split.json": _json("split"),
    "index.json": _json("index", iso=True),
    "table.json": _json("table", iso=True),
    "trace_full_393322.json": lambda v: json.dumps(readsb(v)).encode(),
    "fr24.json": lambda v: json.dumps(fr24(v), indent=2).encode(),
    "flight.csv": lambda v: frame(v).to_csv(index=False).encode(),
    "flight.parquet": _parquet,
}
LAYOUTS = [*WRITERS, *(f"{name}.gz" for name in WRITERS if name.endswith(".json"))]


def write(tmp: Path, name: str, vectors: list[dict[str, Any]]) -> Path:
    base = name.removesuffix(".gz")
    raw = WRITERS[base](vectors)
    path = tmp / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    return path


@pytest.fixture(scope="module")
def reference(vectors: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
              ) -> Trajectory:
    """The same vectors as a plain JSON list (the layout the loader already read)."""
    path = tmp_path_factory.mktemp("ref") / "list.json"
    path.write_text(json.dumps(vectors))
    return load(path)


def assert_same(traj: Trajectory, ref: Trajectory) -> None:
    changes, ref_changes = traj.transitions(), ref.transitions()
    assert [og for _, og in changes] == [og for _, og in ref_changes]
    assert [t for t, _ in changes] == pytest.approx([t for t, _ in ref_changes], abs=0.01)
    assert (traj.start, traj.end) == pytest.approx((ref.start, ref.end), abs=0.01)
    for key in ("altitude", "groundspeed", "latitude", "longitude", "track", "onground"):
        a, b = traj.series[key], ref.series[key]
        assert a.t == pytest.approx(b.t, abs=0.01), key
        av, bv = a.v, b.v
        if key == "altitude":  # readsb and FR24 carry no altitude on the ground ("ground", 0)
            og = [ref.value("onground", t) for t in b.t]
            av = [v for v, g in zip(av, og, strict=True) if not g]
            bv = [v for v, g in zip(bv, og, strict=True) if not g]
        assert av == pytest.approx(bv, abs=1e-6), key
    assert traj.value("callsign", ref.start + 60) == "AFR34ZG"


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_reads_as_the_same_flight(name: str, vectors: list[dict[str, Any]],
                                         reference: Trajectory, tmp_path: Path) -> None:
    traj = load(write(tmp_path, name, vectors))
    assert_same(traj, reference)
    # the flight's own truth: on ground until the take-off, airborne until the landing
    changes = traj.transitions()
    assert changes[0][1] is True and changes[-1][1] is True, changes
    assert abs(changes[1][0] - TAKEOFF) <= 6 and abs(changes[-1][0] - LANDING) <= 6, changes


def test_pandas_columns_json_is_not_refused(vectors: list[dict[str, Any]],
                                            tmp_path: Path) -> None:
    """The issue: a column-oriented pandas JSON with both fields was refused as having neither."""
    traj = load(write(tmp_path, "columns.json", vectors))
    assert "onground" in traj.series and "altitude" in traj.series


def test_a_parquet_replay_gives_the_jsonl_transitions(vectors: list[dict[str, Any]],
                                                      tmp_path: Path) -> None:
    from appliance.avionics.replay import replay

    res = replay(write(tmp_path, "flight.parquet", vectors))
    modes = [(e.previous, e.current, e.utc) for e in res.events if e.kind == "mode"]
    assert [(a, b) for a, b, _ in modes] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    assert abs(modes[0][2] - TAKEOFF) <= 10 and abs(modes[1][2] - LANDING) <= 10


@pytest.fixture(scope="module")
def jsonl_modes(flight_path: Path) -> list[tuple[str | None, str, float]]:
    from appliance.avionics.replay import replay

    return [(e.previous, e.current, e.utc) for e in replay(flight_path).events if e.kind == "mode"]


@pytest.mark.system
@pytest.mark.parametrize("name", list(WRITERS))  # gzip is undone first: the .gz twins read the same
def test_every_layout_replays_as_the_jsonl(name: str, vectors: list[dict[str, Any]],
                                           jsonl_modes: list[tuple[str | None, str, float]],
                                           tmp_path: Path) -> None:
    from appliance.avionics.replay import replay

    res = replay(write(tmp_path, name, vectors))
    modes = [(e.previous, e.current, e.utc) for e in res.events if e.kind == "mode"]
    assert [(a, b) for a, b, _ in modes] == [(a, b) for a, b, _ in jsonl_modes]
    for (_, _, t), (_, _, ref) in zip(modes, jsonl_modes, strict=True):
        assert abs(t - ref) <= 5.0, (name, t - ref)


# --- refused files: what was expected, what was found ------------------------------------------

REFUSED = {
    "object.json": (b'{"foo": 1, "bar": [2]}', ["'foo'", "'bar'", "expected", "readsb"]),
    "plain.csv": (b"a,b,c\n1,2,3\n", ["text starting 'a,b,c'", "expected", "timestamp column"]),
    "no-altitude.json": (json.dumps([{"timestamp": 1720248189, "groundspeed": 3.0,
                                      "latitude": 49.0}]).encode(),
                         ["found 1 records with fields timestamp, groundspeed, latitude",
                          "expected", "altitude"]),
    "frames.jsonl": (b'{"timestamp": 1.5, "frame": "8D00", "icao24": "393322"}\n'
                     b'{"timestamp": 2.5, "frame": "8D01", "squawk": "1000"}\n',
                     ["Mode-S frames without altitude", "found 2 rows with fields timestamp, "
                      "frame, icao24, squawk"]),
    "readsb.json": (b'{"icao": "393322", "timestamp": "noon", "trace": []}',
                    ["readsb trace_full without a numeric timestamp"]),
    "fr24.json": (b'{"result": {"response": {"data": {}}}}',
                  ["Flightradar24 JSON without result.response.data.flight.track"]),
    "broken.json": (b'{"timestamp": {"0": 1', ["found broken JSON", "expected"]),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_wrong_file_is_refused_naming_what_was_found(name: str, tmp_path: Path) -> None:
    raw, words = REFUSED[name]
    path = tmp_path / name
    path.write_bytes(raw)
    with pytest.raises(RecordingError) as e:
        load(path)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_a_parquet_file_without_timestamps_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pd.DataFrame({"altitude": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(RecordingError, match="Parquet with no record with a timestamp"):
        load(path)
    path.write_bytes(b"PAR1" + bytes(64))
    with pytest.raises(RecordingError, match="damaged Parquet"):
        load(path)


def test_replay_cli_refuses_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    from appliance.cli import main

    path = tmp_path / "object.json"
    path.write_bytes(REFUSED["object.json"][0])
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert "found a JSON object with keys 'foo', 'bar'" in err and "expected" in err


@pytest.mark.parametrize("name", ["columns.json.gz", "trace_full_393322.json", "fr24.json",
                                  "flight.csv", "flight.parquet"])
def test_the_card_simulator_plays_every_layout(name: str, vectors: list[dict[str, Any]],
                                               tmp_path: Path) -> None:
    from firmware_bridge import cli
    from firmware_bridge.frame import FrameDecoder, FrameType

    out = tmp_path / "stream.bin"
    assert cli.main(["dump", str(write(tmp_path, name, vectors)), "-o", str(out),
                     "--start", "07:30:00", "--end", "07:30:04"]) == 0
    frames = FrameDecoder().feed(out.read_bytes())
    assert sum(f.type == FrameType.HEARTBEAT for f in frames) == 5
    assert sum(f.type == FrameType.A429_WORD for f in frames) > 300


ODD = [
    {"columns": 5, "data": 3}, {"schema": {}, "data": 1}, {"schema": {"fields": 3}, "data": [1]},
    {"timestamp": {"0": [1]}}, {"columns": ["timestamp"], "data": [[1, 2]]},
    {"timestamp": {"0": 1e300}, "altitude": {"0": 3}},
    {"icao": "x", "timestamp": -5, "trace": [[1, "a", None, "ground", None, None, "f"]]},
    {"result": {"response": {"data": {"flight": {"track": 7}}}}},
]


@pytest.mark.parametrize("doc", ODD)
def test_odd_shapes_are_refused_not_crashed(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RecordingError):
        load(path)
    path.write_text('{"timestamp": 1e300, "frame": "8D00", "altitude": 1}\n{"timestamp": 2}\n')
    with pytest.raises(RecordingError):  # a time no flight has: refused, not an overflow later
        load(path)
