"""The flown track for the passengers' moving map, from the flight's track summary.

:class:`PassengerTrack` reads the summaries agent (:class:`~appliance.avionics.summaries.
FlightSummaries`: the sync's when it runs, else one of its own on the same chain, sampled the same
way on card time): every point of the flight in progress from its first fix, whenever the page was
opened; after landing, the finished flight's track while the aircraft is still at its end. The kept
track is dropped as soon as the next departure begins (phase ``taxi_out`` or ``takeoff`` with no
flight on, or the aircraft more than ``away_nm`` from the track's last point while on the ground:
a recording that loops back to its origin), so an old track is never joined to a new one.

``track_router(track, limiter)``: ``GET /api/v1/flight/track`` returns
``{"id": flight id or null, "n": points in all, "since": N, "fields": ["lat", "lon", "alt_ft"],
"points": [[lat (deg, 4 decimals), lon, alt_ft or null], ...]}`` (``?since=N``: only the points
from index N on, for a page that has the first N of the same ``id``); ETag on ``id`` and ``n``
(304 on a match). 429 with Retry-After past the client's request budget.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from ...avionics.chain import AvionicsChain
from ...avionics.summaries import FlightSummaries, SummaryConfig, SummarySampler, TrackPoint
from ...content.fairness import RateLimiter
from ...modes.phase import Phase
from .flightinfo import great_circle_nm

__all__ = ["PassengerTrack", "track_router"]

#: Phases that begin a new flight: a kept track of the last flight is no longer shown.
DEPARTING = frozenset({Phase.TAXI_OUT, Phase.TAKEOFF})


class PassengerTrack:
    """The track the moving map draws (see the module doc)."""

    def __init__(self, chain: AvionicsChain, agent: FlightSummaries | None = None,
                 config: SummaryConfig | None = None, away_nm: float = 20.0) -> None:
        """Read ``agent``; None: sample ``chain`` with an agent of its own (``config``)."""
        self.chain = chain
        self.away_nm = away_nm
        self._sampler: SummarySampler | None = None
        if agent is None:
            agent = FlightSummaries("map", config or SummaryConfig())
            self._sampler = SummarySampler(chain, agent, lambda _stream, _payload: None)
        self.agent = agent

    def close(self) -> None:
        """Stop the own sampler, if any."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def current(self) -> tuple[str | None, list[TrackPoint]]:
        """The flight id and its points (the list is the agent's own: do not change it)."""
        a = self.agent
        points = a.flight_points
        if a.flight_id is not None or not points:
            return a.track_flight_id, points
        if self.chain.phase.phase in DEPARTING:
            return None, []
        good = self.chain.position.last_good
        if good is not None:
            last = points[-1]
            if great_circle_nm(good.lat, good.lon, last.lat, last.lon) > self.away_nm:
                return None, []
        return a.track_flight_id, points

    def summary(self) -> dict[str, Any]:
        """``{"id", "n"}``: which track and how many points (for the live ``flight`` event)."""
        fid, points = self.current()
        return {"id": fid, "n": len(points)}

    def document(self, since: int = 0) -> dict[str, Any]:
        """The route's JSON (see the module doc)."""
        fid, points = self.current()
        since = min(max(0, since), len(points))
        return {"id": fid, "n": len(points), "since": since, "fields": ["lat", "lon", "alt_ft"],
                "points": [[round(p.lat, 4), round(p.lon, 4),
                            None if p.alt_ft is None or not math.isfinite(p.alt_ft)
                            else round(p.alt_ft)] for p in points[since:]]}


def track_router(track: PassengerTrack, limiter: RateLimiter | None = None) -> APIRouter:
    """``GET /api/v1/flight/track`` over ``track`` (see the module doc)."""

    async def budget(request: Request) -> None:
        if limiter is None:
            return
        wait = limiter.allow(request.client.host if request.client else "unknown")
        if wait > 0:
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many requests",
                                headers={"Retry-After": str(max(1, math.ceil(wait)))})

    router = APIRouter(dependencies=[Depends(budget)])

    @router.get("/api/v1/flight/track")
    async def flight_track(request: Request,
                           since: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
        """The flown track of this flight from its first fix (see the module doc)."""
        doc = track.document(since)
        tag = hashlib.sha256(f"{doc['id']}:{doc['n']}:{doc['since']}".encode()).hexdigest()[:20]
        headers = {"ETag": f'"{tag}"', "Cache-Control": "no-cache"}
        inm = request.headers.get("if-none-match")
        if inm is not None and f'"{tag}"' in [t.strip().removeprefix("W/") for t in inm.split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json",
                        headers=headers)

    return router
