"""Link policy: which streams a link may carry in the current mode, and the per-flight-hour budget.

The mode policy table (``appliance/modes/policy.toml``) says, per mode and link, ``all``,
``priority`` or ``none``; ``priority`` means the configured ``priority_streams`` only. A link
with ``bytes_per_flight_hour`` may carry at most that many bytes (request and response, headers
included) in each hour counted from take-off (the ModeChanged to FLIGHT); on the ground the hours
are counted from the epoch. Pure parts here; the state is persisted by the uplink.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..modes.policy import Mode, PolicyTable, SyncScope

__all__ = ["FlightHourBudget", "allowed_streams", "link_scope"]

HOUR_S = 3600.0


def link_scope(policy: PolicyTable, mode: Mode, link: str) -> SyncScope:
    """The policy's scope for ``link`` in ``mode`` ("none" for a link the table does not name)."""
    return policy[mode].sync.get(link, "none")


def allowed_streams(scope: SyncScope, streams: Iterable[str],
                    priority_streams: Iterable[str]) -> list[str]:
    """The streams of ``streams`` that ``scope`` lets through, in the order given.

    >>> allowed_streams("priority", ["orders", "logs", "usage"], ["orders", "usage"])
    ['orders', 'usage']
    >>> allowed_streams("none", ["orders"], ["orders"])
    []
    """
    if scope == "all":
        return list(streams)
    if scope == "priority":
        keep = set(priority_streams)
        return [s for s in streams if s in keep]
    return []


@dataclass(slots=True)
class FlightHourBudget:
    """Bytes a link may carry per flight hour.

    ``anchor`` is the take-off time (epoch s; 0.0 on the ground), ``window`` the index of the
    hour in use since the anchor, ``used`` the bytes spent in that hour.
    """

    per_hour: int
    anchor: float = 0.0
    window: int = 0
    used: int = 0

    def _roll(self, now: float) -> None:
        w = max(0, int((now - self.anchor) // HOUR_S))
        if w != self.window:
            self.window, self.used = w, 0

    def take_off(self, now: float) -> None:
        """A new flight starts at ``now``: its first hour begins with a full budget."""
        self.anchor, self.window, self.used = now, 0, 0

    def landed(self, now: float) -> None:
        """Back on the ground: hours count from the epoch again (a fresh window)."""
        self.anchor, self.window, self.used = 0.0, int(now // HOUR_S), 0

    def remaining(self, now: float) -> int:
        """Bytes still allowed in the current hour (never negative)."""
        self._roll(now)
        return max(0, self.per_hour - self.used)

    def charge(self, nbytes: int, now: float) -> None:
        """Count ``nbytes`` carried at ``now``."""
        self._roll(now)
        self.used += nbytes

    def next_window_in(self, now: float) -> float:
        """Seconds until the next hour's budget starts."""
        return HOUR_S - ((now - self.anchor) % HOUR_S)
