"""One time base for several sources: each source's time mapped onto the chain's.

The serial card stamps frames with its own clock (microseconds since it powered up), CAN messages
carry the bus receive time; one :class:`~appliance.avionics.chain.AvionicsChain` needs one time
base for persistence, staleness and the evaluation grid. :class:`TimeBase` gives each source an
offset, fixed when its first parameter arrives: the source's time then is the chain's latest time
(``now()``), so the first source keeps its own time (offset 0) and the others join it. A source
whose own clock goes back by more than ``reset_s`` (a card reset) is re-anchored the same way, so the
chain's time never goes back. The offset of a source that falls silent and comes back is kept: its
clock ran on meanwhile, as the chain's did.

Sources are named hierarchically (``card/sdi1``, ``can/node2``): the offset belongs to the top
name (the physical source and its clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .cardtime import CARD_RESET_S
from .params import Parameter

__all__ = ["TimeBase"]


class TimeBase:
    """Maps each source's parameter times onto the chain's time base (see the module doc)."""

    def __init__(self, now: Callable[[], float], reset_s: float = CARD_RESET_S) -> None:
        """``now()`` is the chain's latest time (s; 0 before any data)."""
        self._now = now
        self.reset_s = reset_s
        #: source -> (offset s, latest own time s)
        self.offsets: dict[str, tuple[float, float]] = {}
        self.reanchors = 0

    def align(self, source: str, params: list[Parameter]) -> list[Parameter]:
        """``params`` of ``source`` with ``t`` on the chain's time base (same order)."""
        if not params:
            return params
        top = source.split("/", 1)[0]
        state = self.offsets.get(top)
        out = []
        for p in params:
            if state is None or p.t < state[1] - self.reset_s:
                now = self._now()
                state = (now - p.t if now > 0 else 0.0, p.t)
                if top in self.offsets:
                    self.reanchors += 1
            else:
                state = (state[0], max(state[1], p.t))
            self.offsets[top] = state
            out.append(p if state[0] == 0.0 else replace(p, t=p.t + state[0]))
        return out
