"""The outbox's disk budget and its drop order.

**Stated drop order.** When the outbox's size (see :mod:`appliance.sync.queue` for how a row is
measured) exceeds ``budget_bytes``, rows are deleted unsent until it is at most
``low_water x budget_bytes``: the lowest-priority streams first (highest priority number in
``STREAM_PRIORITY``: logs, then health, then the flight summaries, ...), and within one priority
the oldest rows first (across the streams of that priority). Streams in ``never_drop`` (by
default orders, usage, events, audit) are never dropped, even if the budget then stays exceeded (the
status shows it). Rows in the batch in flight (``protected``: seq at or below the given number
per stream) are not dropped: they are already on their way.

**Every drop is counted and reported.** In the same transaction as the delete, the stream's
``sync_stream`` counters grow (records, bytes, time) and the dropped sequence range is kept in
``sync_drop`` until the receiver acknowledges it: each batch declares the ranges, the receiver
records them as gaps and moves its watermark over them. :func:`enforce_budget` also returns one
:class:`~appliance.sync.events.RecordsDropped` per stream and range.

If the receiver had in fact received a dropped record (its answer was lost before a restart), the
ground keeps the record and ignores that part of the range; the aircraft's counter then counts it
as dropped all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from ..store.models import outbox
from .events import RecordsDropped
from .queue import ensure_stream_row, row_bytes
from .tables import sync_drop, sync_stream

__all__ = ["BudgetPolicy", "drop_groups", "enforce_budget"]


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """The budget (bytes), the level to drop down to (fraction), streams never dropped."""

    budget_bytes: int
    low_water: float = 0.9
    never_drop: frozenset[str] = frozenset({"orders", "usage", "events", "audit"})


def drop_groups(priorities: Mapping[str, int], never_drop: frozenset[str]) -> list[list[str]]:
    """Streams grouped by priority, in drop order (lowest priority first); ``never_drop`` left out.

    >>> drop_groups({"orders": 0, "logs": 5, "health": 4, "flight_track": 3, "flight_health": 3},
    ...             frozenset({"orders"}))
    [['logs'], ['health'], ['flight_health', 'flight_track']]
    """
    ranked = sorted((p, s) for s, p in priorities.items() if s not in never_drop)
    ranked.sort(key=lambda ps: -ps[0])
    return [sorted(s for _, s in grp) for _, grp in groupby(ranked, key=lambda ps: ps[0])]


def _record_range(conn: Connection, stream: str, lo: int, hi: int, n: int, nbytes: int,
                  now: float) -> None:
    """Keep the dropped range (merged with an adjacent unreported one) and count it."""
    ensure_stream_row(conn, stream)
    prev = conn.execute(select(sync_drop.c.id).where(sync_drop.c.stream == stream,
                                                     sync_drop.c.seq_hi == lo - 1)).scalar()
    if prev is not None:
        conn.execute(update(sync_drop).where(sync_drop.c.id == prev).values(
            seq_hi=hi, records=sync_drop.c.records + n, bytes=sync_drop.c.bytes + nbytes,
            dropped_at=now))
    else:
        conn.execute(insert(sync_drop).values(stream=stream, seq_lo=lo, seq_hi=hi, records=n,
                                              bytes=nbytes, dropped_at=now))
    conn.execute(update(sync_stream).where(sync_stream.c.stream == stream).values(
        dropped_records=sync_stream.c.dropped_records + n,
        dropped_bytes=sync_stream.c.dropped_bytes + nbytes, last_drop_at=now))


def enforce_budget(conn: Connection, policy: BudgetPolicy, protected: Mapping[str, int],
                   now: float) -> list[RecordsDropped]:
    """Writer function: drop rows in the stated order until the outbox fits; returns the drops.

    ``protected``: per stream, rows with ``seq`` at or below this are not dropped (the batch in
    flight, or the last acknowledged watermark). Returns an empty list when within budget.
    """
    total = int(conn.execute(select(func.coalesce(func.sum(row_bytes()), 0))).scalar_one())
    if total <= policy.budget_bytes:
        return []
    excess = total - int(policy.budget_bytes * policy.low_water)
    priorities = {str(s): int(p) for s, p in conn.execute(
        select(outbox.c.stream, func.min(outbox.c.priority)).group_by(outbox.c.stream))}
    events: list[RecordsDropped] = []
    for group in drop_groups(priorities, policy.never_drop):
        if excess <= 0:
            break
        above = or_(*(and_(outbox.c.stream == s, outbox.c.seq > protected.get(s, 0))
                      for s in group))
        taken: dict[str, list[tuple[int, int]]] = {}
        last_id = 0
        while excess > 0:
            rows = conn.execute(select(outbox.c.id, outbox.c.stream, outbox.c.seq,
                                       row_bytes().label("b"))
                                .where(above, outbox.c.id > last_id).order_by(outbox.c.id)
                                .limit(5000)).all()
            if not rows:
                break
            for row in rows:
                taken.setdefault(str(row.stream), []).append((int(row.seq), int(row.b)))
                excess -= int(row.b)
                last_id = int(row.id)
                if excess <= 0:
                    break
        for stream, items in taken.items():
            lo, hi = items[0][0], items[-1][0]
            nbytes = sum(b for _, b in items)
            conn.execute(delete(outbox).where(outbox.c.stream == stream, outbox.c.seq >= lo,
                                              outbox.c.seq <= hi))
            _record_range(conn, stream, lo, hi, len(items), nbytes, now)
            events.append(RecordsDropped(stream, lo, hi, len(items), nbytes, now))
    return events
