"""``appliance replay``: run a recorded flight through the same chain as the live service.

The simulator turns the recording into the card's byte stream (faults applied) and the bytes go
through the frame decoder and the :class:`~appliance.avionics.chain.AvionicsChain` in memory, as fast
as the CPU allows (or paced to ``speed``). Nothing is written to the journal.
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


def replay_bytes(chunks: Iterable[bytes], table: LabelTable | None = None,
                 ag_config: AirGroundConfig = AirGroundConfig(),
                 chain: AvionicsChain | None = None) -> ReplayResult:
    """Run byte chunks of the card stream through the chain; returns its events.

    ``chain``: a chain to feed (with its own subscribers already connected), else a new one.
    """
    chain = chain or AvionicsChain(table or LabelTable.default(), ag_config)
    events: list[Event] = []
    chain.subscribe(events.append)
    decoder = FrameDecoder()
    n = 0
    t0 = time.perf_counter()
    for chunk in chunks:
        n += len(chunk)
        chain.feed_frames(decoder.feed(chunk))
    wall = time.perf_counter() - t0
    card = chain.decoder("card").stats
    st = decoder.stats
    card.bytes_in, card.frames, card.crc_errors = st.bytes_in, st.frames, st.crc_errors
    card.garbage_bytes, card.bad_length = st.garbage_bytes, st.bad_length
    return ReplayResult(events, chain, chain.store.now, wall, n)


def replay(path: str | Path, faults: list[str] | None = None, seed: int = 1,
           ag_config: AirGroundConfig = AirGroundConfig(),
           chain: AvionicsChain | None = None) -> ReplayResult:
    """Replay the recording at ``path`` (either accepted format) with fault specs ``faults``.

    ``chain``: feed this chain (see :func:`replay_bytes`) instead of a new one.
    """
    traj = load(path)
    f = Faults.parse(faults or [], traj.start, seed=seed)
    chunks = [c for _, c in generate(traj, f)]
    res = replay_bytes(chunks, ag_config=ag_config, chain=chain)
    res.flight_s = traj.end - traj.start
    return res


def format_event(ev: Event) -> str:
    """One line: UTC (source), kind, from -> to, evidence."""
    utc = dt.datetime.fromtimestamp(ev.utc, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    ev_text = ", ".join(f"{k}={v}" for k, v in ev.evidence.items() if k != "candidate_since_t")
    return f"{utc}Z [{ev.time_source}] {ev.kind:9} {ev.previous} -> {ev.current}  ({ev_text})"
