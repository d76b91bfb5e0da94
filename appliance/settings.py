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

from .bussettings import AirGroundSettings, CanSettings, SerialSettings
from .errors import ConfigError
from .intakesettings import IntakeRole, IntakeSettings
from .netsettings import CabinNetSettings
from .syncsettings import LinkSettings, SyncSettings

__all__ = ["AccessPointSettings", "AirGroundSettings", "CabinNetworkSettings", "CanSettings",
           "EdgeSettings", "IntakeRole", "IntakeSettings", "LinkSettings", "Listen", "OrdersSettings",
           "PortLimits", "SerialSettings", "Settings", "SyncSettings", "WapConfigSettings",
           "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Section):
    """Where a web server binds: address and TCP port."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)




class AccessPointSettings(_Section):
    """One cabin Wi-Fi access point: inventory name, driver, address, credentials.

    ``driver``: ``http-json`` (the real device's HTTP JSON API at ``url``) or ``sim`` (its
    simulated twin, in this process; ``url`` is then only a label).
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    driver: Literal["http-json", "sim"] = "http-json"
    url: str = Field("http://127.0.10.1:8080", pattern=r"^https?://")
    user: str = Field("admin", min_length=1, max_length=64)
    password: SecretStr


class WapConfigSettings(_Section):
    """A desired access point configuration (partial: fields left out are not managed).

    ``channel`` an IEEE channel number the access points support (1-13, 36-64, 100-144,
    149-165, in steps of 4 on 5 GHz); ``tx_power_dbm`` 0..30; ``ssids`` name -> broadcast on/off;
    ``mgmt_allow`` CIDRs allowed to manage the device.
    """

    radio_on: bool | None = None
    channel: int | None = None
    tx_power_dbm: int | None = Field(None, ge=0, le=30)
    ssids: dict[str, bool] = Field(default_factory=dict)
    mgmt_allow: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _valid(self) -> WapConfigSettings:
        from .cabin.model import ConfigSpec  # the one definition of what a device accepts

        ConfigSpec.from_json(self.model_dump(exclude_none=True))
        return self


def _default_desired() -> dict[Literal["GROUND", "FLIGHT", "MAINTENANCE"], WapConfigSettings]:
    return {
        "GROUND": WapConfigSettings(radio_on=True, channel=36, tx_power_dbm=12,
                                    ssids={"CREW": True, "PAX": True}),
        "FLIGHT": WapConfigSettings(radio_on=True, channel=44, tx_power_dbm=17,
                                    ssids={"CREW": True, "PAX": True}),
        "MAINTENANCE": WapConfigSettings(radio_on=True, channel=36, tx_power_dbm=12,
                                         ssids={"CREW": True, "PAX": False, "MAINT": True}),
    }


class CabinNetworkSettings(_Section):
    """The cabin Wi-Fi access points and how they are managed (appliance.cabin). Times in s.

    ``desired``: per mode, the configuration every access point is kept in (reconciled
    continuously); a mode left out is not reconciled. Polls every ``poll_interval_s``; a device is
    unreachable after ``unreachable_after`` polls in a row without an answer. A change is
    committed with ``confirm_timeout_s``: the device rolls it back by itself unless it is
    confirmed in time (after a reachability check over a new session). A job is tried up to
    ``retry_attempts`` times within ``job_deadline_s`` (backoff ``retry_initial_s`` doubling to
    ``retry_max_s``); queued jobs older than ``job_stale_after_s`` become stale. After a failed
    reconcile job the next waits ``reconcile_backoff_s`` doubling to ``reconcile_backoff_max_s``;
    an admin apply holds reconciliation off the device for ``admin_hold_s`` unless it says
    otherwise. BITE turns amber when a reachable device is not in the mode's configuration after
    ``converge_grace_s``.
    """

    enabled: bool = False
    access_points: list[AccessPointSettings] = Field(default_factory=list)
    desired: dict[Literal["GROUND", "FLIGHT", "MAINTENANCE"], WapConfigSettings] = Field(
        default_factory=_default_desired)
    poll_interval_s: float = Field(10.0, gt=0)
    unreachable_after: int = Field(3, ge=1)
    connect_timeout_s: float = Field(2.0, gt=0)
    request_timeout_s: float = Field(5.0, gt=0)
    confirm_timeout_s: float = Field(30.0, gt=0)
    retry_attempts: int = Field(6, ge=1)
    retry_initial_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(15.0, gt=0)
    job_deadline_s: float = Field(300.0, gt=0)
    reboot_wait_s: float = Field(180.0, gt=0)
    job_stale_after_s: float = Field(3600.0, gt=0)
    reconcile_backoff_s: float = Field(10.0, gt=0)
    reconcile_backoff_max_s: float = Field(600.0, gt=0)
    admin_hold_s: float = Field(900.0, ge=0)
    converge_grace_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> CabinNetworkSettings:
        names = [ap.name for ap in self.access_points]
        if len(set(names)) != len(names):
            raise ValueError("access point names must be unique")
        return self


class ContentSettings(_Section):
    """Passenger content: the media server, the portal, per-client fairness, usage journaling.

    Packages live under ``<data_dir>/content``. ``media_port`` is the sendfile media server's TCP
    port on ``media_host`` (default: the passenger host); 0 (the default) picks a free port, which
    the catalog announces to the portal (set a fixed one where a firewall needs it); None serves
    media on the passenger port only (the slow ASGI path). ``vendor_dir`` holds the portal's
    npm-built assets (``hls.min.js``, ``countries-110m.json``); without it the player relies on native
    HLS and the map draws no coastline. ``origin``/``destination`` are airport codes (ICAO or
    IATA, see ``appliance/web/airports.toml``) for the map and the ETA. Limits are per client
    address: connections to the media server, requests per second (and burst) on the media server
    and on the portal API, open event streams. ``media_max_connections`` caps the media server's
    connections in all (a new one takes the place of the oldest one waiting for a request head);
    each holds up to three file descriptors while it sends (socket, its dup, the file), so
    3 x 128 of the unit's ``LimitNOFILE=1024`` by default (see :class:`EdgeSettings`).
    ``media_head_timeout_s``: a request head must be complete this many seconds after the connection
    opened (or after its first byte on a kept-alive connection), however slowly it trickles in;
    ``keepalive_s``: an idle media connection is closed after that many seconds.
    ``usage_idle_s``: a viewing session ends after that many seconds without a request and is
    journaled on the ``usage`` stream.
    """

    enabled: bool = True
    media_host: str | None = None
    media_port: int | None = Field(0, ge=0, le=65535)
    vendor_dir: Path | None = Path("var/vendor")
    portal_url: str = "/portal/"
    origin: str | None = None
    destination: str | None = None
    media_connections_per_client: int = Field(8, ge=1)
    media_max_connections: int = Field(128, ge=1)
    media_head_timeout_s: float = Field(10.0, gt=0)
    media_requests_per_s: float = Field(50.0, gt=0)
    media_burst: float = Field(200.0, ge=1)
    api_requests_per_s: float = Field(10.0, gt=0)
    api_burst: float = Field(60.0, ge=1)
    event_streams_per_client: int = Field(4, ge=1)
    keepalive_s: float = Field(75.0, gt=0)
    #: Socket send buffer per media connection (bytes; 0 = kernel autotuning), see MediaServer.
    media_send_buffer: int = Field(1 << 20, ge=0)
    usage_idle_s: float = Field(60.0, gt=0)
    catalog_poll_s: float = Field(2.0, gt=0)
    flight_push_s: float = Field(1.0, gt=0)
    captive_accept_s: float = Field(12 * 3600, gt=0)


class PortLimits(_Section):
    """Limits of one web port (passenger or admin), applied before the application sees a request.

    ``max_connections``: open connections on the port; over it a new connection takes the place of
    the oldest one waiting for a request head, or is refused (503, closed) when none waits.
    ``connections_per_client``: open connections per client address (more: 503, closed).
    ``header_timeout_s``: a request head (request line and headers) must be complete this many
    seconds after the connection opened or the previous response ended, or the connection is
    closed: an absolute deadline that a trickle of bytes does not extend. ``keepalive_s``: an idle
    kept-alive connection is closed after that many seconds. ``header_bytes``: the largest request
    head (bytes; larger: 400). ``body_bytes``: the request body limit of routes without their own
    (bytes; larger: 413 before anything is parsed). ``body_timeout_s``: a body of a route with a
    small limit must arrive whole within that many seconds (else 408).
    """

    max_connections: int = Field(192, ge=1)
    connections_per_client: int = Field(12, ge=1)
    header_timeout_s: float = Field(10.0, gt=0)
    keepalive_s: float = Field(5.0, gt=0)
    header_bytes: int = Field(16 << 10, ge=1024)
    body_bytes: int = Field(16 << 10, ge=0)
    body_timeout_s: float = Field(30.0, gt=0)


class EdgeSettings(_Section):
    """Limits at the edge of the passenger and admin ports (the media server's are in [content]).

    ``passenger``/``admin``: the limits of each port (:class:`PortLimits`). Route limits (bytes,
    413 over them, checked on Content-Length at once or counted while a chunked body streams):
    ``login_body_bytes`` for the admin login, ``intake_metadata_bytes`` for the signed metadata
    that opens a hangar upload (it lists every file of the bundle: ~150 bytes a file), and an
    upload PUT takes ``[intake] chunk_bytes`` plus ``intake_chunk_slack_bytes``.
    ``fd_reserve``: file descriptors kept for everything but client connections (journal and its
    WAL, logs, intake and content files, outbound sockets); at start the connection caps of all
    ports (one descriptor per connection, three per media connection) plus this reserve are
    checked against ``RLIMIT_NOFILE`` (the unit's ``LimitNOFILE=1024``): the soft limit is raised
    to the hard one if needed, and a warning logged if even that is short.
    ``accept_error_log_s``: errors accepting connections (out of descriptors) are logged once per
    that many seconds with their count, never once each.
    ``event_loop``: ``uvloop`` (libuv: fewer CPU cycles per request and per wake-up, measured in
    ``tests/bench/bench_media.py``) or the standard library's ``asyncio``; ``uvloop`` falls back to
    ``asyncio`` with a warning when it is not installed.
    ``http``: the HTTP/1.1 parser of the passenger and admin ports: ``httptools`` (C, llhttp) or
    ``h11`` (pure Python); both carry the same connection caps and head deadline.
    """

    passenger: PortLimits = PortLimits()
    admin: PortLimits = PortLimits(max_connections=32, connections_per_client=8)
    login_body_bytes: int = Field(4 << 10, ge=256)
    intake_metadata_bytes: int = Field(2 << 20, ge=4096)
    intake_chunk_slack_bytes: int = Field(64 << 10, ge=0)
    fd_reserve: int = Field(192, ge=16)
    accept_error_log_s: float = Field(60.0, gt=0)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    http: Literal["httptools", "h11"] = "httptools"


class AdminUser(_Section):
    """One admin user: name, role (crew reads; maintenance also acts), argon2 password hash.

    Make a hash with ``appliance hash-password``.
    """

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Literal["crew", "maintenance"]
    password_hash: str = Field(pattern=r"^\$argon2")


class AdminAuthSettings(_Section):
    """Sessions and throttling of the admin port.

    ``session_ttl_s``: a login's session lasts that many seconds. A client address that makes
    ``max_failures`` failed attempts (wrong password, unknown user, bad token, malformed login)
    within ``failure_window_s`` seconds is locked out for ``lockout_s`` seconds; a user name that
    gets ``account_max_failures`` failed logins (from any address) within the window is locked for
    ``lockout_s`` too. Attempts count as they start: checks still running count against both
    limits. ``hash_concurrency``: argon2 password checks running at once (each takes the hash's
    memory, 64 MiB by default); ``hash_queue``: checks waiting for a slot, beyond which a login
    is refused at once (503 with Retry-After). ``max_tracked``: client addresses remembered for
    throttling (idle ones are forgotten past it; locked ones never). ``max_login_bytes``: the
    longest login body read (bytes); a longer one is a 413 that counts as a failure.
    """

    session_ttl_s: float = Field(8 * 3600, gt=0)
    max_failures: int = Field(5, ge=1)
    failure_window_s: float = Field(300, gt=0)
    lockout_s: float = Field(300, gt=0)
    account_max_failures: int = Field(10, ge=1)
    hash_concurrency: int = Field(2, ge=1, le=16)
    hash_queue: int = Field(8, ge=0)
    max_tracked: int = Field(4096, ge=16)
    max_login_bytes: int = Field(4096, ge=512)


class OrdersSettings(_Section):
    """Passenger orders: rate limits and the bound on the orders stream.

    Token buckets, one per client address and one per seat: ``client_per_min`` orders a minute
    refill up to ``client_burst`` at once (likewise ``seat_per_min``/``seat_burst``); a retry of a
    known order counts too. Beyond them an order is refused with 429 and ``Retry-After`` (s).
    ``max_queued``: orders waiting in the outbox for the ground (the ``orders`` stream is never
    dropped); at that depth new orders are refused (503 with the reason) until the ground link
    takes some. Every item must be on the menu shipped with the package (``content/menu.toml``).
    """

    client_per_min: float = Field(10.0, gt=0)
    client_burst: int = Field(30, ge=1)
    seat_per_min: float = Field(10.0, gt=0)
    seat_burst: int = Field(30, ge=1)
    max_queued: int = Field(20_000, ge=1)


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
    orders: OrdersSettings = OrdersSettings()
    serial: SerialSettings = SerialSettings()
    can: CanSettings = CanSettings()
    airground: AirGroundSettings = AirGroundSettings()
    sync: SyncSettings = SyncSettings()
    content: ContentSettings = ContentSettings()
    cabin_network: CabinNetworkSettings = CabinNetworkSettings()
    cabinnet: CabinNetSettings = CabinNetSettings()  #: DHCP, DNS, the gate (appliance.netsettings)
    intake: IntakeSettings = IntakeSettings()
    edge: EdgeSettings = EdgeSettings()
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
    def _distinct_sources(self) -> Settings:
        # Serial and CAN may run together (each on the chain's time base: avionics.timebase); their
        # parameters are told apart by source name.
        if self.serial.enabled and self.can.enabled and (
                self.serial.channel_name == self.can.channel_name):
            raise ValueError("serial.channel_name and can.channel_name must differ")
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
