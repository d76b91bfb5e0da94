"""Outbox rows: records for the ground, written inside the caller's transaction.

Each record gets the next sequence number of its stream and the idempotency key
``{aircraft}:{stream}:{seq}``; delivery is at-least-once and the receiver dedups on the key.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, insert, select, update

from .models import outbox, stream_seq

__all__ = ["STREAM_PRIORITY", "enqueue"]

#: Lower number = sent first (and dropped last). ``flight_track`` and ``flight_health`` are the
#: summaries agents' streams (appliance.sync.summaries), ranked with the flight summaries.
#: ``order_status``: the status changes of orders (a stream apart, so the ground's count of
#: ``orders`` records stays the count of orders).
STREAM_PRIORITY = {"orders": 0, "order_status": 0, "usage": 1, "events": 2, "audit": 2, "intake": 2,
                   "flight_summary": 3, "flight_track": 3, "flight_health": 3, "health": 4, "logs": 5}


def enqueue(conn: Connection, aircraft_id: str, stream: str, payload: dict[str, Any]) -> str:
    """Insert one record for the ground in ``conn``'s transaction; returns its idempotency key.

    Raises KeyError for a stream that has no priority.
    """
    priority = STREAM_PRIORITY[stream]
    last = conn.execute(select(stream_seq.c.last_seq).where(stream_seq.c.stream == stream)).scalar()
    seq = (last or 0) + 1
    if last is None:
        conn.execute(insert(stream_seq).values(stream=stream, last_seq=seq))
    else:
        conn.execute(update(stream_seq).where(stream_seq.c.stream == stream).values(last_seq=seq))
    key = f"{aircraft_id}:{stream}:{seq}"
    conn.execute(insert(outbox).values(stream=stream, seq=seq, idempotency_key=key,
                                       priority=priority, payload=payload, created=time.time()))
    return key
