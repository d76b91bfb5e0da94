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

__all__ = ["AirGroundSettings", "CanSettings", "Listen", "SerialSettings", "Settings",
           "load_settings"]


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


class Settings(BaseSettings):
    """All settings of the service. Paths are relative to the working directory."""

    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    aircraft_id: str = "F-TEST"
    data_dir: Path = Path("var")
    passenger: Listen = Listen(host="127.0.0.1", port=8080)
    admin: Listen = Listen(host="127.0.0.1", port=8081)
    admin_token: SecretStr | None = None
    serial: SerialSettings = SerialSettings()
    can: CanSettings = CanSettings()
    airground: AirGroundSettings = AirGroundSettings()
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
