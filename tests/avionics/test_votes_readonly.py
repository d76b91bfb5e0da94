"""``chain.votes()`` is read-only: BITE and the status may read it at any time.

The votes are debounced per input on the chain's time grid (``appliance.avionics.redundancy``).
Reading them between evaluations (the status page, BITE, on the host's timer) must not advance
the debounce, or a live service (read now and then) and a replay (never read) would decide
differently. Two real chains are fed the same frames; one has ``votes()`` read after every frame:
the events and the state after every evaluation must be the same.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.chain import AvionicsChain
from firmware_bridge.frame import DiscreteBits, Frame, FrameType
from firmware_bridge.labels import LabelTable

TABLE = LabelTable.default()
WOW = int(DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT)


def discretes(t_s: float, ground: bool) -> Frame:
    """A DISCRETES frame at card time ``t_s``: both WOW inputs ``ground``, doors closed."""
    states = (WOW if ground else 0) | DiscreteBits.DOOR_FWD_CLOSED | DiscreteBits.DOOR_AFT_CLOSED
    return Frame(FrameType.DISCRETES, 0, round(t_s * 1e6), struct.pack("<HH", states, 0))


def run(frames: list[Frame], read_votes: bool) -> tuple[list[object], list[object]]:
    """Feed ``frames`` one by one; the events, and the vote state and votes after every tick."""
    chain = AvionicsChain(TABLE)
    events: list[object] = []
    ticks: list[object] = []
    # UTC is the host's clock here (no UTC label): compare everything else
    chain.subscribe(lambda e: events.append((e.t_card, e.kind, e.previous, e.current, e.evidence)))
    chain.on_tick(lambda t: ticks.append((t, chain.ag, chain.phase)))
    for f in frames:
        chain.feed_frames([f])
        if read_votes:
            chain.votes(chain.store.now)
            chain.votes(chain.store.now + 0.3)  # asked about a later time, too
    return events, ticks


def test_votes_read_between_frames_change_nothing_on_a_short_glitch() -> None:
    # discretes at 10 Hz: ground, then a 0.5 s "air" glitch that starts between grid points
    frames = [discretes(10 + i / 10, not 31 <= i <= 36) for i in range(80)]
    quiet = run(frames, read_votes=False)
    read = run(frames, read_votes=True)
    assert read[1] == quiet[1]
    assert read[0] == quiet[0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.booleans()), min_size=1, max_size=25),
       st.integers(0, 9))
def test_votes_read_between_frames_change_nothing(runs: list[tuple[int, bool]],
                                                  offset: int) -> None:
    # runs of WOW samples at 10 Hz (n samples of one value), starting off the 0.25 s grid
    values = [v for n, v in runs for _ in range(n)]
    frames = [discretes(20 + offset / 100 + i / 10, v) for i, v in enumerate(values)]
    quiet = run(frames, read_votes=False)
    read = run(frames, read_votes=True)
    assert read == quiet
