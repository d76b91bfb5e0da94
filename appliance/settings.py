"""Settings: the one reader of config files and environment (pydantic-settings).

Sources, highest first: environment variables ``APPLIANCE_<FIELD>`` (nested with ``__``, for
example ``APPLIANCE_SERIAL__PORT``), then the TOML file given by ``--config`` or
``APPLIANCE_CONFIG``, then the defaults below. Unknown keys are rejected. :func:`load_settings`
raises :class:`~appliance.errors.ConfigError` with a readable message on any problem.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = ["AirGroundSettings", "CanSettings", "LinkSettings", "Listen", "SerialSettings",
           "Settings", "SyncSettings", "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Section):
    """Where a web server binds: address and TCP port."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class SerialSettings(_Section):
    """The avionics interface card on a serial line (or pty)."""

    enabled: bool = True
    port: str = "var/card"
    baudrate: int = 921600
    label_reversed: bool = True
    reconnect_s: float = Field(0.5, gt=0)
    channel_name: str = "card"


class CanSettings(_Section):
    """The CAN bus, through python-can (``interface`` and ``channel`` as python-can takes them)."""

    enabled: bool = False
    interface: str = "virtual"
    channel: str = "cabin"
    bitrate: int = 500000


class AirGroundSettings(_Section):
    """Air/ground persistence (s) and plausibility limits (kt)."""

    to_air_s: float = Field(2.0, ge=0)
    to_ground_s: float = Field(3.0, ge=0)
    min_air_cas_kt: float = 60.0
    min_air_gs_kt: float = 50.0
    max_ground_cas_kt: float = 200.0
    max_ground_gs_kt: float = 250.0


class LinkSettings(_Section):
    """One air/ground link (its name is a ``sync`` key of the mode policy: gatelink, satcom).

    The link is up when one of ``interfaces`` is operationally up (``/sys/class/net/IF/operstate``
    "up", or "unknown" as loopback and tunnels report) and a probe of the receiver answers; with no
    interfaces listed the probe alone decides. ``bytes_per_flight_hour`` caps what the link may
    carry (request and response bytes, headers included) in each hour since take-off; None is no cap.
    ``bind_device`` pins the link's sockets to the up interface (SO_BINDTODEVICE, needs
    CAP_NET_RAW); otherwise the routing table chooses.
    """

    interfaces: tuple[str, ...] = ()
    receiver_url: str | None = None
    bind_device: bool = False
    bytes_per_flight_hour: int | None = Field(None, gt=0)


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
    token: SecretStr | None = None
    links: dict[str, LinkSettings] = Field(default_factory=lambda: {
        "gatelink": LinkSettings(interfaces=("wlan0", "wwan0")),
        "satcom": LinkSettings(interfaces=("sat0",), bytes_per_flight_hour=2_000_000)})
    priority_streams: tuple[str, ...] = ("orders", "usage", "events", "audit")
    outbox_budget_bytes: int = Field(256 * 1024 * 1024, gt=0)
    budget_low_water: float = Field(0.9, gt=0, le=1)
    never_drop: tuple[str, ...] = ("orders", "usage", "events", "audit")
    budget_check_s: float = Field(10.0, gt=0)
    batch_max_records: int = Field(5000, ge=1)
    batch_max_bytes: int = Field(1_000_000, ge=1024)
    zstd_level: int = Field(6, ge=1, le=19)
    pipeline: bool = True
    connect_timeout_s: float = Field(5.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    retry_attempts: int = Field(6, ge=1)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(30.0, gt=0)
    probe_interval_s: float = Field(10.0, gt=0)
    status_refresh_s: float = Field(5.0, gt=0)
    summaries: bool = True
    sample_period_s: float = Field(1.0, gt=0)
    track_period_s: float = Field(30.0, gt=0)
    track_turn_deg: float = Field(15.0, gt=0)
    track_points_per_record: int = Field(20, ge=1)


class AdminUser(_Section):
    """One admin user: name, role (crew reads; maintenance also acts), argon2 password hash.

    Make a hash with ``appliance hash-password``.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Literal["crew", "maintenance"]
    password_hash: str = Field(pattern=r"^\$argon2")


class AdminAuthSettings(_Section):
    """Sessions and throttling of the admin port."""

    session_ttl_s: float = Field(8 * 3600, gt=0)
    max_failures: int = Field(5, ge=1)
    failure_window_s: float = Field(300, gt=0)
    lockout_s: float = Field(300, gt=0)


class Settings(BaseSettings):
    """All settings of the service. Paths are relative to the working directory."""

    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    aircraft_id: str = "F-TEST"
    data_dir: Path = Path("var")
    passenger: Listen = Listen(host="127.0.0.1", port=8080)
    admin: Listen = Listen(host="127.0.0.1", port=8081)
    #: A service token with the maintenance role (for tools and the ``status`` command).
    admin_token: SecretStr | None = None
    admin_users: list[AdminUser] = []
    admin_auth: AdminAuthSettings = AdminAuthSettings()
    serial: SerialSettings = SerialSettings()
    can: CanSettings = CanSettings()
    airground: AirGroundSettings = AirGroundSettings()
    sync: SyncSettings = SyncSettings()
    #: Test-only switch for the power-cut harness; FULL is the only setting that keeps the promise.
    journal_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source_lost_s: float = Field(2.0, gt=0)
    #: Time budget of the journal's integrity check at start (s).
    integrity_budget_s: float = Field(10.0, gt=0)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the config file (passed as init values)."""
        return env_settings, init_settings

    @model_validator(mode="after")
    def _one_time_base(self) -> Settings:
        # Serial parameters carry the card's clock, CAN ones the bus receive time: one chain has
        # one time base for persistence and staleness, so one primary avionics source at a time.
        if self.serial.enabled and self.can.enabled:
            raise ValueError("enable either serial or can as the avionics source, not both")
        return self

    @property
    def journal_path(self) -> Path:
        """The journal database file."""
        return self.data_dir / "journal.db"


def load_settings(config: str | os.PathLike[str] | None = None) -> Settings:
    """Read the TOML file ``config`` (or ``$APPLIANCE_CONFIG``) and the environment.

    Raises ConfigError naming the file and every bad key.
    """
    path = config or os.environ.get("APPLIANCE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
    try:
        return Settings(**data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n" + "\n".join(lines)) from e
