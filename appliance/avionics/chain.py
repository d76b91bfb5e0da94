"""The avionics chain: frames -> parameters -> validity -> UTC, air/ground, phase, mode -> events.

The stages are agents of :mod:`appliance.avionics.stages` (decode, validity, time base, vote,
phase, mode); this class wires them. Events go out on ``chain.events`` (an
:class:`~appliance.modes.bus.EventBus`: ``unsub = chain.subscribe(fn)``; a subscriber that raises
is logged and counted, the chain goes on), and the card time of every evaluation on
``chain.ticks``: the agents that sample on card time (flight profile, summaries, flight info)
are stages too, run inside the chain's evaluation. The chain implements
:class:`~appliance.modes.state.FlightState`, the read-only view the features depend on.

The same chain runs in the live service (fed by the serial and CAN readers on the event loop) and
in ``appliance replay`` (fed from the simulator's bytes in memory). Everything is driven by card
time: the state machines are evaluated on a fixed grid of card time (every ``EVAL_PERIOD_S``),
and frames are decoded and taken one by one in arrival order, so the result (events, samples,
counters at each evaluation) does not depend on how the bytes were chunked or how fast they were
played.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from firmware_bridge.frame import RawFrame
from firmware_bridge.labels import LabelTable

from ..modes.airground import AirGround, AirGroundConfig, AirGroundState
from ..modes.bus import EventBus, Unsubscribe
from ..modes.events import AirGroundChanged, Event, ModeChanged, PhaseChanged, TimeSource
from ..modes.phase import PhaseState
from ..modes.policy import Mode
from ..modes.state import FlightSnapshot
from .cardtime import CARD_RESET_S
from .clock import UtcClock
from .decode import CardDecoder
from .params import DISCRETE_MAX_AGE_S, Parameter, ParameterStore, Validity
from .position import POSITION_NAMES, PositionGuard
from .redundancy import TOLERANCES, Redundancy, RedundancyConfig
from .stages import (
    AIR_GROUND_SOURCES,
    EVAL_PERIOD_S,
    ClimbRate,
    ModeStage,
    PhaseStage,
    TimeGrid,
    Vote,
    airground_inputs,
    doors_open,
    phase_inputs,
)
from .timebase import TimeBase

__all__ = ["AIR_GROUND_SOURCES", "CARD_RESET_S", "EVAL_PERIOD_S", "AvionicsChain"]

log = logging.getLogger(__name__)

_UTC_NAMES = frozenset({"utc_time", "utc_date"})
#: The names the hot path does more with (one set lookup for the common case: none of them).
_SPECIAL_NAMES = _UTC_NAMES | POSITION_NAMES


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
        self.grid = TimeGrid(EVAL_PERIOD_S, CARD_RESET_S)
        self.vote = Vote(ag_config)
        self.phases = PhaseStage()
        self.modes = ModeStage(initial_mode)
        self.climb = ClimbRate()
        #: Mode, air/ground and phase changes, to isolated subscribers.
        self.events: EventBus[Event] = EventBus("avionics.events")
        #: The card time (s) after every evaluation (every EVAL_PERIOD_S of card time).
        self.ticks: EventBus[float] = EventBus("avionics.ticks")
        self.decoders: dict[str, CardDecoder] = {}
        #: Position plausibility: implausible latitude/longitude words are stored as such.
        self.position = PositionGuard()
        #: Set by the daemon when several sources share this chain (appliance.avionics.timebase).
        self.timebase: TimeBase | None = None

    # The stages' states, as the features read them (and tests set them).
    @property
    def ag(self) -> AirGroundState:
        """The air/ground vote's state."""
        return self.vote.state

    @ag.setter
    def ag(self, state: AirGroundState) -> None:
        self.vote.state = state

    @property
    def phase(self) -> PhaseState:
        """The phase machine's state."""
        return self.phases.state

    @phase.setter
    def phase(self, state: PhaseState) -> None:
        self.phases.state = state

    @property
    def mode(self) -> Mode:
        """The current mode."""
        return self.modes.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self.modes.mode = mode

    @property
    def maintenance(self) -> bool:
        """True while MAINTENANCE is asked for (it applies on the ground)."""
        return self.modes.maintenance

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

    def feed_frames(self, frames: Sequence[RawFrame], source: str = "card") -> None:
        """Decode card frames (Frames or RawFrames) from ``source``; advance the chain, frame by frame."""
        if frames:
            self.feed(self.decoder(source).iter_decode(frames))

    def feed(self, params: Iterable[Parameter]) -> None:
        """Take parameters in arrival order and evaluate the state machines on the time grid.

        The hot path (once per parameter): validity store (by name and by source), UTC clock,
        time base. A card reset is checked per top source (several sources may arrive out of
        step): that source's parameters go stale and the grid restarts.
        """
        store, clock, grid = self.store, self.clock, self.grid
        latest, source_now = store.latest, store.source_now
        max_age = store._max_age
        special = _SPECIAL_NAMES
        position = self.position
        valid, reset_s = Validity.VALID, CARD_RESET_S
        # card times kept in locals on the hot path, written back before anything reads them:
        # the grid's last time, the store's latest time, the next grid point, and the latest
        # time of the current parameter's top source (source_now[top])
        last, now, nxt = grid.last_t, store.now, grid.next_t
        # the source of the previous parameter: its top source and its dict in the store
        cur_src: str | None = None
        top = ""
        top_t = -math.inf
        named: dict[str, Parameter] = {}
        for p in params:
            t = p.t
            src = p.source
            if src is not cur_src:
                if cur_src is not None:
                    source_now[top] = top_t
                cur_src = src
                top = src.split("/", 1)[0]
                named = store.of_source(src)
                top_t = source_now.get(top, -math.inf)
            if t > top_t:
                top_t = t
            elif t < top_t - reset_s:
                log.warning("card clock of %s went back from %.3f to %.3f s: card reset",
                            top, top_t, t)
                store.expire_source(top)
                top_t = t
                grid.restart(t)
                now = t
                nxt = grid.next_t
            last = t
            name = p.name
            if name in special and name in POSITION_NAMES:
                # a few a second: the plausibility check reads the store
                store.now = max(now, t)
                source_now[top] = top_t
                p = position.filter(p, store)
            # store.put(p), inlined: by source, and as the name's latest unless an invalid value
            # would hide a valid, fresh one of another source
            named[name] = p
            if p.validity is valid:
                latest[name] = p
            else:
                cur = latest.get(name)
                if (cur is None or cur.source == src or cur.validity is not valid
                        or t - cur.t > max_age.get(name, DISCRETE_MAX_AGE_S)):
                    latest[name] = p
            if t > now:
                now = t
            if name in special and name in _UTC_NAMES:
                clock.observe(p)
            if t >= nxt:
                grid.last_t, store.now = last, now
                source_now[top] = top_t
                if grid.due(t):
                    self.evaluate(t)
                nxt = grid.next_t
        grid.last_t, store.now = last, now
        if cur_src is not None:
            source_now[top] = top_t

    def votes(self, t: float) -> tuple[tuple[str, bool | None], ...]:
        """Each air/ground input of each source seen: True on ground, False in air, None unusable.

        Discretes are debounced (see :mod:`appliance.avionics.redundancy`). Read-only: the
        debounce advances on the chain's time grid only, so reading the votes (BITE, the status)
        at any time changes no later output.
        """
        return self.redundancy.peek_votes(t)

    def doors_open(self, t: float) -> bool | None:
        """True if a valid door input of any source shows a cabin door open; None: none valid."""
        return doors_open(self.store, t)

    def evaluate(self, t: float) -> None:
        """Run air/ground, phase and mode at card time ``t`` (s); emit the changes; tick."""
        red = self.redundancy
        inputs = airground_inputs(self.store, t, redundancy=red)
        for change in self.vote.push(inputs):
            utc, src = self.clock.utc(t)
            self.events.send(AirGroundChanged(t, utc, src, change.previous, change.current,
                                              change.evidence))
            self._update_mode(t, change.evidence)
        for pchange in self.phases.push(phase_inputs(self.store, t, self.ag.state, self.climb,
                                                     inputs.gs_kt, inputs.cas_kt, red)):
            utc, src = self.clock.utc(t)
            self.events.send(PhaseChanged(t, utc, src, pchange.previous, pchange.current,
                                          pchange.evidence))
        self.ticks.send(t)

    def _update_mode(self, t: float, evidence: dict[str, Any]) -> None:
        for old, new in self.modes.push(self.ag.state):
            utc, src = self.clock.utc(t)
            self.events.send(ModeChanged(t, utc, src, old, new,
                                         {**evidence, "air_ground": str(self.ag.state)}))

    def set_maintenance(self, on: bool, reason: str) -> bool:
        """Ask for (or leave) MAINTENANCE; allowed only on the ground. Returns True if granted."""
        if on and self.ag.state is not AirGround.GROUND:
            return False
        self.modes.maintenance = on
        self._update_mode(self.store.now, {"override": on, "reason": reason})
        return True
