"""Settings of the air/ground sync (``[sync]`` and its links, read by :mod:`appliance.settings`).

Kept apart from :mod:`appliance.settings` only for size; :class:`~appliance.settings.Settings` holds
them as ``sync`` (environment ``APPLIANCE_SYNC__...``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["LinkSettings", "SyncSettings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkSettings(_Section):
    """One air/ground link (its name is a ``sync`` key of the mode policy: gatelink, satcom).

    The link is up when one of ``interfaces`` is operationally up (``/sys/class/net/IF/operstate``
    "up", or "unknown" as loopback and tunnels report) and a probe of the receiver answers; with no
    interfaces listed the probe alone decides. ``bytes_per_flight_hour`` caps what the link may
    carry (request and response bytes, headers included) in each hour since take-off; None is no cap.
    ``bind_device`` pins the link's sockets to the up interface (SO_BINDTODEVICE, needs
    CAP_NET_RAW); otherwise the routing table chooses. ``rate_bps``: the link's known rate (bits/s):
    its sockets are paced just under it (no modem queue overflow, no idle after tail drops).
    """

    interfaces: tuple[str, ...] = ()
    receiver_url: str | None = None
    bind_device: bool = False
    bytes_per_flight_hour: int | None = Field(None, gt=0)
    rate_bps: int | None = Field(None, gt=0)


class SyncSettings(_Section):
    """Outbound sync: the outbox's disk budget, the uplink to the ground receiver, summaries.

    Sizes in bytes, times in seconds. ``links`` are tried in order; the first one that is up and
    that the current mode's policy opens carries the traffic. ``priority_streams`` are the
    streams a link whose policy says "priority" may carry. Drop order when the outbox exceeds
    ``outbox_budget_bytes``: lowest priority first, oldest first within it, down to
    ``budget_low_water`` of the budget; ``never_drop`` streams are never dropped.
    """

    enabled: bool = False
    receiver_url: str = "http://127.0.0.1:8443"
    token: SecretStr | None = None  # legacy: used only without a signing_key_file
    signing_key_file: Path | None = None  # Ed25519 key (PEM) signing requests (sync.identity)
    ground_public_key: str | None = None  # base64 Ed25519 key of downlink documents (sync.downlink)
    links: dict[str, LinkSettings] = Field(default_factory=lambda: {
        "gatelink": LinkSettings(interfaces=("wlan0", "wwan0")),
        "satcom": LinkSettings(interfaces=("sat0",), bytes_per_flight_hour=2_000_000)})
    priority_streams: tuple[str, ...] = ("orders", "order_status", "usage", "events", "audit",
                                         "flight_track", "flight_health")
    outbox_budget_bytes: int = Field(256 * 1024 * 1024, gt=0)
    budget_low_water: float = Field(0.9, gt=0, le=1)
    never_drop: tuple[str, ...] = ("orders", "order_status", "usage", "events", "audit")
    budget_check_s: float = Field(10.0, gt=0)
    batch_max_records: int = Field(5000, ge=1)
    batch_max_bytes: int = Field(1_000_000, ge=1024)
    zstd_level: int = Field(6, ge=1, le=19)
    #: Batches on the wire at once: the next starts as soon as the previous body is sent, so
    #: the link carries it while the receiver commits (1 on links with a byte budget).
    pipeline_depth: int = Field(2, ge=1, le=4)
    connect_timeout_s: float = Field(5.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    retry_attempts: int = Field(6, ge=1)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    probe_interval_s: float = Field(10.0, gt=0)
    status_refresh_s: float = Field(5.0, gt=0)
    summaries: bool = True
    #: The summaries' sample period, in card (avionics) seconds: a replay samples the same.
    sample_period_s: float = Field(1.0, gt=0)
    track_period_s: float = Field(30.0, gt=0)
    track_turn_deg: float = Field(15.0, gt=0)
    track_points_per_record: int = Field(20, ge=1)
