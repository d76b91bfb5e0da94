"""The sync's state and status shapes: the uplink's state, its counters, the status contract.

:class:`UplinkState` is a ``StrEnum``: the status and BITE output show the same text as before
(``"idle"``, ``"sending"``, ...). The status (:meth:`appliance.sync.SyncService.status`) is a
JSON object for the admin API; its shape is :class:`SyncStatus` and its parts below.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from ..modes.policy import SyncScope

__all__ = ["BudgetStatus", "DropStatus", "LinkProbe", "LinkStatus", "StreamStatus",
           "SyncNow", "SyncStatus", "TotalsStatus", "UplinkCounters", "UplinkState", "UplinkStats"]


class UplinkState(enum.StrEnum):
    """What the uplink is doing now."""

    STARTING = "starting"  #: constructed, not run yet
    DISABLED = "disabled"  #: ``sync.enabled`` is false
    NO_LINK = "no_link"  #: no link is up and open in this mode
    CONNECTING = "connecting"  #: asking the receiver's watermarks to resume from
    SENDING = "sending"  #: batches on the wire
    IDLE = "idle"  #: nothing to send
    OVER_BUDGET = "over_budget"  #: the link's flight-hour budget is spent
    BACKOFF = "backoff"  #: the link failed; waiting before the next session
    REJECTED = "rejected"  #: the receiver refused; waiting before trying again


class UplinkCounters(TypedDict):
    """The uplink's counters since start (status ``uplink``)."""

    batches: int
    batch_failures: int
    records_sent: int
    records_applied: int
    wire_bytes: int
    raw_bytes: int
    sessions: int
    last_batch_at: float | None
    last_error: str | None


@dataclass(slots=True)
class UplinkStats:
    """Counters of the uplink (since start)."""

    batches: int = 0
    batch_failures: int = 0
    records_sent: int = 0
    records_applied: int = 0
    wire_bytes: int = 0
    raw_bytes: int = 0
    sessions: int = 0
    last_batch_at: float | None = None
    last_error: str | None = None

    def as_dict(self) -> UplinkCounters:
        """The counters, for the status."""
        return UplinkCounters(
            batches=self.batches, batch_failures=self.batch_failures,
            records_sent=self.records_sent, records_applied=self.records_applied,
            wire_bytes=self.wire_bytes, raw_bytes=self.raw_bytes, sessions=self.sessions,
            last_batch_at=self.last_batch_at, last_error=self.last_error)


class LinkProbe(TypedDict):
    """A link's interfaces and the last probe of the receiver over it."""

    up: bool
    interfaces: dict[str, str]
    interface_up: bool
    probe_ok: bool
    last_probe: float | None
    last_ok: float | None
    last_error: str | None
    consecutive_failures: int


class BudgetStatus(TypedDict):
    """A budgeted link's flight-hour budget: the hour in use and its bytes."""

    bytes_per_flight_hour: int
    hour: int
    used: int
    remaining: int


class LinkStatus(LinkProbe):
    """One link in the status: probe, scope in this mode, streams it may carry, budget."""

    scope: SyncScope
    streams: list[str]
    budget: BudgetStatus | None


class DropStatus(TypedDict):
    """What the disk budget dropped of one stream."""

    records: int
    bytes: int
    last_at: float | None
    unreported_ranges: int


class StreamStatus(TypedDict):
    """One stream in the status (see :meth:`appliance.sync.SyncService.status`)."""

    priority: int | None
    depth: int
    oldest_age_s: float | None
    bytes_queued: int
    last_seq: int
    acked_seq: int
    acked_at: float | None
    drops: DropStatus
    blocked: str | None
    lost: str | None


class TotalsStatus(TypedDict):
    """The whole outbox against its disk budget."""

    depth: int
    bytes_queued: int
    budget_bytes: int
    budget_used: float
    dropped_records: int
    dropped_bytes: int
    drop_order: str


class SyncStatus(TypedDict):
    """The sync status, as the admin API shows it (keys in this order)."""

    enabled: bool
    state: UplinkState
    active_link: str | None
    mode: str
    receiver_url: str
    links: dict[str, LinkStatus]
    streams: dict[str, StreamStatus]
    totals: TotalsStatus
    uplink: UplinkCounters
    summaries: Mapping[str, object] | None  #: the summaries agents' own status, if any
    recent_events: list[dict[str, object]]
    snapshot_age_s: float | None


class SyncNow(TypedDict):
    """The answer to "sync now": requested, and the state the uplink was in."""

    requested: bool
    enabled: bool
    state: UplinkState
    active_link: str | None
