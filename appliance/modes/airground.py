"""Air/ground decision: a pure state machine over votes, with persistence and plausibility.

Inputs (:class:`AirGroundInputs`) are evaluated on a fixed grid of card time. Each air/ground source
(left WOW, right WOW, the air/ground discrete word, a CAN air/ground signal) votes ground, air or
nothing (invalid or stale). The majority of the votes cast is the *raw* state; a tie or no vote
holds the last state. A raw state is *plausible* unless the speeds contradict it: air with CAS below
``min_air_cas_kt`` and ground speed below ``min_air_gs_kt`` (when either is known), ground with CAS
above ``max_ground_cas_kt`` or ground speed above ``max_ground_gs_kt``. When redundant sources of the
speeds disagree beyond their tolerance (``disagreement``), neither is trusted and no change is
made: the state holds. A plausible raw state that
differs from the current one must persist ``to_air_s`` / ``to_ground_s`` (asymmetric) before the
state changes. Every change carries its evidence.

Table of behaviour (state, raw) -> state:

======== ========== =====================================================
state    raw        result
======== ========== =====================================================
any      none/tie   hold; candidate dropped
S        S          S; candidate dropped
S        R != S     candidate R from now; after persistence(R): R
S        implaus.   hold; candidate dropped
S        R, sources hold; candidate dropped (speeds disagree: neither trusted)
         disagree
======== ========== =====================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

__all__ = ["AirGround", "AirGroundChange", "AirGroundConfig", "AirGroundInputs", "AirGroundState",
           "step", "vote"]


class AirGround(enum.StrEnum):
    """The aircraft's air/ground state; UNKNOWN until the first decision."""

    UNKNOWN = "unknown"
    GROUND = "ground"
    AIR = "air"


@dataclass(frozen=True, slots=True)
class AirGroundConfig:
    """Persistence in seconds, plausibility limits in knots, and redundancy.

    Redundancy: the debounce of each discrete input (s) and how far redundant sources may differ
    (kt, ft) before neither is trusted (applied by ``appliance.avionics.redundancy``).
    """

    to_air_s: float = 2.0
    to_ground_s: float = 3.0
    min_air_cas_kt: float = 60.0
    min_air_gs_kt: float = 50.0
    max_ground_cas_kt: float = 200.0
    max_ground_gs_kt: float = 250.0
    discrete_debounce_s: float = 0.5
    cas_tolerance_kt: float = 25.0
    gs_tolerance_kt: float = 25.0
    altitude_tolerance_ft: float = 500.0


class AirGroundInputs(NamedTuple):
    """One evaluation: card time ``t`` (s), votes (source, True = on ground, None = no vote), speeds.

    A named tuple: one is built 4 times per second of card time (hot in replays).

    ``cas_kt`` (computed airspeed) and ``gs_kt`` (ground speed) are None when invalid or stale;
    ``disagreement`` says why redundant speed sources are not trusted (None: they agree).
    """

    t: float
    votes: tuple[tuple[str, bool | None], ...]
    cas_kt: float | None = None
    gs_kt: float | None = None
    disagreement: str | None = None


@dataclass(frozen=True, slots=True)
class AirGroundState:
    """Current state, the candidate state being confirmed and since when, and why we hold."""

    state: AirGround = AirGround.UNKNOWN
    candidate: AirGround | None = None
    since: float | None = None
    reason: str = "no data yet"


@dataclass(frozen=True, slots=True)
class AirGroundChange:
    """A decided change at card time ``t``, with the evidence that decided it."""

    t: float
    previous: AirGround
    current: AirGround
    evidence: dict[str, Any] = field(default_factory=dict)


def vote(votes: tuple[tuple[str, bool | None], ...]) -> tuple[AirGround | None, str]:
    """Majority of the votes cast: GROUND, AIR, or None on a tie or no vote (with the reason)."""
    ground = air = 0
    for _, v in votes:  # once per evaluation: a loop, not two generators
        if v is True:
            ground += 1
        elif v is False:
            air += 1
    if ground == air:
        return None, ("no valid air/ground source" if ground == 0 else f"tie {ground}-{air}")
    return (AirGround.GROUND if ground > air else AirGround.AIR), f"{ground} ground, {air} air"


def _implausible(raw: AirGround, i: AirGroundInputs, c: AirGroundConfig) -> str | None:
    if raw is AirGround.AIR:
        slow = [(i.cas_kt is not None and i.cas_kt < c.min_air_cas_kt) or i.cas_kt is None,
                (i.gs_kt is not None and i.gs_kt < c.min_air_gs_kt) or i.gs_kt is None]
        if all(slow) and (i.cas_kt is not None or i.gs_kt is not None):
            return f"air vote implausible at CAS {i.cas_kt} kt, ground speed {i.gs_kt} kt"
    elif (i.cas_kt is not None and i.cas_kt > c.max_ground_cas_kt) or (
            i.gs_kt is not None and i.gs_kt > c.max_ground_gs_kt):
        return f"ground vote implausible at CAS {i.cas_kt} kt, ground speed {i.gs_kt} kt"
    return None


def step(s: AirGroundState, i: AirGroundInputs, c: AirGroundConfig = AirGroundConfig(),
         ) -> tuple[AirGroundState, AirGroundChange | None]:
    """Advance the machine by one evaluation; returns the new state and the change, if any."""
    raw, why = vote(i.votes)
    if raw is None:
        return replace(s, candidate=None, since=None, reason=f"holding: {why}"), None
    bad = _implausible(raw, i, c)
    if bad is None and i.disagreement is not None and raw is not s.state:
        bad = i.disagreement
    if bad is not None:
        return replace(s, candidate=None, since=None, reason=f"holding: {bad}"), None
    if raw is s.state:
        return (s if s.candidate is None and s.reason == why
                else AirGroundState(s.state, None, None, why)), None
    if s.candidate is not raw or s.since is None:
        return AirGroundState(s.state, raw, i.t, f"confirming {raw}: {why}"), None
    held = i.t - s.since
    if held < (c.to_air_s if raw is AirGround.AIR else c.to_ground_s):
        return s, None
    evidence = {
        "votes": {name: v for name, v in i.votes},
        "computed_airspeed_kt": i.cas_kt,
        "ground_speed_kt": i.gs_kt,
        "persisted_s": round(held, 3),
        "candidate_since_t": s.since,
        "reason": why,
    }
    return AirGroundState(raw, None, None, why), AirGroundChange(i.t, s.state, raw, evidence)
