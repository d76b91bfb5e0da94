"""The read side: the fleet as the database holds it, for the fleet view and the daily export.

:func:`fleet_rows` gives one entry per aircraft: last contact (its last batch), batches and
records received, backlog per stream (what the aircraft said it still had queued with its last
batch), watermark and declared gaps per stream, last BITE summary and software/content versions
(its last status), the downlink versions applied, and orders and usage totals per day (UTC day of
the record's creation: the wire carries no flight number yet). :func:`export_day` writes the CSV
export of one UTC day (records received that day) of orders, usage and summaries.

Reads only, over the indexes made by ``init_db`` (``aircraft_state`` primary key,
``watermarks`` primary key, ``ix_gaps_aircraft_stream``, ``ix_records_received``, the records'
``(aircraft, stream, seq)`` key).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func, select

from .db import aircraft_state, gaps, records, watermarks
from .downlink import Downlink

__all__ = ["EXPORT_STREAMS", "export_day", "fleet_rows"]

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
                               "streams": {}, "totals": {}, "downlink": dl.get(r.aircraft, {})}
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
        day = func.floor(records.c.created / 86400)
        for ac, stream, d, n in conn.execute(
                select(records.c.aircraft, records.c.stream, day, func.count())
                .where(records.c.stream.in_(TOTAL_STREAMS))
                .group_by(records.c.aircraft, records.c.stream, day)):
            if ac in out:
                key = dt.datetime.fromtimestamp(float(d) * 86400, dt.UTC).date().isoformat()
                out[ac]["totals"].setdefault(key, dict.fromkeys(TOTAL_STREAMS, 0))[stream] = int(n)
    return list(out.values())


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
