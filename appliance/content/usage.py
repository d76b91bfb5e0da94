"""Usage journaling for royalty reporting: what each client played, and for how long.

The media paths call :meth:`UsageJournal.note` for every file they serve. A session is one client
(address) on one title; it ends after ``idle_s`` without a request. :meth:`UsageJournal.flush` writes
every ended session as one record on the ``usage`` outbox stream, durably through the single writer:
``{"content_id", "version", "title", "kind", "client", "started_utc", "ended_utc", "time_source",
"media_s", "wall_s", "bytes", "requests", "pages"}``. ``media_s`` is the seconds of media served,
counted once per segment position whichever rendition carried it (renditions are cut on the same
boundaries); ``client`` is a salted hash of the address, never the address itself.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from ..store.outbox import enqueue
from ..store.writer import Writer
from .catalog import Title

__all__ = ["Session", "UsageJournal"]

log = logging.getLogger(__name__)
_INDEX = re.compile(r"(\d+)\.[A-Za-z0-9]+$")


@dataclass(slots=True)
class Session:
    """One client on one title: first/last request (monotonic s), UTC at start, what was served."""

    title: Title
    client: str
    first: float
    last: float
    started_utc: float
    time_source: str
    bytes: int = 0
    requests: int = 0
    positions: dict[int, float] = field(default_factory=dict)
    pages: set[str] = field(default_factory=set)


class UsageJournal:
    """Open sessions in memory; ended ones go to the ``usage`` stream."""

    def __init__(self, writer: Writer, aircraft_id: str, utc: Callable[[], tuple[float, str]],
                 idle_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        """``utc()`` gives the aircraft's best UTC (epoch s) and its source."""
        self.writer = writer
        self.aircraft_id = aircraft_id
        self.utc = utc
        self.idle_s = idle_s
        self.clock = clock
        self.sessions: dict[tuple[str, str], Session] = {}
        self._salt = secrets.token_bytes(16)
        self.written = 0

    def note(self, client: str, title: Title, rel: str, nbytes: int) -> None:
        """Count a served file ``rel`` of ``title`` (``nbytes`` of body) for ``client``."""
        now = self.clock()
        key = (client, title.id)
        s = self.sessions.get(key)
        if s is None or s.title.version != title.version:
            utc, src = self.utc()
            s = self.sessions[key] = Session(title, client, now, now, utc, src)
        s.last = now
        s.bytes += nbytes
        s.requests += 1
        seconds = title.seconds.get(rel)
        if seconds is not None:
            m = _INDEX.search(rel)
            if m:
                s.positions[int(m[1])] = seconds
        elif rel.endswith((".html", ".xhtml")):
            s.pages.add(rel)

    def _record(self, s: Session) -> dict[str, Any]:
        utc, _ = self.utc()
        m = s.title.manifest
        return {"content_id": s.title.id, "version": s.title.version, "title": m.title,
                "kind": m.kind, "licence": m.licence,
                "client": hashlib.sha256(self._salt + s.client.encode()).hexdigest()[:16],
                "started_utc": s.started_utc, "ended_utc": utc - (self.clock() - s.last),
                "time_source": s.time_source, "media_s": round(sum(s.positions.values()), 3),
                "wall_s": round(s.last - s.first, 3), "bytes": s.bytes, "requests": s.requests,
                "pages": len(s.pages)}

    async def flush(self, everything: bool = False) -> int:
        """Journal the sessions idle for ``idle_s`` (all of them with ``everything``); returns how many.

        Durable on return. On a StoreError the sessions stay in memory for the next flush.
        """
        now = self.clock()
        done = [k for k, s in self.sessions.items() if everything or now - s.last >= self.idle_s]
        if not done:
            return 0
        ended = [self.sessions.pop(k) for k in done]
        records = [self._record(s) for s in ended]

        def write(conn: Connection) -> int:
            for r in records:
                enqueue(conn, self.aircraft_id, "usage", r)
            return len(records)

        try:
            n = await self.writer.run(write)
        except Exception:
            for s in ended:  # keep them for the next flush (a newer session of the key wins)
                self.sessions.setdefault((s.client, s.title.id), s)
            raise
        self.written += n
        log.info("usage: %d sessions journaled", n)
        return n
