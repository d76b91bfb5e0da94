"""Domain events of the cabin network (frozen dataclasses): what the status shows and tests watch."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CabinEvent", "DeviceStateChanged", "JobFinished", "ModeApplied"]


@dataclass(frozen=True, slots=True)
class DeviceStateChanged:
    """An access point's state changed; ``reason`` in words; ``at`` epoch s.

    States: unknown, ok, converging, held, unreachable, not_ready, needs_attention.
    """

    device: str
    previous: str | None
    current: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A job reached a terminal state (done, failed, stale, needs_attention)."""

    job_id: int
    device: str
    kind: str
    key: str
    state: str
    failure: str | None
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class ModeApplied:
    """The manager took a new mode: its desired configuration is now reconciled everywhere."""

    previous: str
    current: str
    at: float


CabinEvent = DeviceStateChanged | JobFinished | ModeApplied
