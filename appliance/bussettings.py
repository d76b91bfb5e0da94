"""Settings of the avionics sources and the air/ground logic (``[serial]``, ``[can]``, ``[airground]``).

Kept apart from :mod:`appliance.settings` only for size; :class:`~appliance.settings.Settings` holds
them as ``serial``, ``can`` and ``airground`` (and re-exports the classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AirGroundSettings", "CanSettings", "SerialSettings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialSettings(_Section):
    """The avionics interface card on a serial line (or pty).

    Card time is checked against the host's monotonic receive time (appliance.avionics.cardtime):
    a frame is used only if its card time is at most ``max_card_time_rate`` card seconds per host
    second (plus ``card_time_slack_s`` host seconds) ahead of the best-placed frame seen. 1.0 is a
    real card; a card simulator replaying onto the line at xN needs at least N (``appliance demo``
    raises it to its ``--speed``). Rejected frames that agree with each other for
    ``card_time_resync_s`` host seconds become the new time base.
    """

    enabled: bool = True
    port: str = "var/card"
    baudrate: int = 921600
    label_reversed: bool = True
    reconnect_s: float = Field(0.5, gt=0)
    channel_name: str = "card"
    #: Card seconds per host second at most (1.0: real card; >= the replay speed of a simulator).
    max_card_time_rate: float = Field(1.0, gt=0)
    #: Host seconds of allowance for the receive latency of the reference frame and clock drift.
    card_time_slack_s: float = Field(0.5, ge=0)
    #: Host seconds of self-consistent rejected frames before they become the new time base.
    card_time_resync_s: float = Field(5.0, ge=0)


class CanSettings(_Section):
    """The CAN bus, through python-can (``interface`` and ``channel`` as python-can takes them)."""

    enabled: bool = False
    interface: str = "virtual"
    channel: str = "cabin"
    bitrate: int = 500000
    #: Name of the source (its parameters' ``source``, plus ``/nodeN`` for CANaerospace units).
    channel_name: str = "can"
    #: The identifiers on the bus: ARINC 825 29-bit ("arinc825"), CANaerospace 11-bit
    #: ("canaerospace"), the integration's airground.dbc ("integration") or all of them ("any");
    #: see appliance.avionics.can_source. Frames of another profile count as unknown.
    profile: Literal["arinc825", "canaerospace", "integration", "any"] = "arinc825"
    #: A DBC replacing the shipped ones of ``profile``; None: shipped.
    dbc: Path | None = None
    #: Avionics seconds per second of message time: 1.0 on a real bus; a simulator playing at xN
    #: onto a bus stamped with receive time (udp_multicast, SocketCAN) needs N.
    time_rate: float = Field(1.0, gt=0)
    #: Where parameter time comes from: the message stamp ("receive") or the avionics UTC on the
    #: bus plus the stamp since it ("utc"; see appliance.avionics.can_source).
    time_source: Literal["receive", "utc"] = "receive"
    #: SO_RCVBUF of the bus's socket (SocketCAN, udp_multicast), bytes (capped by the kernel's
    #: net.core.rmem_max); None: the kernel default. Bursts beyond it are lost.
    receive_buffer_bytes: int | None = Field(None, gt=0)


class AirGroundSettings(_Section):
    """Air/ground persistence (s), plausibility limits (kt), redundancy.

    Redundancy: per-input debounce of discretes (s), and the tolerances between redundant sources
    (kt, ft) beyond which neither is trusted.
    """

    to_air_s: float = Field(2.0, ge=0)
    to_ground_s: float = Field(3.0, ge=0)
    min_air_cas_kt: float = 60.0
    min_air_gs_kt: float = 50.0
    max_ground_cas_kt: float = 200.0
    max_ground_gs_kt: float = 250.0
    discrete_debounce_s: float = Field(0.5, ge=0)
    cas_tolerance_kt: float = Field(25.0, gt=0)
    gs_tolerance_kt: float = Field(25.0, gt=0)
    altitude_tolerance_ft: float = Field(500.0, gt=0)
