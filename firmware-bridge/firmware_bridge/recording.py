"""Recorded flights: load them into a :class:`Trajectory` of time series, and fetch the default one.

Every layout of :mod:`firmware_bridge.layouts` is read (rs1090 JSONL, JSON lists, pandas JSON,
readsb traces, Flightradar24 JSON, CSV, Parquet), as one of two kinds (see shared/AVIONICS.md):

- **rs1090 JSONL** (one received Mode-S frame per line: ``timestamp`` epoch s, ``frame`` hex, decoded
  fields where the frame carries them). Values are held from one frame to the next (sample and
  hold, up to ``HOLD_MAX_S``). The on-ground state comes from the frame's first byte: DF 4/5/20/21
  flight status (FS 1/3 ground, 0/2 airborne), DF 17 capability (CA 4 ground, 5 airborne), and
  surface position messages (BDS 0,6) — raw, glitches included.
- **traffic sample lists** (a JSON or gzipped-JSON list of records: ``timestamp`` epoch ms or s,
  ``altitude`` ft (0 or "ground" = on ground), ``groundspeed`` kt, ``latitude``, ``longitude``,
  ``track``, ``vertical_rate``, optional ``onground``, ``callsign``). Sampled every 5-60 s, so
  numeric series are interpolated linearly (angles along the short way round).
"""

from __future__ import annotations

import bisect
import gzip
import math
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .layouts import MAX_EPOCH_S, LayoutError, read_rows

__all__ = [
    "DEFAULT_FLIGHT",
    "HOLD_MAX_S",
    "RecordingError",
    "Series",
    "Trajectory",
    "fetch_default_flight",
    "load",
]

HOLD_MAX_S = 30.0
DEFAULT_FLIGHT = "AFR34ZG_CDG-TLS_2024-07-06.jsonl"
_WHEEL_MEMBER = "traffic/data/samples/rs1090/full_flight_short.jsonl"
_ANGLES = frozenset({"track", "heading"})


class RecordingError(ValueError):
    """A recording that cannot be read: unknown format, no usable records."""


@dataclass(slots=True)
class Series:
    """A time series: sorted times (epoch s) and values, read back by :meth:`at`.

    ``mode`` is ``"hold"`` (last value, if not older than ``max_gap_s``) or ``"linear"``
    (interpolated between samples not more than ``max_gap_s`` apart; angles wrap at 360°).
    """

    t: list[float] = field(default_factory=list)
    v: list[Any] = field(default_factory=list)
    mode: str = "hold"
    max_gap_s: float = HOLD_MAX_S
    angle: bool = False

    def at(self, t: float) -> Any:
        """The value at time ``t`` (epoch s), or None when unknown or too old."""
        i = bisect.bisect_right(self.t, t) - 1
        if i < 0:
            return None
        t0, v0 = self.t[i], self.v[i]
        if self.mode == "hold" or i + 1 >= len(self.t) or not isinstance(v0, (int, float)):
            return v0 if t - t0 <= self.max_gap_s else None
        t1, v1 = self.t[i + 1], self.v[i + 1]
        if t1 - t0 > self.max_gap_s:
            return v0 if t - t0 <= self.max_gap_s else None
        f = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        if self.angle:
            d = (v1 - v0 + 180.0) % 360.0 - 180.0
            return (v0 + f * d) % 360.0
        return v0 + f * (v1 - v0)


@dataclass(slots=True)
class Trajectory:
    """A recorded flight as series keyed by field name.

    Fields: ``altitude`` (ft, pressure), ``groundspeed`` (kt), ``IAS`` and ``TAS`` (kt), ``track`` and
    ``heading`` (deg true), ``latitude``/``longitude`` (deg), ``vertical_rate`` (ft/min),
    ``onground`` (bool), ``callsign`` (str). ``start``/``end`` are epoch seconds.
    """

    series: dict[str, Series]
    start: float
    end: float
    name: str = ""

    def value(self, name: str, t: float) -> Any:
        """Value of field ``name`` at ``t``, or None if the recording has none then."""
        s = self.series.get(name)
        return None if s is None else s.at(t)

    def transitions(self) -> list[tuple[float, bool]]:
        """Raw on-ground changes as (time, onground), glitches included."""
        s = self.series.get("onground")
        out: list[tuple[float, bool]] = []
        if s is None:
            return out
        last = None
        for t, v in zip(s.t, s.v, strict=True):
            if v != last:
                out.append((t, bool(v)))
                last = v
        return out


def _onground_from_frame(frame: str, bds: str | None) -> bool | None:
    try:
        b0 = int(frame[:2], 16)
    except ValueError:  # not hex: no status from this frame
        return None
    df = b0 >> 3
    if df in (4, 5, 20, 21):
        fs = b0 & 7
        return True if fs in (1, 3) else False if fs in (0, 2) else None
    if df == 17:
        if bds == "06":
            return True
        ca = b0 & 7
        return True if ca == 4 else False if ca == 5 else None
    return None


_RS1090_FIELDS = ("altitude", "groundspeed", "track", "latitude", "longitude", "IAS", "TAS",
                  "heading", "vertical_rate", "callsign")


def _fields_found(rows: list[dict[str, Any]]) -> str:
    keys: dict[str, None] = {}
    for r in rows[:200]:
        keys.update(dict.fromkeys(r))
    return ", ".join(list(keys)[:12]) or "none"


def _load_rs1090(rows: Iterable[Any], name: str) -> Trajectory:
    """Mode-S frame rows (dicts with ``timestamp`` epoch s and ``frame`` hex) into a Trajectory."""
    series: dict[str, Series] = {}

    def add(key: str, t: float, v: Any) -> None:
        s = series.get(key)
        if s is None:
            s = series[key] = Series(mode="hold", angle=key in _ANGLES)
        s.t.append(t)
        s.v.append(v)

    # rows that are not objects with a numeric timestamp carry nothing usable
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("timestamp"), (int, float))
            and not isinstance(r.get("timestamp"), bool) and 0 <= r["timestamp"] < MAX_EPOCH_S]
    rows.sort(key=lambda r: r.get("timestamp", 0.0))
    for r in rows:
        t = r.get("timestamp")
        frame = r.get("frame")
        if not isinstance(t, (int, float)) or not isinstance(frame, str) or len(frame) < 2:
            continue
        for key in _RS1090_FIELDS:
            v = r.get(key)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                add(key, float(t), v.strip() if isinstance(v, str) else v)
        og = _onground_from_frame(frame, r.get("bds"))
        if og is not None:
            add("onground", float(t), og)
    if not series.get("onground") or not series.get("altitude"):
        missing = " and ".join(k for k in ("onground", "altitude") if not series.get(k))
        raise RecordingError(
            f"{name}: Mode-S frames without {missing}: expected frames whose first byte gives "
            f"the air/ground status (DF 4/5/17/20/21) and an altitude field; found "
            f"{len(rows)} rows with fields {_fields_found(rows)}")
    og_series = series["onground"]
    og_series.max_gap_s = math.inf  # the aircraft stays where it was last seen
    return Trajectory(series, rows[0]["timestamp"], rows[-1]["timestamp"], name)


def _timestamp(r: dict[str, Any]) -> float | None:
    try:
        return float(r["timestamp"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def _load_samples(records: list[dict[str, Any]], name: str) -> Trajectory:
    series: dict[str, Series] = {}
    records = [r for r in records if isinstance(r, dict) and _timestamp(r) is not None]
    if not records:
        raise RecordingError(f"{name}: empty list (no record with a timestamp)")
    ts0 = records[0].get("timestamp")
    scale = 1e-3 if isinstance(ts0, (int, float)) and ts0 > 1e11 else 1.0

    def add(key: str, t: float, v: Any, mode: str) -> None:
        s = series.get(key)
        if s is None:
            s = series[key] = Series(mode=mode, max_gap_s=120.0, angle=key in _ANGLES)
        if s.t and t <= s.t[-1]:
            return
        s.t.append(t)
        s.v.append(v)

    for r in sorted(records, key=lambda r: float(r["timestamp"])):
        try:
            t = float(r["timestamp"]) * scale
        except (KeyError, TypeError, ValueError):
            continue
        alt = r.get("altitude")
        og = r.get("onground")
        if isinstance(alt, str) and alt.lower() == "ground":
            og, alt = True, 0.0
        if og is None and isinstance(alt, (int, float)):
            og = alt <= 0
        if isinstance(alt, (int, float)) and not math.isnan(alt):
            add("altitude", t, float(alt), "linear")
        if og is not None:
            add("onground", t, bool(og), "hold")
        for key, out in (("groundspeed", "groundspeed"), ("track", "track"),
                         ("latitude", "latitude"), ("longitude", "longitude"),
                         ("vertical_rate", "vertical_rate"), ("IAS", "IAS"), ("TAS", "TAS"),
                         ("heading", "heading")):
            v = r.get(key)
            if isinstance(v, (int, float)) and not math.isnan(v):
                add(out, t, float(v), "linear")
        cs = r.get("callsign")
        if isinstance(cs, str) and cs.strip():
            add("callsign", t, cs.strip(), "hold")
    if "onground" not in series or "altitude" not in series:
        raise RecordingError(
            f"{name}: no altitude/on-ground records: expected numeric timestamp and altitude "
            f"(ft; 0 or \"ground\" on the ground) or onground fields; found "
            f"{len(records)} records with fields {_fields_found(records)}")
    series["onground"].max_gap_s = math.inf
    if "callsign" in series:
        series["callsign"].max_gap_s = math.inf
    # The sampled format has no airspeed: the card's air data computer would still send one, so
    # approximate CAS from ground speed when airborne (documented approximation).
    if "IAS" not in series and "groundspeed" in series:
        gs = series["groundspeed"]
        series["IAS"] = Series(list(gs.t), list(gs.v), "linear", 120.0)
    t_all = series["altitude"].t
    return Trajectory(series, t_all[0], t_all[-1], name)


def load(path: str | os.PathLike[str]) -> Trajectory:
    """Load a recording in any layout of :mod:`firmware_bridge.layouts`, gzipped or not.

    Raises RecordingError for an unreadable or empty recording, with what was expected and what
    was found; OSError if the file is missing.
    """
    p = Path(path)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise RecordingError(f"{p.name}: corrupt gzip: {e}") from e
    try:
        layout, rows = read_rows(raw)
    except LayoutError as e:
        raise RecordingError(f"{p.name}: {e}") from e
    if any(isinstance(r, dict) and "frame" in r for r in rows[:50]):
        return _load_rs1090(rows, p.name)
    if not rows:
        raise RecordingError(f"{p.name}: {layout} with no record with a timestamp (expected "
                             f"timestamp, altitude or onground, position, speeds)")
    return _load_samples(rows, p.name)


def fetch_default_flight(cache_dir: str | os.PathLike[str]) -> Path:
    """Return the path of the default AFR34ZG recording, downloading it once if needed.

    The recording ships in the ``traffic`` 2.13 wheel; the wheel is downloaded with pip (no
    dependencies, not installed) into a temporary folder and only the one file is kept in
    ``cache_dir``. Raises RuntimeError if pip cannot fetch the wheel.
    """
    cache = Path(cache_dir)
    target = cache / DEFAULT_FLIGHT
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", "-d", tmp, "traffic==2.13"]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("traffic-2.13-*.whl"))
        if res.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download traffic==2.13: {res.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as z:
            data = z.read(_WHEEL_MEMBER)
    part = target.with_suffix(".part")
    part.write_bytes(data)
    os.replace(part, target)
    return target
