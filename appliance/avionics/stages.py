"""The chain's stages: each an ordinary function or small class, an agent over the stream.

An agent takes one item at a time and returns what it makes of it (a list, often empty); it keeps
its own state and does no I/O, so a stage is tested alone with lists in and out (:func:`run`).
Everything runs on *card* (avionics) time, never on the host's clock: fed the same frames, the
live service and a replay produce the same events and the same summaries, at any speed and
however the bytes were chunked.

=========== ================================== =================================== ===============
stage       in                                 out                                 where
=========== ================================== =================================== ===============
decode      frames                             parameters (SSM, range, parity)     CardDecoder
validity    parameters; a card time            latest values, staleness applied    ParameterStore
time base   each parameter's card time         evaluation ticks (every 0.25 s)     :class:`TimeGrid`
vote        :class:`AirGroundInputs`           :class:`AirGroundChange`            :class:`Vote`
phase       :class:`PhaseInputs`               :class:`PhaseChange`                :class:`PhaseStage`
mode        air/ground changes, overrides      (previous, new) modes               :class:`ModeStage`
summaries   ticks -> samples, mode changes     outbox records                      summaries.py
profile     ticks                              profile points                      profile.py
flight info ticks                              PA on/off                           :class:`Edge`
=========== ================================== =================================== ===============

:class:`~appliance.avionics.chain.AvionicsChain` wires them: per parameter only the validity
store and the time base run; the state machines run once per tick, on inputs read from the store
at the tick's card time (:func:`airground_inputs`, :func:`phase_inputs`). With several sources of
a parameter (SDI left/right, CAN nodes, serial and CAN together) those inputs come through the
chain's :class:`~appliance.avionics.redundancy.Redundancy`: every valid source votes (debounced
per input), redundant values are cross-checked, and a disagreement holds the vote.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol, TypeVar

from ..modes import airground, phase
from ..modes.airground import (
    AirGround,
    AirGroundChange,
    AirGroundConfig,
    AirGroundInputs,
    AirGroundState,
)
from ..modes.phase import PhaseChange, PhaseInputs, PhaseState
from ..modes.policy import Mode
from .params import ParameterStore, Validity
from .redundancy import Redundancy

__all__ = ["AIR_GROUND_SOURCES", "DOOR_INPUTS", "EVAL_PERIOD_S", "Agent", "ClimbRate", "Edge",
           "ModeStage", "PhaseStage", "TimeGrid", "Vote", "airground_inputs", "doors_open",
           "number", "phase_inputs", "run"]

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out")
T = TypeVar("T")
U = TypeVar("U")

#: Card seconds between evaluations of the state machines.
EVAL_PERIOD_S: Final = 0.25
#: Parameters that vote on air/ground, and how to read "on ground" from their value.
AIR_GROUND_SOURCES: dict[str, Callable[[Any], bool]] = {
    "wow_left": bool,
    "wow_right": bool,
    "air_ground_word": lambda v: bool(int(v) & 1),
    "air_ground": bool,
}
#: Door discretes (True = closed); an open door on the ground at rest is "at the gate".
DOOR_INPUTS: Final = ("door_fwd_closed", "door_aft_closed")
_VALID: Final = Validity.VALID
_new: Final = tuple.__new__


class Agent(Protocol[In, Out]):
    """A stage: one item in, what it makes of it out (0..n items)."""

    def push(self, item: In) -> list[Out]:
        """Take one item; return the items it produces."""
        ...


def run(agent: Agent[T, U], items: Iterable[T]) -> list[U]:
    """Push every item of ``items`` through ``agent``; all it produced, in order."""
    out: list[U] = []
    for item in items:
        out.extend(agent.push(item))
    return out


class TimeGrid:
    """The time base: card times in, evaluation ticks out (one per ``period_s`` of card time).

    The grid is fixed on the card's clock: its points are the multiples of ``period_s``, so the
    ticks do not depend on where the stream started (a service that attached late, a replay from
    the first frame). A card time that reaches the next grid point is a tick (the evaluation runs
    at that card time); the first card time seen only places the grid. A card time more than
    ``reset_s`` behind the latest is a card reset: the grid starts again from it (``resets``).
    """

    def __init__(self, period_s: float = EVAL_PERIOD_S, reset_s: float = 5.0) -> None:
        """No grid until the first card time."""
        self.period_s = period_s
        self.reset_s = reset_s
        #: The next grid point (card s); -inf before the first card time, so that it is seen.
        self.next_t = -math.inf
        self.last_t = 0.0
        self.resets = 0

    def is_reset(self, t: float) -> bool:
        """True if card time ``t`` (s) went back by more than ``reset_s``: the grid restarts."""
        if t < self.last_t - self.reset_s:
            self.resets += 1
            self.next_t = -math.inf
            return True
        return False

    def restart(self, t: float) -> None:
        """One source's card clock went back to ``t`` (s) (a card reset, checked per source)."""
        self.resets += 1
        self.next_t = -math.inf
        self.last_t = t

    def push(self, t: float) -> list[float]:
        """Take one card time (s); ``[t]`` if the chain evaluates at it, else ``[]``."""
        self.is_reset(t)
        self.last_t = t
        return [t] if t >= self.next_t and self.due(t) else []

    def due(self, t: float) -> bool:
        """Move the grid past card time ``t`` (s); True if ``t`` reached the next grid point.

        The caller checks ``t >= next_t`` first (the cheap test on the hot path).
        """
        first = self.next_t == -math.inf
        p = self.period_s
        self.next_t = (math.floor(t / p) + 1) * p
        return not first


def number(store: ParameterStore, name: str, t: float) -> float | None:
    """The value of ``name`` at card time ``t`` if valid, fresh and numeric, else None."""
    v = store.value(name, t)
    return float(v) if isinstance(v, (int, float)) else None


def airground_inputs(store: ParameterStore, t: float,
                     sources: dict[str, Callable[[Any], bool]] = AIR_GROUND_SOURCES,
                     redundancy: Redundancy | None = None) -> AirGroundInputs:
    """The vote's inputs at card time ``t``.

    With ``redundancy`` (the chain's): every valid source of every input votes, each discrete
    debounced per input; the speeds are the sources' trusted values, and when redundant speed
    sources disagree ``disagreement`` says so (the vote holds). Without it: the latest of each
    input name votes (True = on ground, None = unusable: invalid or stale); computed airspeed and
    ground speed are None when not valid and fresh.
    """
    if redundancy is not None:
        cas, gs = redundancy.value("computed_airspeed", t), redundancy.value("ground_speed", t)
        votes = redundancy.votes(t)
        redundancy.check_votes(votes, t)
        now = redundancy.disagreeing(t)
        split = [n for n in ("computed_airspeed", "ground_speed") if n in now]
        # named tuples built with tuple.__new__ (all fields given): a C call, not the class's
        # Python-level __new__ (once per tick)
        return _new(AirGroundInputs, (t, votes, cas, gs, f"sources disagree on {', '.join(split)}"
                                      if split else None))
    out = []
    for name, read in sources.items():
        p = store.get(name, t)
        if p is not None:
            out.append((name, read(p.value) if p.validity is _VALID else None))
    return AirGroundInputs(t, tuple(out), number(store, "computed_airspeed", t),
                           number(store, "ground_speed", t))


def doors_open(store: ParameterStore, t: float) -> bool | None:
    """True if a valid door input of any source shows a cabin door open; None: none valid."""
    seen = None
    for n in DOOR_INPUTS:
        for p in store.sources(n, t):
            if p.validity is _VALID:
                if not p.value:
                    return True
                seen = False
    return seen


class ClimbRate:
    """Vertical rate (ft/min): the altitude rate label, else the altitude's slope over 10 s.

    ``push((t, altitude_ft, rate_label_fpm))`` -> ``[rate]`` (``[None]`` when unknown); the
    slope needs at least 5 s of altitudes.
    """

    def __init__(self, window_s: float = 10.0, min_span_s: float = 5.0) -> None:
        """Keep ``window_s`` of altitudes."""
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._hist: collections.deque[tuple[float, float]] = collections.deque()

    def push(self, item: tuple[float, float | None, float | None]) -> list[float | None]:
        """Take one evaluation's (card s, altitude ft, rate label ft/min); return its rate."""
        t, alt, rate = item
        hist = self._hist
        if alt is not None:
            hist.append((t, alt))
            while hist and t - hist[0][0] > self.window_s:
                hist.popleft()
        if rate is None and len(hist) >= 2 and hist[-1][0] - hist[0][0] >= self.min_span_s:
            rate = (hist[-1][1] - hist[0][1]) / (hist[-1][0] - hist[0][0]) * 60.0
        return [rate]


def phase_inputs(store: ParameterStore, t: float, air_ground: AirGround, rate: ClimbRate,
                 gs_kt: float | None, cas_kt: float | None,
                 redundancy: Redundancy | None = None) -> PhaseInputs:
    """The phase machine's inputs at card time ``t`` (the rate estimator takes the altitude).

    With ``redundancy``, altitude and rate are the sources' trusted values (None while they
    disagree); the doors are every source's door inputs.
    """
    if redundancy is not None:
        alt = redundancy.value("pressure_altitude", t)
        label = redundancy.value("altitude_rate", t)
    else:
        alt, label = number(store, "pressure_altitude", t), number(store, "altitude_rate", t)
    climb = rate.push((t, alt, label))[0]
    return _new(PhaseInputs, (t, air_ground, alt, climb, gs_kt, cas_kt, doors_open(store, t)))


class Vote:
    """The air/ground vote: :class:`AirGroundInputs` in, decided changes out (see modes.airground)."""

    def __init__(self, config: AirGroundConfig = AirGroundConfig(),
                 state: AirGroundState | None = None) -> None:
        """Start UNKNOWN (or at ``state``)."""
        self.config = config
        self.state = state or AirGroundState()

    def push(self, item: AirGroundInputs) -> list[AirGroundChange]:
        """One evaluation: the change it decided, if any."""
        self.state, change = airground.step(self.state, item, self.config)
        return [] if change is None else [change]


class PhaseStage:
    """The flight phase: :class:`PhaseInputs` in, phase changes out (see modes.phase)."""

    def __init__(self, state: PhaseState | None = None) -> None:
        """Start PARKED (or at ``state``)."""
        self.state = state or PhaseState()

    def push(self, item: PhaseInputs) -> list[PhaseChange]:
        """One evaluation: the change, if any."""
        self.state, change = phase.step(self.state, item)
        return [] if change is None else [change]


class ModeStage:
    """The mode: the decided air/ground state (and the maintenance override) in, mode changes out.

    AIR -> FLIGHT (and the override ends); GROUND -> GROUND, or MAINTENANCE while the override is
    on; UNKNOWN holds the mode. ``push(air_ground)`` -> ``[(previous, new)]`` when it changes.
    """

    def __init__(self, initial: Mode = Mode.GROUND) -> None:
        """Start in ``initial`` (the last journaled mode); MAINTENANCE keeps the override on."""
        self.mode = initial
        self.maintenance = initial is Mode.MAINTENANCE

    def push(self, item: AirGround) -> list[tuple[Mode, Mode]]:
        """The air/ground state now; the mode change it makes, if any."""
        if item is AirGround.AIR:
            self.maintenance = False
            new = Mode.FLIGHT
        elif item is AirGround.GROUND:
            new = Mode.MAINTENANCE if self.maintenance else Mode.GROUND
        else:
            new = self.mode
        if new is self.mode:
            return []
        old, self.mode = self.mode, new
        return [(old, new)]


class Edge:
    """A discrete's edges: values in (None: unknown), ``[new]`` out when the state changes.

    Unknown counts as False (as the PA-active discrete: no signal, no announcement).
    """

    def __init__(self, state: bool = False) -> None:
        """Start at ``state``."""
        self.state = state

    def push(self, item: object) -> list[bool]:
        """Take one value; ``[new state]`` on a change."""
        on = item is True
        if on is self.state:
            return []
        self.state = on
        return [on]
