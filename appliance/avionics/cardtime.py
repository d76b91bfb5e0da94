"""The card-time agent: card timestamps checked against the host's monotonic receive time.

The card stamps every frame with its own clock (card seconds since power-up); the host notes when
the frame's bytes arrived (monotonic seconds, one receive time per read). A card cannot stamp a
time it has not reached yet and its bytes cannot arrive before they were sent, so with ``rate``
card seconds per host second (1 for a real card; N for the card simulator replaying at xN) every
frame satisfies ``host = h0 + (card - c0) / rate + delay`` with a delay >= 0, that is its
**lead** ``card - max_rate * host`` never exceeds the first frame's by more than ``max_rate`` times
the first frame's own delay. The agent keeps an **anchor** lead: the first frame's, which then
follows the accepted frames' leads by at most ``drift`` card seconds per host second (either way:
a fast or slow card clock, NTP slewing the host's), so neither a late frame nor a burst can drag
it further. A frame is accepted only if::

    lead <= anchor + max_rate * (slack_s + drift * (host - host of the anchor's last move))

``slack_s`` (host seconds) covers the first frame's receive latency, and the little the anchor
may be pulled down (``drift`` per second) while frames keep arriving late (a stalled loop). A
frame beyond that bound carries card time that the line could not have delivered yet (a burst of
frames whose stamps jump ahead of host time): it is a **jump** and must not be used, neither for
values nor for persistence in card time. However it is chunked, a burst runs at most
``max_rate * slack_s`` card seconds (plus the drift allowance) ahead of host time: 0.5 s for a
real card with the defaults, less than any persistence filter.

Verdicts (:class:`Verdict`), in the order they are decided:

- the first frame (or the first after :meth:`CardTimeCheck.reset`, called when the port is
  reopened) sets the anchor: ``FIRST``, accepted;
- card time more than ``reset_s`` behind the last accepted frame: the card restarted (its clock
  starts again from 0): ``RESET``, accepted, new anchor (the chain restarts its time base);
- within the bound: ``ACCEPT`` (the anchor moves to it if its delay is smaller);
- beyond it: ``JUMP``, rejected. Rejected frames that keep agreeing with each other at ``max_rate``
  for ``resync_s`` host seconds, with no accepted frame in between, mean the card's clock really
  moved (a card swapped without a reopen, or an anchor taken from a stale backlog): the agent
  re-anchors on them, ``RESYNC``, accepted. A burst cannot do that: it needs ``resync_s`` of host
  time, and a genuine frame in between ends the run.

Pure: no clock of its own, no I/O; feed it pairs (card s, host s) in arrival order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CARD_RESET_S", "DRIFT", "CardTimeCheck", "CardTimeConfig", "Verdict", "screen"]

#: Card time going back by more than this (card s) is a card reset, not jitter.
CARD_RESET_S = 5.0
#: How fast the card's clock and the host's monotonic clock may drift apart (s per s): a quartz
#: is within 100 ppm and NTP slews the host's clock by up to 500 ppm.
DRIFT = 1e-3


class Verdict(enum.Enum):
    """What the agent decided about one frame's card time."""

    FIRST = "first"  #: first frame since start/reopen: anchor set, accepted
    ACCEPT = "accept"  #: within the bound
    RESET = "reset"  #: card clock went back more than reset_s: new anchor, accepted
    JUMP = "jump"  #: beyond the bound: rejected
    RESYNC = "resync"  #: rejected frames agreed for resync_s: new anchor, accepted

    @property
    def accepted(self) -> bool:
        """True if the frame may be used."""
        return self is not Verdict.JUMP


@dataclass(frozen=True, slots=True)
class CardTimeConfig:
    """Bounds of the card-time check.

    ``max_rate``: card seconds per host second at most (1.0 for a real card; at least the speed
    of a replay through the serial line). ``slack_s``: host seconds of allowance (the anchor's
    latency, drift). ``resync_s``: host seconds of self-consistent rejected frames before the agent
    re-anchors on them. ``reset_s``: card seconds back that mean a card reset.
    """

    max_rate: float = 1.0
    slack_s: float = 0.5
    resync_s: float = 5.0
    reset_s: float = CARD_RESET_S
    drift: float = DRIFT

    def __post_init__(self) -> None:
        """Raises ValueError on a non-positive rate or a negative allowance."""
        if not self.max_rate > 0:
            raise ValueError(f"max_rate must be > 0, not {self.max_rate}")
        if min(self.slack_s, self.resync_s, self.reset_s, self.drift) < 0:
            raise ValueError("slack_s, resync_s, reset_s and drift must be >= 0")


class CardTimeCheck:
    """The card-time agent: :meth:`check` each frame's (card s, host s); see the module doc."""

    def __init__(self, config: CardTimeConfig = CardTimeConfig()) -> None:
        """No anchor until the first frame."""
        self.config = config
        self._anchor: tuple[float, float] | None = None  # (lead = card - max_rate * host, host)
        self._last_card = 0.0
        self._run: tuple[float, float, float] | None = None  # rejected run: (lead, host, card)
        #: Card seconds the last rejected frame was ahead of the bound (0 while accepting).
        self.ahead_s = 0.0

    @property
    def rejecting(self) -> bool:
        """True while the latest frame was rejected (a jump is going on)."""
        return self._run is not None

    def reset(self) -> None:
        """Forget the anchor (the port was reopened: the next frame anchors afresh)."""
        self._anchor = None
        self._run = None
        self.ahead_s = 0.0

    def _allowance(self, since: float, host: float) -> float:
        """Card seconds a frame may lead an anchor set at host time ``since``."""
        cfg = self.config
        return cfg.max_rate * (cfg.slack_s + cfg.drift * max(0.0, host - since))

    def _take(self, card: float, host: float, verdict: Verdict) -> Verdict:
        """Accept: the anchor follows this frame's lead by at most the drift allowance."""
        lead = card - self.config.max_rate * host
        a = self._anchor
        if a is None or verdict is Verdict.RESET:
            self._anchor = (lead, host)
        else:
            step = self.config.max_rate * self.config.drift * max(0.0, host - a[1])
            self._anchor = (min(max(lead, a[0] - step), a[0] + step), max(host, a[1]))
        self._last_card = card
        self._run = None
        self.ahead_s = 0.0
        return verdict

    def check(self, card: float, host: float) -> Verdict:
        """The verdict on a frame stamped ``card`` (card s) that arrived at ``host`` (monotonic s)."""
        cfg = self.config
        if self._anchor is None:
            return self._take(card, host, Verdict.FIRST)
        if card < self._last_card - cfg.reset_s:
            return self._take(card, host, Verdict.RESET)
        lead = card - cfg.max_rate * host
        anchor_lead, anchor_host = self._anchor
        over = lead - anchor_lead - self._allowance(anchor_host, host)
        if over <= 0:
            return self._take(card, host, Verdict.ACCEPT)
        self.ahead_s = over
        run = self._run
        if run is not None and card >= run[2] - cfg.reset_s \
                and lead <= run[0] + self._allowance(run[1], host):
            if host - run[1] >= cfg.resync_s:
                self._anchor = run[:2]
                return self._take(card, host, Verdict.RESYNC)
        else:
            self._run = (lead, host, card)
        return Verdict.JUMP


def screen(check: CardTimeCheck, frames: Iterable[tuple[float, float]]) -> list[Verdict]:
    """The verdict on each (card s, host s) pair, in order (plain lists in, plain list out)."""
    return [check.check(card, host) for card, host in frames]
