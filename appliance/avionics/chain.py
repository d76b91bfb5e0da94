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
from typing import Any, Final

from firmware_bridge.frame import FrameType, RawFrame
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

_UTC_NAMES: Final = frozenset({"utc_time", "utc_date"})
_A429: Final = int(FrameType.A429_WORD)
#: The names the hot path does more with (one set lookup for the common case: none of them).
_SPECIAL_NAMES: Final = _UTC_NAMES | POSITION_NAMES


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
        # the hot path's current source (None between batches), its top source, that top
        # source's latest card time (s; store.source_now[top] once flushed), its dict in the store
        self._src: str | None = None
        self._top = ""
        self._top_t = -math.inf
        self._named: dict[str, Parameter] = {}

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
        """Decode card frames (Frames or RawFrames) from ``source``; advance the chain, frame by frame.

        Each frame is decoded (and counted) just before its parameters are taken, as
        :meth:`CardDecoder.iter_decode` does, without a generator between them.
        """
        if not frames:
            return
        dec = self.decoder(source)
        a429 = _A429
        for f in frames:
            if f[0] == a429:
                p = dec.word(float(f[2]) * 1e-6, f[3])
                if p is not None:
                    self._take(p)
            else:
                for p in dec.other(f[0], f[2], f[3]):
                    self._take(p)
        dec.stats.last_frame_t = float(frames[-1][2]) * 1e-6
        self._flush()

    def feed(self, params: Iterable[Parameter]) -> None:
        """Take parameters in arrival order and evaluate the state machines on the time grid."""
        for p in params:
            self._take(p)
        self._flush()

    def _take(self, p: Parameter) -> None:
        """Take one parameter (the hot path, once per parameter; then :meth:`_flush`).

        The validity store (by name and by source), UTC clock, time base. A card reset is checked
        per top source (several sources may arrive out of step): that source's parameters go
        stale and the grid restarts. The latest time of the current top source is kept in
        ``_top_t`` and written to ``store.source_now`` before anything reads it.
        """
        store, grid = self.store, self.grid
        t = p.t
        src = p.source
        if src is not self._src:
            self._switch_source(src)
        top_t = self._top_t
        if t > top_t:
            self._top_t = t
        elif t < top_t - CARD_RESET_S:
            top = self._top
            log.warning("card clock of %s went back from %.3f to %.3f s: card reset",
                        top, top_t, t)
            store.expire_source(top)
            self._top_t = t
            grid.restart(t)
            store.now = t
        grid.last_t = t
        name = p.name
        special = name in _SPECIAL_NAMES
        if special and name in POSITION_NAMES:
            # a few a second: the plausibility check reads the store
            if t > store.now:
                store.now = t
            store.source_now[self._top] = self._top_t
            p = self.position.filter(p, store)
        # store.put(p), inlined: by source, and as the name's latest unless an invalid value
        # would hide a valid, fresh one of another source
        self._named[name] = p
        latest = store.latest
        if p.validity is Validity.VALID:
            latest[name] = p
        else:
            cur = latest.get(name)
            if (cur is None or cur.source == src or cur.validity is not Validity.VALID
                    or t - cur.t > store._max_age.get(name, DISCRETE_MAX_AGE_S)):
                latest[name] = p
        if t > store.now:
            store.now = t
        if special and name in _UTC_NAMES:
            self.clock.observe(p)
        if t >= grid.next_t:
            store.source_now[self._top] = self._top_t
            if grid.due(t):
                self.evaluate(t)

    def _switch_source(self, src: str) -> None:
        """The parameter's source changed: keep the last one's time, look up the new one's."""
        store = self.store
        if self._src is not None:
            store.source_now[self._top] = self._top_t
        self._src = src
        self._top = top = src.split("/", 1)[0]
        self._named = store.of_source(src)
        self._top_t = store.source_now.get(top, -math.inf)

    def _flush(self) -> None:
        """After a batch: the current source's time to the store; the next batch looks it up."""
        if self._src is not None:
            self.store.source_now[self._top] = self._top_t
            self._src = None

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
