"""The layouts recorded flights come in, recognised by content and turned into rows of one shape.

:func:`read_rows` takes a recording's bytes (gzip already undone) and returns ``(layout, rows)``:
``layout`` names what was recognised, ``rows`` are dicts of either kind that
:mod:`firmware_bridge.recording` reads:

- **Mode-S frames** (a ``frame`` field, hex): rs1090 JSONL, or the same frame table saved as any
  of the tabular layouts below;
- **state vectors** (``timestamp`` epoch s, ``altitude`` ft or ``"ground"``, ``groundspeed`` kt,
  ``track`` deg, ``latitude``/``longitude`` deg, ``vertical_rate`` ft/min, optional ``onground``,
  ``callsign``, ``IAS``/``TAS`` kt, ``heading`` deg): the column names of the ``traffic`` library.

Layouts (see shared/AVIONICS.md for the sources):

==========================  ================================================================
rs1090 JSONL                one JSON object per line with ``timestamp`` and ``frame``
JSON list of records        ``[{...}, ...]`` (also pandas ``orient="records"``)
pandas JSON                 ``orient="columns"`` ``{col: {index: value}}``, ``"index"``
                            ``{index: {col: value}}``, ``"split"`` ``{columns, index, data}``,
                            ``"table"`` ``{schema, data}``
readsb ``trace_full``       ``{icao, timestamp, trace: [[dt, lat, lon, alt|"ground", gs, track,
                            flags, vrate, {details}|null, source, geom_alt, geom_rate, ias,
                            roll], ...]}``; ``flags & 1``: the position is stale
Flightradar24 JSON          ``{result: {response: {data: {flight: {identification: {callsign},
                            track: [{timestamp, latitude, longitude, altitude: {feet},
                            speed: {kts}, verticalSpeed: {fpm}, heading, ems}]}}}}}``
CSV                         a header line with a ``timestamp`` column (traffic's names)
Parquet                     ``PAR1`` magic, the same columns
==========================  ================================================================

Timestamps may be epoch seconds, epoch milliseconds, ISO 8601 text or pandas datetimes; all come
out as epoch seconds (float). pandas and pyarrow are imported only when a tabular layout is read.
Raises :class:`LayoutError` (a ``ValueError``) with what was expected and what was found.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from typing import Any

__all__ = ["EXPECTED", "LayoutError", "describe", "read_rows"]

#: What a recording may be, for the messages of refused files.
EXPECTED = ("rs1090 JSONL frames, a JSON list of records, pandas JSON (records, columns, split, "
            "index or table orient), a readsb trace_full JSON, a Flightradar24 JSON, "
            "or CSV/Parquet with a timestamp column")

Rows = list[dict[str, Any]]
#: Timestamps at or after this (2100-01-01) are not times of a recorded flight.
MAX_EPOCH_S = 4102444800.0


class LayoutError(ValueError):
    """A file in none of the known layouts, or a known layout without usable rows."""


def describe(value: Any, limit: int = 8) -> str:
    """A short description of a parsed JSON value, for error messages."""
    if isinstance(value, dict):
        keys = list(value)[:limit]
        more = ", ..." if len(value) > limit else ""
        return f"a JSON object with keys {', '.join(map(repr, keys))}{more}"
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ for v in value[:50]})
        return f"a JSON list of {len(value)} items ({', '.join(kinds) or 'empty'})"
    return f"a JSON {type(value).__name__}"


def _epoch(v: Any) -> float | None:
    """Epoch seconds from epoch s/ms, ISO text or a datetime; None if not a time."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        if not math.isfinite(v):
            return None
        t = float(v) / 1000.0 if v > 1e11 else float(v)
        return t if 0.0 <= t < MAX_EPOCH_S else None
    if isinstance(v, dt.datetime):  # pandas Timestamp is a datetime
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return _epoch(float(v.timestamp()))
    if isinstance(v, str):
        text = v.strip()
        try:
            return _epoch(float(text))
        except ValueError:
            pass
        try:
            return _epoch(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _clean(v: Any) -> Any:
    """NaN/NaT/pandas NA -> None; numpy scalars -> Python values."""
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else v
    item = getattr(v, "item", None)  # numpy scalar
    if callable(item) and not isinstance(v, (str, bytes, dt.datetime)):
        try:
            return _clean(item())
        except (ValueError, TypeError):
            return None
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    return v


def _normalise(rows: Rows) -> Rows:
    """Rows with ``timestamp`` as epoch seconds; rows without a usable timestamp are left out."""
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        t = _epoch(_clean(r.get("timestamp")))
        if t is None:
            continue
        row = {k: _clean(v) for k, v in r.items()}
        row["timestamp"] = t
        out.append(row)
    return out


def _frame_rows(df: Any) -> Rows:
    """A pandas DataFrame's rows as dicts (datetime columns to epoch s, NaN to None)."""
    import pandas as pd

    df = df.copy()
    for col in df.columns:
        if pd.api.types.is_datetime64_any_dtype(df[col]):
            s = df[col]
            if getattr(s.dt, "tz", None) is None:
                s = s.dt.tz_localize("UTC")
            df[col] = (s - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    df.columns = [str(c) for c in df.columns]
    return _normalise(df.astype(object).where(df.notna(), None).to_dict("records"))


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - installed with the appliance
        raise LayoutError(f"reading this layout needs pandas and pyarrow ({e})") from e
    return pd


def _read_json_orient(text: str, orient: str) -> Rows:
    pd = _pandas()
    try:
        df = pd.read_json(io.StringIO(text), orient=orient)
    except Exception as e:  # pandas raises ValueError, TypeError, KeyError... on odd shapes
        raise LayoutError(f"pandas JSON ({orient} orient) that pandas cannot read: "
                          f"{type(e).__name__}: {e}") from e
    return _frame_rows(df)


def _readsb(doc: dict[str, Any]) -> Rows:
    base = _epoch(doc.get("timestamp"))
    trace = doc.get("trace")
    if base is None or not isinstance(trace, list):
        raise LayoutError("readsb trace_full without a numeric timestamp and a trace list")
    rows: Rows = []
    callsign = None
    for p in trace:
        if not isinstance(p, list) or len(p) < 6 or not isinstance(p[0], (int, float)):
            continue
        row: dict[str, Any] = {"timestamp": base + float(p[0])}
        alt = p[3]
        if alt == "ground":
            row["altitude"], row["onground"] = 0.0, True
        elif isinstance(alt, (int, float)):
            row["altitude"], row["onground"] = float(alt), False
        flags = p[6] if len(p) > 6 and isinstance(p[6], int) else 0
        if not flags & 1:  # bit 0: the position is stale (repeated), not a new fix
            row["latitude"], row["longitude"] = p[1], p[2]
        row["groundspeed"], row["track"] = p[4], p[5]
        if len(p) > 7:
            row["vertical_rate"] = p[7]
        details = p[8] if len(p) > 8 and isinstance(p[8], dict) else {}
        if isinstance(details.get("flight"), str) and details["flight"].strip():
            callsign = details["flight"].strip()
        for key, name in (("ias", "IAS"), ("tas", "TAS"), ("true_heading", "heading")):
            if isinstance(details.get(key), (int, float)):
                row[name] = details[key]
        if len(p) > 12 and isinstance(p[12], (int, float)):
            row["IAS"] = p[12]
        if callsign:
            row["callsign"] = callsign
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def _fr24(doc: dict[str, Any]) -> Rows:
    try:
        flight = doc["result"]["response"]["data"]["flight"]
        track = flight["track"]
    except (KeyError, TypeError):
        raise LayoutError("Flightradar24 JSON without result.response.data.flight.track") from None
    if not isinstance(track, list):
        raise LayoutError(f"Flightradar24 JSON whose track is {describe(track)}")
    ident = flight.get("identification") if isinstance(flight, dict) else None
    callsign = ident.get("callsign") if isinstance(ident, dict) else None
    rows: Rows = []
    for p in track:
        if not isinstance(p, dict):
            continue

        def sub(key: str, unit: str, p: dict[str, Any] = p) -> Any:
            v = p.get(key)
            return v.get(unit) if isinstance(v, dict) else v

        row = {"timestamp": p.get("timestamp"), "latitude": p.get("latitude"),
               "longitude": p.get("longitude"), "altitude": sub("altitude", "feet"),
               "groundspeed": sub("speed", "kts"), "vertical_rate": sub("verticalSpeed", "fpm"),
               "track": p.get("heading"), "callsign": callsign}
        ems = p.get("ems")
        if isinstance(ems, dict):
            for key, name in (("ias", "IAS"), ("tas", "TAS")):
                if isinstance(ems.get(key), (int, float)):
                    row[name] = ems[key]
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def _json_object(doc: dict[str, Any], text: str) -> tuple[str, Rows]:
    """Which layout a whole-file JSON object is in, and its rows."""
    if "trace" in doc and "timestamp" in doc:
        return "readsb trace_full", _readsb(doc)
    if "result" in doc:
        return "Flightradar24 JSON", _fr24(doc)
    if "columns" in doc and "data" in doc:
        return "pandas JSON (split)", _read_json_orient(text, "split")
    if "schema" in doc and "data" in doc:
        return "pandas JSON (table)", _read_json_orient(text, "table")
    if "frame" in doc and "timestamp" in doc:  # a one-line rs1090 JSONL file
        return "rs1090 JSONL", [doc]
    if doc and all(isinstance(v, dict) for v in doc.values()):
        if "timestamp" in doc:
            return "pandas JSON (columns)", _read_json_orient(text, "columns")
        first = next(iter(doc.values()))
        if "timestamp" in first:
            return "pandas JSON (index)", _read_json_orient(text, "index")
    raise LayoutError(f"found {describe(doc)}; expected {EXPECTED}")


def _jsonl(text: str) -> Rows:
    rows: Rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise LayoutError(f"line {ln}: not JSON ({e}); found {line[:40]!r}") from e
    return rows


def _found_text(text: str) -> str:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return f"text starting {first[:40]!r}" if first else "an empty file"


def read_rows(raw: bytes) -> tuple[str, Rows]:
    """Recognise the layout of ``raw`` (not gzipped) and return ``(layout name, rows)``.

    Rows keep their own field names; ``timestamp`` is epoch seconds (float), except in rs1090
    JSONL rows, which are returned as parsed. Raises LayoutError naming what was found.
    """
    if raw[:4] == b"PAR1":
        pd = _pandas()
        try:
            df = pd.read_parquet(io.BytesIO(raw))
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise LayoutError(f"a damaged Parquet file: {e}") from e
        return "Parquet", _frame_rows(df)
    text = raw.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise LayoutError(f"a broken JSON list ({e})") from e
        if not isinstance(doc, list):  # pragma: no cover - starts with "["
            raise LayoutError(f"found {describe(doc)}")
        return "JSON list of records", _normalise(doc)
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError as e:
            if "Extra data" not in str(e):
                raise LayoutError(f"found broken JSON ({e}); expected {EXPECTED}") from e
            return "rs1090 JSONL", _jsonl(text)
        if isinstance(doc, dict):
            return _json_object(doc, stripped)
    head = stripped.split("\n", 1)[0]
    if "," in head and "timestamp" in [c.strip().strip('"') for c in head.split(",")]:
        pd = _pandas()
        try:
            df = pd.read_csv(io.StringIO(text))
        except Exception as e:  # ParserError, ValueError, UnicodeError...
            raise LayoutError(f"a CSV file pandas cannot read: {type(e).__name__}: {e}") from e
        return "CSV", _frame_rows(df)
    raise LayoutError(f"found {_found_text(text)}; expected {EXPECTED}")
