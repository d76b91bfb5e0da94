"""Domain events of the air/ground, phase and mode machines: frozen dataclasses with enum fields.

Sent by the avionics chain on its event bus (:class:`~appliance.modes.bus.EventBus`), journaled by
the store (``appliance.store.journal``). Every field is typed: ``previous``/``current`` are
:class:`Mode`, :class:`AirGround` or :class:`Phase` members (``StrEnum``: they compare equal to and
serialise as their text), ``time_source`` a :class:`TimeSource`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .airground import AirGround
from .phase import Phase
from .policy import Mode

__all__ = ["AirGroundChanged", "Event", "EventKind", "ModeChanged", "PhaseChanged", "TimeSource"]


class TimeSource(enum.StrEnum):
    """Where a UTC came from: the avionics time labels (valid and changing) or the local clock."""

    AVIONICS = "avionics"
    LOCAL = "local"


class EventKind(enum.StrEnum):
    """The kind of a chain event (also its journal row's ``kind``)."""

    MODE = "mode"
    AIR_GROUND = "airground"
    PHASE = "phase"


@dataclass(frozen=True, slots=True)
class ModeChanged:
    """The service mode changed (GROUND, FLIGHT, MAINTENANCE); also queued for the ground.

    ``previous`` is None for the first mode of a new journal.
    """

    t_card: float  #: card time, s
    utc: float  #: best-known UTC, epoch s
    time_source: TimeSource
    previous: Mode | None
    current: Mode
    evidence: dict[str, Any] = field(default_factory=dict)
    kind: EventKind = field(default=EventKind.MODE, init=False)


@dataclass(frozen=True, slots=True)
class AirGroundChanged:
    """The debounced air/ground state changed."""

    t_card: float  #: card time, s
    utc: float  #: best-known UTC, epoch s
    time_source: TimeSource
    previous: AirGround
    current: AirGround
    evidence: dict[str, Any] = field(default_factory=dict)
    kind: EventKind = field(default=EventKind.AIR_GROUND, init=False)


@dataclass(frozen=True, slots=True)
class PhaseChanged:
    """The flight phase changed."""

    t_card: float  #: card time, s
    utc: float  #: best-known UTC, epoch s
    time_source: TimeSource
    previous: Phase
    current: Phase
    evidence: dict[str, Any] = field(default_factory=dict)
    kind: EventKind = field(default=EventKind.PHASE, init=False)


Event = ModeChanged | AirGroundChanged | PhaseChanged
