"""Live flight info for passengers, pushed as Server-Sent Events, and the PA-active signal.

:class:`FlightInfo` keeps the open event streams (one bounded queue each: a slow phone loses its
oldest events, never stalls the others) and pushes to all of them:

- ``flight`` every ``period_s`` (wall clock): position (deg), altitude (ft), ground speed (kt),
  track (deg), phase, distance to go (NM), and when the destination is known and the aircraft
  flies: time to destination (``time_to_go_s``), ETA (UTC ISO) and the arrival in the
  destination's local time (``eta_local``, ISO with its UTC offset; the IANA zone is
  ``destination.tz``); ``track``: which flown track the map shows and its point count
  (``{"id", "n"}``, see :mod:`appliance.web.passenger.track`);
- ``pa`` at once when the ``pa_active`` discrete changes (``{"active": bool}``): players pause;
- ``mode`` at once when the mode changes (``{"mode", "services"}``): the portal re-reads the catalog.

It reads the chain on the event loop (a sampler and a listener of the chain), never from a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...avionics.chain import AvionicsChain
from ...avionics.stages import Edge
from ...modes.bus import Unsubscribe
from ...modes.events import Event, ModeChanged
from ...modes.policy import PolicyTable
from ..views import flight_view

if TYPE_CHECKING:
    from .track import PassengerTrack

__all__ = ["Airport", "FlightInfo", "airport", "great_circle_nm", "local_time", "sse"]

log = logging.getLogger(__name__)
EARTH_NM = 3440.065


@dataclass(frozen=True, slots=True)
class Airport:
    """An airport: ICAO and IATA codes, name, latitude and longitude (deg), IANA time zone."""

    icao: str
    iata: str
    name: str
    lat: float
    lon: float
    tz: str | None = None


def airport(code: str | None) -> Airport | None:
    """The airport with ICAO or IATA ``code`` from ``airports.toml``, or None if unknown/None."""
    if not code:
        return None
    table = tomllib.loads(resources.files(__package__).joinpath("airports.toml").read_text())
    for icao, (iata, name, lat, lon, *rest) in table.items():
        if code.upper() in (icao, iata):
            return Airport(icao, iata, name, float(lat), float(lon), rest[0] if rest else None)
    return None


def great_circle_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in nautical miles between two points (deg)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_NM * math.asin(min(1.0, math.sqrt(a)))


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event frame."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FlightInfo:
    """The passengers' live flight info and its event streams."""

    def __init__(self, chain: AvionicsChain, policy: PolicyTable, origin: Airport | None = None,
                 destination: Airport | None = None, period_s: float = 1.0,
                 queue_size: int = 16, track: PassengerTrack | None = None) -> None:
        """Push ``flight`` every ``period_s`` seconds; each stream buffers ``queue_size`` events.

        ``track``: the flown track the map draws (its id and size go in every ``flight`` event).
        """
        self.track = track
        self.chain = chain
        self.policy = policy
        self.origin = origin
        self.destination = destination
        self.period_s = period_s
        self.queue_size = queue_size
        self.streams: set[asyncio.Queue[bytes]] = set()
        self.pa = False
        self._pa_edge = Edge(False)  #: the PA-active discrete's edges, on the chain's ticks
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Unsubscribe] = []

    def snapshot(self) -> dict[str, Any]:
        """The ``flight`` event's data (see the module docstring); None values where not valid."""
        v = flight_view(self.chain)
        pos = v["position"]
        lat, lon = pos["latitude"], pos["longitude"]
        gs = v["ground_speed"]["value"]
        out: dict[str, Any] = {
            "mode": v["mode"], "phase": v["phase"], "utc": v["utc"]["value"],
            "services": "open" if self.policy[self.chain.mode].passenger_services else "closed",
            "latitude": lat, "longitude": lon, "altitude_ft": v["altitude"]["value"],
            "ground_speed_kt": gs, "track_deg": v["track"]["value"],
            "flight_number": v["flight_number"]["value"], "pa_active": self.pa,
            "distance_nm": None, "eta": None, "time_to_go_s": None, "eta_local": None,
            "origin": _ap(self.origin), "destination": _ap(self.destination),
            "track": None if self.track is None else self.track.summary()}
        d = self.destination
        if d is not None and isinstance(lat, float) and isinstance(lon, float):
            dist = great_circle_nm(lat, lon, d.lat, d.lon)
            out["distance_nm"] = round(dist, 1)
            if isinstance(gs, float) and gs > 50.0 and self.chain.mode == "FLIGHT":
                utc, _ = self.chain.utc()
                to_go = dist / gs * 3600.0
                out["time_to_go_s"] = round(to_go)
                out["eta"] = dt.datetime.fromtimestamp(utc + to_go, dt.UTC).isoformat(
                    timespec="minutes")
                out["eta_local"] = local_time(utc + to_go, d.tz)
        return out

    def push(self, event: str, data: dict[str, Any]) -> None:
        """Send one event to every open stream (dropping a stream's oldest event if it is full)."""
        frame = sse(event, data)
        for q in self.streams:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                    self.dropped += 1
            q.put_nowait(frame)

    def open_stream(self) -> asyncio.Queue[bytes]:
        """A new stream, primed with the current flight info and PA state."""
        q: asyncio.Queue[bytes] = asyncio.Queue(self.queue_size)
        q.put_nowait(sse("flight", self.snapshot()))
        q.put_nowait(sse("pa", {"active": self.pa}))
        self.streams.add(q)
        return q

    def close_stream(self, q: asyncio.Queue[bytes]) -> None:
        """Forget a stream (its client went away)."""
        self.streams.discard(q)

    def _on_sample(self, t: float) -> None:
        for pa in self._pa_edge.push(self.chain.store.value("pa_active", t)):  # card time
            self.pa = pa
            log.info("PA %s", "active: pausing players" if pa else "ended")
            self.push("pa", {"active": pa})

    def _on_event(self, ev: Event) -> None:
        if isinstance(ev, ModeChanged):
            mode = self.chain.mode
            self.push("mode", {"mode": str(mode), "services": "open" if self.policy[mode]
                               .passenger_services else "closed"})

    async def start(self) -> None:
        """Hook into the chain and start the periodic push."""
        if not self._unsubscribe:
            self._unsubscribe = [self.chain.on_tick(self._on_sample),
                                 self.chain.subscribe(self._on_event)]
        self._task = asyncio.create_task(self._run(), name="flight-info")

    async def stop(self) -> None:
        """Stop pushing and unhook from the chain (and the track's own sampler, if any)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe = []
        if self.track is not None:
            self.track.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            if self.streams:
                try:
                    self.push("flight", self.snapshot())
                except Exception:  # supervisor boundary: a bad value must not end the pushes
                    log.exception("flight info snapshot failed")


def local_time(epoch: float, tz: str | None) -> str | None:
    """``epoch`` (s) as an ISO time with the UTC offset of the IANA zone ``tz`` (None: unknown)."""
    if not tz:
        return None
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone %r", tz)
        return None
    return dt.datetime.fromtimestamp(epoch, zone).isoformat(timespec="minutes")


def _ap(a: Airport | None) -> dict[str, Any] | None:
    return None if a is None else {"icao": a.icao, "iata": a.iata, "name": a.name, "lat": a.lat,
                                   "lon": a.lon, "tz": a.tz}
