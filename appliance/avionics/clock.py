"""Best-known UTC: from the avionics time labels when valid and changing, else the local clock.

The avionics give UTC as label 150 (seconds of the day, 1 s resolution) and label 260 (date). A
label that is valid but frozen is not trusted (as Honeywell's ASPIRE-400 re-syncs only from a
*changing* time label). On each change the clock records ``offset = utc - card_time``; UTC at card
time ``t`` is then ``t + offset`` while the last change is at most ``max_silence_s`` old.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Final

from ..modes.events import TimeSource
from .params import Parameter

__all__ = ["AVIONICS", "LOCAL", "UtcClock"]

AVIONICS: Final = TimeSource.AVIONICS
LOCAL: Final = TimeSource.LOCAL


class UtcClock:
    """The UTC agent: feed it ``utc_time``/``utc_date`` parameters, ask it for UTC at a card time."""

    def __init__(self, max_silence_s: float = 5.0, local: Callable[[], float] = time.time) -> None:
        """``local`` is the fallback clock (epoch s); ``max_silence_s`` bounds trust after a change."""
        self.max_silence_s = max_silence_s
        self._local = local
        self._date: dt.date | None = None
        self._last_seconds: int | None = None
        self._offset: float | None = None
        self._changed_at: float | None = None

    def observe(self, p: Parameter) -> None:
        """Take a ``utc_date`` or ``utc_time`` parameter; invalid ones are ignored."""
        if not p.valid:
            return
        if p.name == "utc_date":
            self._date = dt.date.fromisoformat(str(p.value))
        elif p.name == "utc_time" and self._date is not None:
            seconds = int(p.value)
            if self._last_seconds is not None and seconds != self._last_seconds:
                midnight = dt.datetime.combine(self._date, dt.time(), dt.UTC).timestamp()
                self._offset = midnight + seconds - p.t
                self._changed_at = p.t
            self._last_seconds = seconds

    def synced(self, t: float) -> bool:
        """True if UTC at card time ``t`` comes from the avionics."""
        return self._changed_at is not None and 0 <= t - self._changed_at <= self.max_silence_s

    def at(self, t: float) -> float:
        """UTC (epoch s) at any card time ``t``, past ones too, from the latest avionics offset.

        The local clock if the avionics never gave UTC.
        """
        return t + self._offset if self._offset is not None else self._local()

    def utc(self, t: float) -> tuple[float, TimeSource]:
        """UTC (epoch s) at card time ``t`` (s) and its source, ``"avionics"`` or ``"local"``."""
        if self._offset is not None and self.synced(t):
            return t + self._offset, AVIONICS
        return self._local(), LOCAL
