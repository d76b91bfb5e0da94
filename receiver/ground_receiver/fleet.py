"""The read side: the fleet as the database holds it, for the fleet view and the daily export.

:func:`fleet_rows` gives one entry per aircraft: last contact (its last batch), batches and
records received, backlog per stream (what the aircraft said it still had queued with its last
batch), watermark and declared gaps per stream, last BITE summary and software/content versions
(its last status), the downlink versions applied, and orders and usage totals **per flight**.
:func:`export_day` writes the CSV export of one UTC day (records received that day) of orders,
usage and summaries; :func:`export_flights` the per-flight totals of the flights that started
on one UTC day.

Flights are what the aircraft says of them (:func:`flights`): each ``flight_health`` summary
(``appliance.avionics.summaries``) names a flight (``flight_id`` =
``{aircraft}-{ISO UTC of the mode change into FLIGHT}``) and its last sample (``last_utc``); a
flight still in the air shows only in its ``flight_track`` records (the newest names it): it is
open (``end`` None) until its health summary arrives. An order or usage record belongs to the
flight whose ``[start, end]`` holds its ``created`` time (the aircraft's clock when it was
queued; an open flight holds everything after its start); records outside every flight (at the
gate, between flights) are counted as ``ground``.

Reads only, over the indexes made by ``init_db`` (``aircraft_state`` primary key,
``watermarks`` primary key, ``ix_gaps_aircraft_stream``, ``ix_records_received``, the records'
``(aircraft, stream, seq)`` key).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from .db import aircraft_state, gaps, records, watermarks
from .downlink import Downlink

__all__ = ["EXPORT_STREAMS", "Flight", "export_day", "export_flights", "fleet_rows", "flights"]

#: The export's streams: sales, media use and the in-flight summaries.
EXPORT_STREAMS = ("orders", "usage", "flight_track", "health")
TOTAL_STREAMS = ("orders", "usage")


def fleet_rows(engine: Engine) -> list[dict[str, Any]]:
    """One dict per aircraft, sorted by id (see the module doc for the fields)."""
    dl = Downlink(engine, None).status()
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for r in conn.execute(select(aircraft_state).order_by(aircraft_state.c.aircraft)):
            st = r.status or {}
            out[r.aircraft] = {"aircraft": r.aircraft, "last_contact": r.updated,
                               "batches": int(r.batches), "records": int(r.records),
                               "backlog": st.get("backlog", {}), "bite": st.get("bite", {}),
                               "software": st.get("software"), "content": st.get("content"),
                               "streams": {}, "flights": [],
                               "ground": dict.fromkeys(TOTAL_STREAMS, 0), "downlink": dl.get(r.aircraft, {})}
        for w in conn.execute(select(watermarks)):
            if w.aircraft in out:
                out[w.aircraft]["streams"][w.stream] = {"watermark": int(w.seq), "gaps": 0,
                                                        "gap_records": 0}
        for g in conn.execute(select(gaps.c.aircraft, gaps.c.stream, func.count(),
                                     func.sum(gaps.c.seq_hi - gaps.c.seq_lo + 1))
                              .group_by(gaps.c.aircraft, gaps.c.stream)):
            s = out.get(g[0], {}).get("streams", {}).setdefault(
                g[1], {"watermark": 0, "gaps": 0, "gap_records": 0})
            s["gaps"], s["gap_records"] = int(g[2]), int(g[3] or 0)
        by_ac = flights(conn)
        for ac, counted in _flight_totals(conn, by_ac).items():
            if ac in out:
                out[ac]["flights"], out[ac]["ground"] = counted
    return list(out.values())


@dataclass(frozen=True, slots=True)
class Flight:
    """One flight of an aircraft: its id, start and end (epoch s; ``end`` None: still open)."""

    aircraft: str
    flight_id: str
    start: float
    end: float | None


def _start_of(flight_id: str) -> float | None:
    """The start (epoch s) in a flight id ``{aircraft}-{YYYY-MM-DDTHH:MM:SS+00:00}``."""
    try:
        return dt.datetime.fromisoformat(flight_id[-25:]).timestamp()
    except ValueError:
        return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def flights(conn: Connection) -> dict[str, list[Flight]]:
    """Per aircraft, its flights in start order (see the module doc).

    A flight interrupted by a restart has several health summaries (parts): they are merged
    (earliest start, latest end).
    """
    closed: dict[tuple[str, str], tuple[float, float]] = {}
    for ac, p in conn.execute(select(records.c.aircraft, records.c.payload)
                              .where(records.c.stream == "flight_health")):
        fid = p.get("flight_id") if isinstance(p, dict) else None
        if not isinstance(fid, str):
            continue
        start = _start_of(fid) or _num(p.get("first_utc"))
        if start is None:
            continue
        end = _num(p.get("last_utc")) or start
        lo, hi = closed.get((ac, fid), (start, end))
        closed[(ac, fid)] = (min(lo, start), max(hi, end))
    out: dict[str, list[Flight]] = {}
    for (ac, fid), (lo, hi) in closed.items():
        out.setdefault(ac, []).append(Flight(ac, fid, lo, hi))
    newest = (select(records.c.aircraft, func.max(records.c.seq).label("seq"))
              .where(records.c.stream == "flight_track").group_by(records.c.aircraft).subquery())
    for ac, p in conn.execute(select(records.c.aircraft, records.c.payload).join(
            newest, (records.c.aircraft == newest.c.aircraft) & (records.c.seq == newest.c.seq))
            .where(records.c.stream == "flight_track")):
        fid = p.get("flight_id") if isinstance(p, dict) else None
        if isinstance(fid, str) and (ac, fid) not in closed and (start := _start_of(fid)):
            out.setdefault(ac, []).append(Flight(ac, fid, start, None))
    for fl in out.values():
        fl.sort(key=lambda f: f.start)
    return out


def _flight_totals(conn: Connection, by_ac: dict[str, list[Flight]],
                   ) -> dict[str, tuple[list[dict[str, Any]], dict[str, int]]]:
    """Per aircraft: its flights with their order and usage counts, and the ``ground`` counts."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    ground: dict[str, dict[str, int]] = {}
    starts = {ac: [f.start for f in fl] for ac, fl in by_ac.items()}
    sec = func.floor(records.c.created)  # per second: a bounded number of rows per aircraft
    for ac, stream, t, n in conn.execute(
            select(records.c.aircraft, records.c.stream, sec, func.count())
            .where(records.c.stream.in_(TOTAL_STREAMS))
            .group_by(records.c.aircraft, records.c.stream, sec)):
        fl = by_ac.get(ac, [])
        i = bisect_right(starts.get(ac, []), float(t)) - 1
        f = fl[i] if i >= 0 else None
        if f is not None and (f.end is None or float(t) <= f.end):
            c = counts.setdefault((ac, f.flight_id), dict.fromkeys(TOTAL_STREAMS, 0))
        else:
            c = ground.setdefault(ac, dict.fromkeys(TOTAL_STREAMS, 0))
        c[stream] += int(n)
    out: dict[str, tuple[list[dict[str, Any]], dict[str, int]]] = {}
    for ac in {*by_ac, *ground}:
        out[ac] = ([{"flight": f.flight_id, "start": f.start, "end": f.end,
                     **counts.get((ac, f.flight_id), dict.fromkeys(TOTAL_STREAMS, 0))}
                    for f in by_ac.get(ac, [])],
                   ground.get(ac, dict.fromkeys(TOTAL_STREAMS, 0)))
    return out


def export_flights(engine: Engine, day: dt.date) -> Iterator[str]:
    """CSV lines (header first) of the flights that started on ``day`` (UTC), with totals.

    Columns: aircraft, flight, start (ISO UTC), end (ISO UTC, empty while in flight), orders,
    usage.
    """
    lo = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["aircraft", "flight", "start", "end", "orders", "usage"])
    with engine.connect() as conn:
        totals = _flight_totals(conn, flights(conn))
    for ac in sorted(totals):
        for f in totals[ac][0]:
            if lo <= f["start"] < lo + 86400:
                w.writerow([ac, f["flight"], _iso(f["start"]),
                            "" if f["end"] is None else _iso(f["end"]), f["orders"], f["usage"]])
    yield _take(buf)


def export_day(engine: Engine, day: dt.date) -> Iterator[str]:
    """CSV lines (header first) of the records of :data:`EXPORT_STREAMS` received on ``day``.

    Columns: aircraft, stream, seq, created (ISO UTC), received (ISO UTC), payload (JSON).
    """
    lo = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["aircraft", "stream", "seq", "created", "received", "payload"])
    yield _take(buf)
    last_id = None
    with engine.connect() as conn:
        while True:  # in pages over the received index: bounded memory for a big day
            q = (select(records.c.id, records.c.aircraft, records.c.stream, records.c.seq,
                        records.c.created, records.c.received, records.c.payload)
                 .where(records.c.received >= lo, records.c.received < lo + 86400,
                        records.c.stream.in_(EXPORT_STREAMS))
                 .order_by(records.c.id).limit(5000))
            if last_id is not None:
                q = q.where(records.c.id > last_id)
            rows = conn.execute(q).all()
            if not rows:
                return
            for r in rows:
                w.writerow([r.aircraft, r.stream, r.seq, _iso(r.created), _iso(r.received),
                            json.dumps(r.payload, separators=(",", ":"), sort_keys=True)])
            last_id = rows[-1].id
            yield _take(buf)


def _take(buf: io.StringIO) -> str:
    s = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return s


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")
