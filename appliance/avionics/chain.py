"""The avionics chain: frames -> parameters -> validity -> UTC, air/ground, phase, mode -> events.

Events go out on ``chain.events`` (an :class:`~appliance.modes.bus.EventBus`: ``unsub =
chain.subscribe(fn)``; a subscriber that raises is logged and counted, the chain goes on), and the
card time of every evaluation on ``chain.ticks`` (agents that sample on card time: flight profile,
track summaries, flight info). The chain implements :class:`~appliance.modes.state.FlightState`,
the read-only view the features depend on.

The same chain runs in the live service (fed by the serial and CAN readers on the event loop) and
in ``appliance replay`` (fed from the simulator's bytes in memory). State machines are evaluated on a
fixed grid of card time (every ``EVAL_PERIOD_S``), so the result does not depend on how the bytes
were chunked or how fast they were played.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from firmware_bridge.frame import Frame
from firmware_bridge.labels import LabelTable

from ..modes import airground, phase
from ..modes.airground import AirGround, AirGroundConfig, AirGroundInputs, AirGroundState
from ..modes.bus import EventBus, Unsubscribe
from ..modes.events import AirGroundChanged, Event, ModeChanged, PhaseChanged, TimeSource
from ..modes.phase import PhaseInputs, PhaseState
from ..modes.policy import Mode
from ..modes.state import FlightSnapshot
from .cardtime import CARD_RESET_S
from .clock import UtcClock
from .decode import CardDecoder
from .params import Parameter, ParameterStore
from .redundancy import TOLERANCES, Redundancy, RedundancyConfig
from .timebase import TimeBase

__all__ = ["AIR_GROUND_SOURCES", "CARD_RESET_S", "EVAL_PERIOD_S", "AvionicsChain"]

log = logging.getLogger(__name__)

EVAL_PERIOD_S = 0.25
#: Door discretes (True = closed); an open door on the ground at rest is "at the gate".
DOOR_INPUTS = ("door_fwd_closed", "door_aft_closed")
#: Parameters that vote on air/ground, and how to read "on ground" from their value.
AIR_GROUND_SOURCES: dict[str, Callable[[Any], bool]] = {
    "wow_left": bool,
    "wow_right": bool,
    "air_ground_word": lambda v: bool(int(v) & 1),
    "air_ground": bool,
}


class AvionicsChain:
    """The chain's state and agents; events go out on ``events``, evaluation ticks on ``ticks``."""

    def __init__(self, table: LabelTable, ag_config: AirGroundConfig = AirGroundConfig(),
                 initial_mode: Mode = Mode.GROUND, clock: UtcClock | None = None,
                 redundancy: RedundancyConfig | None = None) -> None:
        """Start with no data, air/ground UNKNOWN and ``initial_mode`` (the last journaled one)."""
        self.table = table
        self.store = ParameterStore(table)
        #: Votes, cross-checked values and disagreements over every source (redundancy agent).
        self.redundancy = Redundancy(self.store, AIR_GROUND_SOURCES, redundancy or RedundancyConfig(
            ag_config.discrete_debounce_s, {
                "computed_airspeed": ag_config.cas_tolerance_kt,
                "ground_speed": ag_config.gs_tolerance_kt,
                "pressure_altitude": ag_config.altitude_tolerance_ft,
                "altitude_rate": TOLERANCES["altitude_rate"]}))
        self.clock = clock or UtcClock()
        self.ag_config = ag_config
        self.ag = AirGroundState()
        self.phase = PhaseState()
        self.mode = initial_mode
        self.maintenance = initial_mode is Mode.MAINTENANCE
        #: Mode, air/ground and phase changes, to isolated subscribers.
        self.events: EventBus[Event] = EventBus("avionics.events")
        #: The card time (s) after every evaluation (every EVAL_PERIOD_S of card time).
        self.ticks: EventBus[float] = EventBus("avionics.ticks")
        self.decoders: dict[str, CardDecoder] = {}
        #: Set by the daemon when several sources share this chain (appliance.avionics.timebase).
        self.timebase: TimeBase | None = None
        self._next_eval: float | None = None
        self._last_t: dict[str, float] = {}  #: top source name -> its latest time (s)
        self._alt_hist: collections.deque[tuple[float, float]] = collections.deque()

    def subscribe(self, target: Callable[[Event], None]) -> Unsubscribe:
        """Call ``target`` with every change (isolated); returns the function that unsubscribes."""
        return self.events.connect(target)

    def on_tick(self, target: Callable[[float], None]) -> Unsubscribe:
        """Call ``target`` with the card time (s) after every evaluation; returns the unsubscribe."""
        return self.ticks.connect(target)

    def utc(self) -> tuple[float, TimeSource]:
        """Best-known UTC (epoch s) at the latest card time, and its source."""
        return self.clock.utc(self.store.now)

    def snapshot(self) -> FlightSnapshot:
        """Mode, air/ground, phase, card time and UTC now."""
        utc, source = self.utc()
        return FlightSnapshot(self.mode, self.ag.state, self.phase.phase, self.store.now, utc,
                              source)

    @property
    def subscriber_errors(self) -> int:
        """Exceptions raised by subscribers so far (caught, logged, counted)."""
        return self.events.errors + self.ticks.errors

    def decoder(self, source: str) -> CardDecoder:
        """The card decoder of ``source`` (created on first use; its stats live with it)."""
        d = self.decoders.get(source)
        if d is None:
            d = self.decoders[source] = CardDecoder(self.table, source)
        return d

    def feed_frames(self, frames: list[Frame], source: str = "card") -> None:
        """Decode card frames from ``source`` and advance the chain."""
        if frames:
            self.feed(self.decoder(source).decode(frames))

    def feed(self, params: list[Parameter]) -> None:
        """Take parameters in arrival order and evaluate the state machines on the time grid."""
        store, clock = self.store, self.clock
        for p in params:
            top = p.source.split("/", 1)[0]
            last = self._last_t.get(top, 0.0)
            if p.t < last - CARD_RESET_S:  # per source: several sources may arrive out of step
                log.warning("card clock went back from %.3f to %.3f s: card reset", last, p.t)
                store.expire_source(top)
                store.restart_time(p.t)
                self._next_eval = None
            self._last_t[top] = p.t
            store.put(p)
            if p.name in ("utc_time", "utc_date"):
                clock.observe(p)
            if self._next_eval is None:
                self._next_eval = p.t + EVAL_PERIOD_S
            elif p.t >= self._next_eval:
                self.evaluate(p.t)
                self._next_eval += EVAL_PERIOD_S * (1 + int((p.t - self._next_eval) / EVAL_PERIOD_S))

    def votes(self, t: float) -> tuple[tuple[str, bool | None], ...]:
        """Each air/ground input of each source seen: True on ground, False in air, None unusable.

        Discretes are debounced (see :mod:`appliance.avionics.redundancy`).
        """
        return self.redundancy.votes(t)

    def doors_open(self, t: float) -> bool | None:
        """True if a valid door input of any source shows a cabin door open; None: none valid."""
        seen = [not p.value for n in DOOR_INPUTS for p in self.store.sources(n, t) if p.valid]
        return any(seen) if seen else None

    def _num(self, name: str, t: float) -> float | None:
        return self.redundancy.value(name, t)

    def _rate(self, t: float, alt: float | None) -> float | None:
        rate = self._num("altitude_rate", t)
        hist = self._alt_hist
        if alt is not None:
            hist.append((t, alt))
            while hist and t - hist[0][0] > 10.0:
                hist.popleft()
        if rate is None and len(hist) >= 2 and hist[-1][0] - hist[0][0] >= 5.0:
            rate = (hist[-1][1] - hist[0][1]) / (hist[-1][0] - hist[0][0]) * 60.0
        return rate

    def evaluate(self, t: float) -> None:
        """Run air/ground, phase and mode at card time ``t`` (s); emit the changes."""
        cas, gs = self._num("computed_airspeed", t), self._num("ground_speed", t)
        votes = self.votes(t)
        red = self.redundancy
        red.check_votes(votes, t)
        split = [n for n in ("computed_airspeed", "ground_speed") if n in red.disagreeing(t)]
        self.ag, change = airground.step(self.ag, AirGroundInputs(
            t, votes, cas, gs, f"sources disagree on {', '.join(split)}" if split else None),
            self.ag_config)
        if change is not None:
            utc, src = self.clock.utc(t)
            self.events.send(AirGroundChanged(t, utc, src, change.previous, change.current,
                                              change.evidence))
            self._update_mode(t, change.evidence)
        alt = self._num("pressure_altitude", t)
        self.phase, pchange = phase.step(self.phase, PhaseInputs(
            t, self.ag.state, alt, self._rate(t, alt), gs, cas, self.doors_open(t)))
        if pchange is not None:
            utc, src = self.clock.utc(t)
            self.events.send(PhaseChanged(t, utc, src, pchange.previous, pchange.current,
                                          pchange.evidence))
        self.ticks.send(t)

    def _mode_for(self) -> Mode:
        if self.ag.state is AirGround.AIR:
            return Mode.FLIGHT
        if self.ag.state is AirGround.GROUND:
            return Mode.MAINTENANCE if self.maintenance else Mode.GROUND
        return self.mode

    def _update_mode(self, t: float, evidence: dict[str, Any]) -> None:
        if self.ag.state is AirGround.AIR:
            self.maintenance = False
        new = self._mode_for()
        if new is not self.mode:
            utc, src = self.clock.utc(t)
            ev = ModeChanged(t, utc, src, self.mode, new,
                             {**evidence, "air_ground": str(self.ag.state)})
            self.mode = new
            self.events.send(ev)

    def set_maintenance(self, on: bool, reason: str) -> bool:
        """Ask for (or leave) MAINTENANCE; allowed only on the ground. Returns True if granted."""
        if on and self.ag.state is not AirGround.GROUND:
            return False
        self.maintenance = on
        self._update_mode(self.store.now, {"override": on, "reason": reason})
        return True
