"""The read-only flight state the features see: mode, air/ground, phase, UTC, and ``subscribe()``.

:class:`FlightState` is a Protocol: the avionics chain (``appliance.avionics.chain.AvionicsChain``)
implements it, features (sync, content, intake, cabin) and the web edge depend only on it, so they
never import the avionics. :class:`FlightSnapshot` is one immutable reading of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .airground import AirGround
from .bus import Unsubscribe
from .events import Event, TimeSource
from .phase import Phase
from .policy import Mode

__all__ = ["FlightSnapshot", "FlightState"]


@dataclass(frozen=True, slots=True)
class FlightSnapshot:
    """One reading of the flight state: ``card_time`` in s, ``utc`` in epoch s with its source."""

    mode: Mode
    air_ground: AirGround
    phase: Phase
    card_time: float
    utc: float
    time_source: TimeSource


class FlightState(Protocol):
    """What a feature may know of the flight, read-only, plus change notifications."""

    @property
    def mode(self) -> Mode:
        """The service mode now."""
        ...

    def utc(self) -> tuple[float, TimeSource]:
        """Best-known UTC now (epoch s) and its source."""
        ...

    def subscribe(self, target: Callable[[Event], None]) -> Unsubscribe:
        """Call ``target`` with every mode, air/ground and phase change; returns the unsubscribe."""
        ...

    def snapshot(self) -> FlightSnapshot:
        """Mode, air/ground, phase and UTC now, as one immutable value."""
        ...
