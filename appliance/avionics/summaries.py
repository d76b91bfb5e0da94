"""Summaries agents: the flight track, downsampled, and a per-flight health summary.

Both are agents over the live parameter stream, as small pure parts tested with plain lists:

- :class:`TrackDownsampler`: samples in, track points out: the first fix, then one point per
  ``period_s`` (30 s) of card time, plus a point whenever the track angle turned by
  ``turn_deg`` (15 deg) or more since the last point (so turns keep their shape).
- :class:`FlightHealth`: samples in, one summary out at the end of the flight: per parameter how
  many samples were valid and why the others were not, extremes of altitude and speeds, the
  flight's duration and phases.
- :class:`FlightSummaries`: mode changes and samples in, outbox records out: ``flight_track``
  records of ``points_per_record`` points (and the rest at landing, ``final: true``) and one
  ``flight_health`` record per flight. A flight interrupted by a restart gets a summary for each
  part (``resumed: true`` on the second); stopping flushes what is pending (``final: false``).
  It also keeps the whole track of the flight in progress (or of the last one, until the next
  starts): :attr:`FlightSummaries.flight_points`, what the passengers' moving map draws.

:class:`SummarySampler` is the summaries stage of the chain: it feeds a :class:`FlightSummaries`
a sample every ``sample_period_s`` of *card* time, on the chain's evaluation ticks, so the live
service and ``appliance replay`` give the same records for the same flight.
:class:`SummaryAgents` is the live service's: the sampler, its records queued in the outbox
through the single writer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..modes.events import Event, ModeChanged
from ..modes.policy import Mode
from ..store.outbox import enqueue
from ..store.writer import Writer
from .chain import AvionicsChain
from .params import Parameter

__all__ = ["FlightHealth", "FlightSummaries", "Record", "Sample", "SummariesStatus", "SummaryAgents",
           "SummaryConfig", "SummarySampler", "TrackDownsampler", "TrackPoint", "chain_source_counts",
           "downsample"]


class SummariesStatus(TypedDict):
    """The summaries agents: the flight in progress and what they queued."""

    flight_id: str | None
    segment: int
    points_pending: int
    records_queued: int

log = logging.getLogger(__name__)

TRACK_PARAMS = ("latitude", "longitude", "pressure_altitude", "ground_speed", "track_angle_true")
HEALTH_PARAMS = ("pressure_altitude", "computed_airspeed", "true_airspeed", "altitude_rate",
                 "ground_speed", "latitude", "longitude", "track_angle_true", "true_heading",
                 "utc_time")


@dataclass(frozen=True, slots=True)
class Sample:
    """The chain's latest values at card time ``t`` (s); ``params`` by name (staleness applied)."""

    t: float
    utc: float  #: epoch s
    params: dict[str, Parameter] = field(default_factory=dict)

    def value(self, name: str) -> float | None:
        """The value of ``name`` if present, valid and numeric, else None."""
        p = self.params.get(name)
        if p is None or not p.valid or isinstance(p.value, (str, bool)):
            return None
        return float(p.value)


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """One point of the track: UTC (epoch s), position (deg), altitude (ft), speed (kt), track (deg)."""

    utc: float
    lat: float
    lon: float
    alt_ft: float | None
    gs_kt: float | None
    track_deg: float | None

    def as_list(self) -> list[Any]:
        """Compact form for the payload: [utc, lat, lon, alt_ft, gs_kt, track_deg]."""
        return [round(self.utc, 1), round(self.lat, 5), round(self.lon, 5),
                None if self.alt_ft is None else round(self.alt_ft),
                None if self.gs_kt is None else round(self.gs_kt, 1),
                None if self.track_deg is None else round(self.track_deg, 1)]


def _turn(a: float, b: float) -> float:
    return abs((b - a + 180.0) % 360.0 - 180.0)


class TrackDownsampler:
    """Incremental downsampling (see the module doc); :meth:`push` returns a point or None."""

    def __init__(self, period_s: float = 30.0, turn_deg: float = 15.0) -> None:
        """One point per ``period_s`` of card time, and on turns of ``turn_deg`` or more."""
        self.period_s = period_s
        self.turn_deg = turn_deg
        self._last_t: float | None = None
        self._last_track: float | None = None

    def push(self, s: Sample) -> TrackPoint | None:
        """Take one sample; a point if it is kept. Samples without a valid position are skipped."""
        lat, lon = s.value("latitude"), s.value("longitude")
        if lat is None or lon is None:
            return None
        track = s.value("track_angle_true")
        keep = (self._last_t is None or s.t - self._last_t >= self.period_s
                or (track is not None and self._last_track is not None
                    and _turn(self._last_track, track) >= self.turn_deg))
        if not keep:
            return None
        self._last_t, self._last_track = s.t, track
        return TrackPoint(s.utc, lat, lon, s.value("pressure_altitude"), s.value("ground_speed"),
                          track)


def downsample(samples: Iterable[Sample], period_s: float = 30.0, turn_deg: float = 15.0,
               ) -> list[TrackPoint]:
    """The points :class:`TrackDownsampler` keeps of ``samples``."""
    agent = TrackDownsampler(period_s, turn_deg)
    return [p for s in samples if (p := agent.push(s)) is not None]


@dataclass(slots=True)
class _ParamCount:
    samples: int = 0
    valid: int = 0
    not_valid: dict[str, int] = field(default_factory=dict)


class FlightHealth:
    """Per-flight health: validity counts per parameter and extremes; :meth:`summary` at the end."""

    def __init__(self, params: Iterable[str] = HEALTH_PARAMS) -> None:
        """Watch ``params``."""
        self.params = tuple(params)
        self.counts = {p: _ParamCount() for p in self.params}
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.first_utc: float | None = None
        self.last_utc: float | None = None
        self.max: dict[str, float] = {}
        self.phases: list[str] = []

    def push(self, s: Sample, phase: str | None = None) -> None:
        """Take one sample (and the flight phase at that moment)."""
        if self.first_t is None:
            self.first_t, self.first_utc = s.t, s.utc
        self.last_t, self.last_utc = s.t, s.utc
        for name in self.params:
            c = self.counts[name]
            c.samples += 1
            p = s.params.get(name)
            if p is not None and p.valid:
                c.valid += 1
            else:
                why = "missing" if p is None else str(p.validity)
                c.not_valid[why] = c.not_valid.get(why, 0) + 1
        for name in ("pressure_altitude", "ground_speed", "computed_airspeed"):
            v = s.value(name)
            if v is not None and math.isfinite(v) and v > self.max.get(name, -math.inf):
                self.max[name] = v
        if phase and (not self.phases or self.phases[-1] != phase):
            self.phases.append(phase)

    def summary(self) -> dict[str, Any]:
        """The summary: duration (s), per-parameter validity (ratio and counts), maxima, phases."""
        dur = (self.last_t - self.first_t) if self.first_t is not None and self.last_t else 0.0
        return {
            "samples": max((c.samples for c in self.counts.values()), default=0),
            "duration_s": round(dur, 1), "first_utc": self.first_utc, "last_utc": self.last_utc,
            "parameters": {n: {"valid_ratio": round(c.valid / c.samples, 4) if c.samples else None,
                               "samples": c.samples, "not_valid": dict(c.not_valid)}
                           for n, c in self.counts.items()},
            "max": {k: round(v, 1) for k, v in self.max.items()},
            "phases": list(self.phases),
        }


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


#: One record for the ground: (outbox stream, payload).
Record = tuple[str, dict[str, Any]]
#: Per source (decoder name): counter name -> count; see :meth:`FlightSummaries.start_flight`.
SourceCounts = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class SummaryConfig:
    """Sampling and downsampling of the summaries (the ``sync`` settings' defaults).

    ``sample_period_s``: card seconds between samples; ``period_s`` and ``turn_deg``: the track's
    downsampling (:class:`TrackDownsampler`); ``points_per_record``: track points per record.
    """

    sample_period_s: float = 1.0
    period_s: float = 30.0
    turn_deg: float = 15.0
    points_per_record: int = 20


class FlightSummaries:
    """The summaries agent, pure: mode changes and samples in, outbox records out.

    :meth:`on_mode` (a ModeChanged into FLIGHT starts a flight, out of FLIGHT ends it),
    :meth:`push` (one sample, with the phase and mode at that moment) and :meth:`flush` (the
    service stops) each return the records to queue, in order: ``flight_track`` records of
    ``points_per_record`` points (the rest at landing, ``final: true``), one ``flight_health``
    per flight. ``source_counts`` gives the bus sources' counters; the health record carries
    their increase over the flight.
    """

    def __init__(self, aircraft_id: str, config: SummaryConfig = SummaryConfig(),
                 source_counts: Callable[[], SourceCounts] = dict) -> None:
        """No flight until a mode change into FLIGHT (or a sample taken in FLIGHT: resumed)."""
        self.aircraft_id = aircraft_id
        self.config = config
        self.source_counts = source_counts
        self.flight_id: str | None = None
        self.segment = 0
        self.points: list[TrackPoint] = []
        #: Every point of the flight in progress, or of the last flight until the next one starts
        #: (the same points as its ``flight_track`` records); :attr:`track_flight_id` is its id.
        self.flight_points: list[TrackPoint] = []
        self.track_flight_id: str | None = None
        self.track: TrackDownsampler | None = None
        self.health: FlightHealth | None = None
        self.resumed = False
        self._baseline: SourceCounts = {}

    def start_flight(self, utc: float, resumed: bool = False) -> None:
        """Begin a flight at ``utc`` (epoch s): fresh agents, a new flight id."""
        c = self.config
        self.flight_id = f"{self.aircraft_id}-{_iso(utc)}"
        self.segment = 0
        self.points = []
        self.flight_points = []
        self.track_flight_id = self.flight_id
        self.track = TrackDownsampler(c.period_s, c.turn_deg)
        self.health = FlightHealth()
        self.resumed = resumed
        self._baseline = self.source_counts()

    def on_mode(self, ev: ModeChanged) -> list[Record]:
        """A mode change: into FLIGHT starts a flight, out of FLIGHT ends it (its records)."""
        if ev.current == Mode.FLIGHT and self.flight_id is None:
            self.start_flight(ev.utc)
        elif ev.previous == Mode.FLIGHT and ev.current != Mode.FLIGHT and self.flight_id:
            return self._finish(final=True)
        return []

    def push(self, sample: Sample, phase: str | None, mode: Mode) -> list[Record]:
        """Take one sample (and the phase and mode then); returns a track record when one fills.

        A sample in FLIGHT with no flight started (the service restarted mid-flight) starts one
        (``resumed: true``).
        """
        if self.flight_id is None and mode is Mode.FLIGHT:
            self.start_flight(sample.utc, resumed=True)
        if self.track is None or self.health is None:
            return []
        self.health.push(sample, phase)
        point = self.track.push(sample)
        if point is None:
            return []
        self.points.append(point)
        self.flight_points.append(point)
        if len(self.points) >= self.config.points_per_record:
            return self._track_record(final=False)
        return []

    def flush(self) -> list[Record]:
        """The records of a flight in progress (``final: false``): the service is stopping."""
        return self._finish(final=False) if self.flight_id is not None else []

    def _track_record(self, final: bool) -> list[Record]:
        if not self.points and not final:
            return []
        self.segment += 1
        rec = ("flight_track", {
            "kind": "track", "flight_id": self.flight_id, "segment": self.segment,
            "final": final, "period_s": self.config.period_s,
            "fields": ["utc", "lat", "lon", "alt_ft", "gs_kt", "track_deg"],
            "points": [p.as_list() for p in self.points]})
        self.points = []
        return [rec]

    def _finish(self, final: bool) -> list[Record]:
        assert self.health is not None
        out = self._track_record(final=final)
        now = self.source_counts()
        sources = {n: {k: v - self._baseline.get(n, {}).get(k, 0) for k, v in c.items()}
                   for n, c in now.items()}
        out.append(("flight_health", {
            "kind": "flight_health", "flight_id": self.flight_id, "final": final,
            "resumed": self.resumed, "track_points_segments": self.segment,
            "sources": sources, **self.health.summary()}))
        self.flight_id = self.track = self.health = None
        return out


def chain_source_counts(chain: AvionicsChain) -> SourceCounts:
    """The counters the health record carries, per card decoder of ``chain``.

    ``frames``: frames the chain decoded (ARINC words, discretes, heartbeats, bad frames: counted
    one by one in card-time order, so the same at any chunking); ``bad_words``; ``crc_errors``
    and ``garbage_bytes``: byte-level, counted as the bytes are read.
    """
    return {n: {"frames": st.words + st.discrete_frames + st.heartbeats + st.bad_frames,
                "bad_words": st.bad_words, "crc_errors": st.crc_errors,
                "garbage_bytes": st.garbage_bytes}
            for n, d in chain.decoders.items() if (st := d.stats)}


class SummarySampler:
    """Drives a :class:`FlightSummaries` from a chain, on card time: the summaries stage.

    Mode changes go to :meth:`FlightSummaries.on_mode`; at the first evaluation tick of every
    ``sample_period_s`` of the card's clock (windows fixed on it, whenever the stream started) a
    :class:`Sample` of the latest values, staleness applied, goes to :meth:`FlightSummaries.push`
    while a flight is on (or the mode is FLIGHT). Records go to ``emit(stream, payload)``. The
    live service and ``appliance replay`` wire it the same way, so they queue the same records
    for the same flight.
    """

    def __init__(self, chain: AvionicsChain, agent: FlightSummaries,
                 emit: Callable[[str, dict[str, Any]], None]) -> None:
        """Subscribe to ``chain`` (events and ticks); :meth:`close` unsubscribes."""
        self.chain = chain
        self.agent = agent
        self.emit = emit
        self._window: int | None = None
        self._names = tuple(sorted(set(TRACK_PARAMS) | set(HEALTH_PARAMS)))
        self._unsubscribe = (chain.subscribe(self.on_event), chain.on_tick(self.on_tick))

    def close(self) -> None:
        """Stop listening to the chain."""
        for unsub in self._unsubscribe:
            unsub()

    def _send(self, records: list[Record]) -> None:
        for stream, payload in records:
            self.emit(stream, payload)

    def on_event(self, ev: Event) -> None:
        """Chain listener: mode changes start and end flights."""
        if isinstance(ev, ModeChanged):
            self._send(self.agent.on_mode(ev))

    def on_tick(self, t: float) -> None:
        """Take a sample at the first tick of each ``sample_period_s`` of the card's clock."""
        window = math.floor(t / self.agent.config.sample_period_s)
        if window == self._window:
            return
        self._window = window
        chain = self.chain
        if self.agent.flight_id is None and chain.mode is not Mode.FLIGHT:
            return
        store = chain.store
        params = {n: p for n in self._names if (p := store.get(n, t)) is not None}
        sample = Sample(t, chain.clock.utc(t)[0], params)
        self._send(self.agent.push(sample, str(chain.phase.phase), chain.mode))

    def flush(self) -> None:
        """Emit what a flight in progress has (``final: false``)."""
        self._send(self.agent.flush())


class SummaryAgents:
    """The live service's summaries: the sampler on the chain, records queued in the outbox.

    Records go through the single writer (:func:`~appliance.store.outbox.enqueue`); :meth:`stop`
    flushes a flight in progress and waits for the writes (bounded).
    """

    def __init__(self, chain: AvionicsChain, writer: Writer, aircraft_id: str,
                 config: SummaryConfig = SummaryConfig()) -> None:
        """Attach to the chain at once (samples on its card time) and queue into ``writer``."""
        self.writer = writer
        self.aircraft_id = aircraft_id
        self.agent = FlightSummaries(aircraft_id, config, lambda: chain_source_counts(chain))
        self.sampler = SummarySampler(chain, self.agent, self._queue)
        self.records_queued = 0
        self._pending: list[asyncio.Future[Any]] = []

    def _queue(self, stream: str, payload: dict[str, Any]) -> None:
        fut = asyncio.wrap_future(self.writer.submit(
            lambda conn: enqueue(conn, self.aircraft_id, stream, payload)))
        self._pending = [f for f in self._pending if not f.done()] + [fut]
        self.records_queued += 1

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling, flush a flight in progress (``final: false``), wait for the writes."""
        self.sampler.close()
        self.sampler.flush()
        if self._pending:
            try:
                await asyncio.wait_for(asyncio.gather(*self._pending, return_exceptions=True),
                                       timeout)
            except TimeoutError:
                log.warning("summary records not all written within %.1f s", timeout)

    def as_dict(self) -> SummariesStatus:
        """For the status."""
        a = self.agent
        return SummariesStatus(flight_id=a.flight_id, segment=a.segment,
                               points_pending=len(a.points), records_queued=self.records_queued)
