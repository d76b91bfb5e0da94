"""One time base for several sources: each source's own time mapped onto the chain's.

The serial card stamps frames with its own clock (microseconds since it powered up), CAN messages
carry the bus receive time; one :class:`~appliance.avionics.chain.AvionicsChain` needs one time
base for persistence, staleness and the evaluation grid. :class:`TimeBase` gives each source an
offset (its time + offset = chain time):

- The first source to deliver is the reference: offset 0 (or, if the chain already has data, the
  chain's latest time minus its time).
- Another source joins on **avionics time**: both it and the reference send UTC (ARINC label 150,
  CANaerospace 1200). When each has shown its UTC seconds change once, the source's time at which
  a given UTC second began is known on both clocks, and the offset follows (to the resolution of
  the time labels' rate, the same on both). Until then its parameters are held back (counted in
  ``held``); after ``join_s`` of its own time without UTC on either side, it joins on arrival
  instead (its first parameter is "now" on the chain).
- A source whose own clock goes back by more than ``reset_s`` (a card reset) is re-anchored on
  arrival, so the chain's time never goes back.

Sources are named hierarchically (``card/sdi1``, ``can/node2``): the offset belongs to the top
name (the physical source and its clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .cardtime import CARD_RESET_S
from .params import Parameter

__all__ = ["JOIN_S", "TimeBase"]

#: Own seconds a source waits for UTC before it joins on arrival.
JOIN_S = 5.0
_DAY = 86400.0


@dataclass(slots=True)
class _Clock:
    first_t: float
    latest_t: float
    offset: float | None = None  #: None: not joined yet
    utc_minus_t: float | None = None  #: UTC second of day minus own time, at a second's change
    last_second: int | None = None


class TimeBase:
    """Maps each source's parameter times onto the chain's time base (see the module doc)."""

    def __init__(self, now: Callable[[], float], reset_s: float = CARD_RESET_S,
                 join_s: float = JOIN_S) -> None:
        """``now()`` is the chain's latest time (s; 0 before any data)."""
        self._now = now
        self.reset_s = reset_s
        self.join_s = join_s
        self.clocks: dict[str, _Clock] = {}
        self.reference: str | None = None
        self.held = 0  #: parameters held back while a source waited to join
        self.reanchors = 0
        #: source -> how it joined: "reference", "utc", "arrival"
        self.joined: dict[str, str] = {}

    def offset(self, source: str) -> float | None:
        """The offset (s) of ``source`` (its top name), None until it has joined."""
        c = self.clocks.get(source.split("/", 1)[0])
        return None if c is None else c.offset

    def align(self, source: str, params: list[Parameter]) -> list[Parameter]:
        """``params`` of ``source`` with ``t`` on the chain's time base, in order; held ones dropped."""
        if not params:
            return params
        top = source.split("/", 1)[0]
        out = []
        for p in params:
            c = self.clocks.get(top)
            if c is None:
                c = self.clocks[top] = _Clock(p.t, p.t)
                if self.reference is None:
                    self.reference = top
                    now = self._now()
                    c.offset = now - p.t if now > 0 else 0.0
                    self.joined[top] = "reference"
            elif p.t < c.latest_t - self.reset_s:  # own clock went back: a reset
                c.first_t = c.latest_t = p.t
                c.offset = self._now() - p.t
                c.utc_minus_t = c.last_second = None
                self.reanchors += 1
            c.latest_t = max(c.latest_t, p.t)
            if p.name == "utc_time" and p.valid and isinstance(p.value, int):
                if c.last_second is not None and p.value != c.last_second:
                    c.utc_minus_t = c.utc_minus_t if c.utc_minus_t is not None else p.value - p.t
                c.last_second = p.value
            if c.offset is None and not self._join(top, c, p.t):
                self.held += 1
                continue
            off = c.offset
            assert off is not None
            out.append(p if off == 0.0 else p._replace(t=p.t + off))
        return out

    def _join(self, top: str, c: _Clock, t: float) -> bool:
        ref = self.clocks.get(self.reference or "")
        if ref is not None and ref.offset is not None and None not in (
                c.utc_minus_t, ref.utc_minus_t):
            assert c.utc_minus_t is not None and ref.utc_minus_t is not None
            # UTC is a second of the day: the two may have been learnt across midnight, so take
            # the whole-day shift that lands nearest arrival time.
            diff = c.utc_minus_t - ref.utc_minus_t + ref.offset
            rough = self._now() - t
            c.offset = diff + round((rough - diff) / _DAY) * _DAY
            self.joined[top] = "utc"
            return True
        if t - c.first_t >= self.join_s:
            c.offset = self._now() - t
            self.joined[top] = "arrival"
            return True
        return False
