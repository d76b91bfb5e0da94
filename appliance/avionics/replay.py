"""``appliance replay``: run a recorded flight through the same chain as the live service.

The simulator turns the recording into the card's byte stream (faults applied) and the bytes go
through the frame decoder and the :class:`~appliance.avionics.chain.AvionicsChain` in memory, as fast
as the CPU allows (or paced to ``speed``). Nothing is written to the journal.

With ``summaries`` the summaries stage runs on the chain as in the live service
(:class:`~appliance.avionics.summaries.SummarySampler`, sampling on card time): the records it
would queue in the outbox are in :attr:`ReplayResult.records` (a flight in progress at the end of
the recording is flushed, as when the service stops).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import Faults, generate

from ..modes.airground import AirGroundConfig
from ..modes.events import Event
from .chain import AvionicsChain
from .summaries import FlightSummaries, Record, SummaryConfig, SummarySampler, chain_source_counts

__all__ = ["ReplayResult", "format_event", "replay", "replay_bytes"]


@dataclass
class ReplayResult:
    """Events in order, the chain at the end, and timings (s)."""

    events: list[Event]
    chain: AvionicsChain
    flight_s: float
    wall_s: float
    bytes_in: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    #: The summaries' outbox records (stream, payload), in order; empty without ``summaries``.
    records: list[Record] = field(default_factory=list)


def replay_bytes(chunks: Iterable[bytes], table: LabelTable | None = None,
                 ag_config: AirGroundConfig = AirGroundConfig(),
                 chain: AvionicsChain | None = None, summaries: SummaryConfig | None = None,
                 aircraft_id: str = "replay") -> ReplayResult:
    """Run byte chunks of the card stream through the chain; returns its events.

    ``chain``: a chain to feed (with its own subscribers already connected), else a new one.
    ``summaries``: also run the summaries stage (flight ids ``{aircraft_id}-{UTC}``).
    """
    chain = chain or AvionicsChain(table or LabelTable.default(), ag_config)
    events: list[Event] = []
    chain.subscribe(events.append)
    records: list[Record] = []
    sampler = None
    if summaries is not None:
        agent = FlightSummaries(aircraft_id, summaries, lambda: chain_source_counts(chain))
        sampler = SummarySampler(chain, agent, lambda stream, payload: records.append(
            (stream, payload)))
    decoder = FrameDecoder()
    card = chain.decoder("card").stats
    st = decoder.stats
    n = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        n += len(chunk)
        frames = decoder.feed_raw(chunk)
        # the byte-level counters the health summary reads as the serial reader keeps them:
        # per read, before its frames go on
        card.crc_errors, card.garbage_bytes = st.crc_errors, st.garbage_bytes
        chain.feed_frames(frames)
    wall = time.perf_counter() - t0
    card.bytes_in, card.frames, card.crc_errors = st.bytes_in, st.frames, st.crc_errors
    card.garbage_bytes, card.bad_length = st.garbage_bytes, st.bad_length
    if sampler is not None:
        sampler.close()
        sampler.flush()
    return ReplayResult(events, chain, chain.store.now, wall, n, records=records)


def replay(path: str | Path, faults: list[str] | None = None, seed: int = 1,
           ag_config: AirGroundConfig = AirGroundConfig(),
           chain: AvionicsChain | None = None, summaries: SummaryConfig | None = None,
           aircraft_id: str = "replay") -> ReplayResult:
    """Replay the recording at ``path`` (either accepted format) with fault specs ``faults``.

    ``chain``, ``summaries``, ``aircraft_id``: as for :func:`replay_bytes`.
    """
    traj = load(path)
    f = Faults.parse(faults or [], traj.start, seed=seed)
    chunks = [c for _, c in generate(traj, f)]
    res = replay_bytes(chunks, ag_config=ag_config, chain=chain, summaries=summaries,
                       aircraft_id=aircraft_id)
    res.flight_s = traj.end - traj.start
    return res


def format_event(ev: Event) -> str:
    """One line: UTC (source), kind, from -> to, evidence."""
    utc = dt.datetime.fromtimestamp(ev.utc, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    ev_text = ", ".join(f"{k}={v}" for k, v in ev.evidence.items() if k != "candidate_since_t")
    return f"{utc}Z [{ev.time_source}] {ev.kind:9} {ev.previous} -> {ev.current}  ({ev_text})"
