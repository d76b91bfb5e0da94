"""Domain events of the mode engine: frozen dataclasses, journaled by the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["AirGroundChanged", "Event", "ModeChanged", "PhaseChanged", "TimeSource"]


class TimeSource(StrEnum):
    """Where a best-known UTC came from: avionics GPS time (valid and changing), else the host."""

    AVIONICS = "avionics"
    LOCAL = "local"


@dataclass(frozen=True, slots=True)
class _Base:
    t_card: float  #: card time, s
    utc: float  #: best-known UTC, epoch s
    time_source: str  #: a :class:`TimeSource` value, "avionics" or "local"
    previous: str | None
    current: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModeChanged(_Base):
    """The service mode changed (GROUND, FLIGHT, MAINTENANCE); also queued for the ground."""

    kind: str = "mode"


@dataclass(frozen=True, slots=True)
class AirGroundChanged(_Base):
    """The debounced air/ground state changed."""

    kind: str = "airground"


@dataclass(frozen=True, slots=True)
class PhaseChanged(_Base):
    """The flight phase changed."""

    kind: str = "phase"


Event = ModeChanged | AirGroundChanged | PhaseChanged
