"""The flight profile agent: altitude, speeds and WOW against time, with mode/phase and transitions.

It samples the chain every ``every_s`` seconds of card time (so a replay at any speed gives the same
profile) into a bounded buffer (``max_points``: at 5 s, 4000 points hold 5.5 hours), and keeps the
recent mode, air/ground and phase changes with their evidence. The admin dashboard draws it.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any

from ..modes.events import Event
from .chain import AvionicsChain

__all__ = ["FlightProfile"]

_SERIES = ("pressure_altitude", "computed_airspeed", "ground_speed")


class FlightProfile:
    """Samples of the current and recent flights, and their transitions."""

    def __init__(self, chain: AvionicsChain, every_s: float = 5.0, max_points: int = 4000) -> None:
        """Attach to ``chain`` (a tick and an event subscriber); :meth:`close` detaches."""
        self.chain = chain
        self.every_s = every_s
        self.points: collections.deque[tuple[Any, ...]] = collections.deque(maxlen=max_points)
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)
        self._window: int | None = None
        self._unsubscribe = (chain.on_tick(self.sample), chain.subscribe(self.on_event))

    def close(self) -> None:
        """Stop sampling and listening."""
        for unsub in self._unsubscribe:
            unsub()

    def sample(self, t: float) -> None:
        """Take one point at the first tick of each ``every_s`` of the card's clock."""
        window = math.floor(t / self.every_s)
        if window == self._window:
            return
        self._window = window
        c = self.chain
        store = c.store
        utc, _ = c.clock.utc(t)
        wow = [store.value(n, t) for n in ("wow_left", "wow_right")]
        self.points.append((round(utc, 2), *(store.value(n, t) for n in _SERIES),
                            *(None if w is None else bool(w) for w in wow),
                            str(c.mode), str(c.phase.phase), str(c.ag.state)))

    def on_event(self, ev: Event) -> None:
        """Keep a transition with its evidence."""
        self.events.append(dataclasses.asdict(ev))

    def view(self) -> dict[str, Any]:
        """Columns of the samples and the transitions (UTC epoch s; ft, kt; WOW true = on ground)."""
        cols = ("utc", "altitude_ft", "computed_airspeed_kt", "ground_speed_kt", "wow_left",
                "wow_right", "mode", "phase", "air_ground")
        pts = list(self.points)
        return {"every_s": self.every_s,
                "series": {name: [p[i] for p in pts] for i, name in enumerate(cols)},
                "transitions": list(self.events)}
