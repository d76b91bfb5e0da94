"""Flight phase: a pure state machine over air/ground, height above the field, rates and speeds.

Phases: PARKED, TAXI_OUT, TAKEOFF, CLIMB, CRUISE, DESCENT, APPROACH, LANDING, TAXI_IN. Height is
pressure altitude minus the field's pressure altitude (learnt while on the ground: CDG reads ~575 ft,
not 0). Rules (each target must persist its time before the phase changes, except the changes
forced by an air/ground change, which is already debounced):

- on the ground after being airborne -> LANDING at once; LANDING -> TAXI_IN below 30 kt
- on the ground: ground speed < 1 kt for 120 s -> PARKED, or for 5 s with a cabin door open (at the
  gate: the door discretes help); >= 3 kt for 5 s -> TAXI_OUT (or TAXI_IN after a flight);
  >= 40 kt or CAS >= 60 kt for 2 s before a flight -> TAKEOFF (the roll)
- airborne from a ground phase -> TAKEOFF at once; TAKEOFF -> CLIMB above 1500 ft height
- airborne: rate > +500 ft/min -> CLIMB; rate < -500 ft/min -> DESCENT, or APPROACH below 3000 ft
  height; |rate| <= 500 ft/min at or above 10000 ft -> CRUISE; 30 s persistence (10 s to APPROACH)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from .airground import AirGround

__all__ = ["AIR_PHASES", "Phase", "PhaseChange", "PhaseInputs", "PhaseState", "step"]


class Phase(enum.StrEnum):
    """Flight phase."""

    PARKED = "parked"
    TAXI_OUT = "taxi_out"
    TAKEOFF = "takeoff"
    CLIMB = "climb"
    CRUISE = "cruise"
    DESCENT = "descent"
    APPROACH = "approach"
    LANDING = "landing"
    TAXI_IN = "taxi_in"


AIR_PHASES: Final = frozenset({Phase.TAKEOFF, Phase.CLIMB, Phase.CRUISE, Phase.DESCENT, Phase.APPROACH})


class PhaseInputs(NamedTuple):
    """One evaluation at card time ``t`` (s); None for an invalid or stale input (a named tuple)."""

    t: float
    air_ground: AirGround
    altitude_ft: float | None = None
    rate_fpm: float | None = None
    gs_kt: float | None = None
    cas_kt: float | None = None
    #: A cabin door is open (None: no valid door input).
    doors_open: bool | None = None


@dataclass(frozen=True, slots=True)
class PhaseState:
    """Phase, candidate and since when, the learnt field altitude, whether it has flown."""

    phase: Phase = Phase.PARKED
    candidate: Phase | None = None
    since: float | None = None
    field_alt_ft: float | None = None
    flown: bool = False


@dataclass(frozen=True, slots=True)
class PhaseChange:
    """A phase change at card time ``t`` with the values that decided it."""

    t: float
    previous: Phase
    current: Phase
    evidence: dict[str, float | str | bool | None]


_PERSIST = {Phase.PARKED: 120.0, Phase.TAXI_OUT: 5.0, Phase.TAXI_IN: 5.0, Phase.TAKEOFF: 2.0,
            Phase.CLIMB: 30.0, Phase.CRUISE: 30.0, Phase.DESCENT: 30.0, Phase.APPROACH: 10.0,
            Phase.LANDING: 0.0}
#: Persistence of PARKED when stopped with a door open (at the gate).
GATE_PERSIST_S: Final = 5.0


def _target(s: PhaseState, i: PhaseInputs) -> tuple[Phase, bool]:
    """The phase the inputs point to, and whether it applies at once (no persistence)."""
    p = s.phase
    gs = i.gs_kt
    if i.air_ground is AirGround.AIR:
        if p not in AIR_PHASES:
            return Phase.TAKEOFF, True
        height = None
        if i.altitude_ft is not None:
            height = i.altitude_ft - (s.field_alt_ft or 0.0)
        if p is Phase.TAKEOFF:
            return (Phase.CLIMB, True) if height is not None and height > 1500 else (p, False)
        rate = i.rate_fpm
        if rate is None:
            return p, False
        if rate > 500:
            return Phase.CLIMB, False
        if rate < -500:
            low = height is not None and height < 3000
            return (Phase.APPROACH if low else Phase.DESCENT), False
        if i.altitude_ft is not None and i.altitude_ft >= 10000:
            return Phase.CRUISE, False
        return p, False
    if i.air_ground is AirGround.UNKNOWN:
        return p, False
    if p in AIR_PHASES and s.flown:
        return Phase.LANDING, True
    if p is Phase.LANDING:
        return (Phase.TAXI_IN, True) if gs is not None and gs < 30 else (p, False)
    if gs is None:
        return p, False
    if not s.flown and (gs >= 40 or (i.cas_kt or 0) >= 60):
        return Phase.TAKEOFF, False
    if gs >= 3:
        return (Phase.TAXI_IN if s.flown else Phase.TAXI_OUT), False
    if gs < 1:
        return Phase.PARKED, False
    return p, False


def step(s: PhaseState, i: PhaseInputs) -> tuple[PhaseState, PhaseChange | None]:
    """Advance by one evaluation; returns the new state and the change, if any."""
    if i.air_ground is AirGround.GROUND and i.altitude_ft is not None and (
            i.gs_kt is None or i.gs_kt < 40):
        if s.field_alt_ft != i.altitude_ft:
            s = replace(s, field_alt_ft=i.altitude_ft)
    elif i.air_ground is AirGround.AIR and not s.flown:
        s = replace(s, flown=True)
    target, now = _target(s, i)
    if target is s.phase:
        return (s if s.candidate is None else replace(s, candidate=None, since=None)), None
    if not now:
        if s.candidate is not target or s.since is None:
            return replace(s, candidate=target, since=i.t), None
        persist = _PERSIST[target]
        if target is Phase.PARKED and i.doors_open:
            persist = GATE_PERSIST_S
        if i.t - s.since < persist:
            return s, None
    flown = s.flown and target is not Phase.PARKED
    evidence: dict[str, float | str | bool | None] = {
        "air_ground": str(i.air_ground), "altitude_ft": i.altitude_ft, "rate_fpm": i.rate_fpm,
        "ground_speed_kt": i.gs_kt, "computed_airspeed_kt": i.cas_kt,
        "field_altitude_ft": s.field_alt_ft, "doors_open": i.doors_open,
    }
    change = PhaseChange(i.t, s.phase, target, evidence)
    return PhaseState(target, None, None, s.field_alt_ft, flown), change
