"""Air/ground state machine: behaviour tables and properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.modes.airground import (
    AirGround,
    AirGroundConfig,
    AirGroundInputs,
    AirGroundState,
    step,
    vote,
)

G, A, U = AirGround.GROUND, AirGround.AIR, AirGround.UNKNOWN
CFG = AirGroundConfig()


def votes(*vals: bool | None) -> tuple[tuple[str, bool | None], ...]:
    names = ("wow_left", "wow_right", "air_ground_word")
    return tuple(zip(names, vals, strict=False))


@pytest.mark.parametrize(("vals", "expected"), [
    ((True, True, True), G),
    ((False, False, False), A),
    ((True, True, False), G),
    ((False, None, True), None),  # tie
    ((None, None, None), None),  # nothing valid
    ((), None),
    ((False, None, None), A),
])
def test_vote_table(vals: tuple[bool | None, ...], expected: AirGround | None) -> None:
    assert vote(votes(*vals))[0] is expected


def run(states: list[tuple[float, tuple[bool | None, ...], float | None, float | None]],
        s: AirGroundState | None = None, cfg: AirGroundConfig = CFG,
        ) -> tuple[AirGroundState, list[tuple[float, AirGround, AirGround]]]:
    changes = []
    s = s or AirGroundState()
    for t, vals, cas, gs in states:
        s, ch = step(s, AirGroundInputs(t, votes(*vals), cas, gs), cfg)
        if ch:
            changes.append((ch.t, ch.previous, ch.current))
    return s, changes


def series(t0: float, t1: float, vals: tuple[bool | None, ...], cas: float | None, gs: float | None,
           dt: float = 0.25) -> list[tuple[float, tuple[bool | None, ...], float | None, float | None]]:
    n = round((t1 - t0) / dt)
    return [(t0 + i * dt, vals, cas, gs) for i in range(n)]


# (state, event) -> (state, effects) table
@pytest.mark.parametrize(("start", "inputs", "end", "n_changes"), [
    # ground, air votes at takeoff speed for 2.5 s -> AIR after the 2 s persistence
    (G, series(0, 2.5, (False, False, False), 150, 150), A, 1),
    # ground, air votes for only 1.5 s -> stays GROUND
    (G, series(0, 1.5, (False, False, False), 150, 150), G, 0),
    # ground, air votes while parked (implausible) for a minute -> stays GROUND
    (G, series(0, 60, (False, False, False), None, 0.0), G, 0),
    # air at cruise, ground votes for a minute (implausible at 450 kt) -> stays AIR
    (A, series(0, 60, (True, True, True), 280, 450), A, 0),
    # air, ground votes at landing speed for 3.5 s -> GROUND after 3 s
    (A, series(0, 3.5, (True, True, True), 130, 130), G, 1),
    # air, ground votes for 2.5 s (< 3 s) -> stays AIR (asymmetric persistence)
    (A, series(0, 2.5, (True, True, True), 130, 130), A, 0),
    # every source invalid for a long time -> hold whatever the state
    (A, series(0, 60, (None, None, None), None, None), A, 0),
    (G, series(0, 60, (None, None, None), None, None), G, 0),
    # unknown start, ground votes -> GROUND after persistence
    (U, series(0, 3.5, (True, True, True), None, 0.0), G, 1),
])
def test_transition_table(start: AirGround, inputs: list, end: AirGround, n_changes: int) -> None:
    s, changes = run(inputs, AirGroundState(start))
    assert s.state is end
    assert len(changes) == n_changes


def test_change_carries_evidence() -> None:
    s, ch = step(AirGroundState(G), AirGroundInputs(0, votes(False, False, False), 150, 140))
    assert ch is None and s.candidate is A
    s = AirGroundState(G, A, 0.0)
    s, ch = step(s, AirGroundInputs(2.0, votes(False, False, False), 150, 140))
    assert ch is not None
    assert ch.evidence["votes"] == {"wow_left": False, "wow_right": False, "air_ground_word": False}
    assert ch.evidence["computed_airspeed_kt"] == 150 and ch.evidence["persisted_s"] == 2.0


def test_glitch_interrupting_candidate_restarts_persistence() -> None:
    seq = (series(0, 1.5, (False, False, False), 150, 150)
           + series(1.5, 1.75, (True, True, True), 150, 150)
           + series(1.75, 3.5, (False, False, False), 150, 150))
    s, changes = run(seq, AirGroundState(G))
    assert changes == []  # 1.75 s of air after the glitch is < 2 s
    s, changes = run(series(3.5, 4.0, (False, False, False), 150, 150), s)
    assert [c[2] for c in changes] == [A]


vote_values = st.sampled_from([True, False, None])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(vote_values, vote_values, vote_values,
                          st.one_of(st.none(), st.floats(0, 500)),
                          st.one_of(st.none(), st.floats(0, 600))), max_size=200),
       st.sampled_from([G, A, U]))
def test_properties(steps: list, start: AirGround) -> None:
    """Any input sequence: a change only after its full persistence of agreeing votes.

    No change ever happens while every vote is missing or split.
    """
    s = AirGroundState(start)
    history: list[tuple[float, AirGround | None]] = []
    for i, (left, right, word, cas, gs) in enumerate(steps):
        t = i * 0.25
        inp = AirGroundInputs(t, votes(left, right, word), cas, gs)
        raw = vote(inp.votes)[0]
        history.append((t, raw))
        prev = s.state
        s, ch = step(s, inp)
        if ch is None:
            assert s.state is prev
            continue
        assert raw is ch.current and ch.previous is prev and prev is not raw
        need = CFG.to_air_s if raw is A else CFG.to_ground_s
        window = [v for (tt, v) in history if t - tt <= need]
        assert all(v is raw for v in window)
        assert history[0][0] <= t - need
