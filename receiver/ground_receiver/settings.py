"""Receiver settings (pydantic-settings): TOML file, then ``GROUND_RECEIVER_*`` environment.

Tokens: ``[aircraft]`` maps an aircraft id to its bearer token, either as ``"sha256:<hex>"``
(preferred: the file then holds no secret; ``ground-receiver hash-token`` prints it) or as the
plain token. Example::

    database_url = "postgresql+psycopg://ground@db/ground"
    host = "0.0.0.0"
    port = 8443
    [aircraft]
    F-GKXA = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

__all__ = ["Operator", "ReceiverSettings", "default_database_url", "hash_token", "load_settings",
           "sqlite_path"]


def default_database_url() -> str:
    """SQLite in the XDG state directory: ``$XDG_STATE_HOME/ground-receiver/ground.db``.

    ``XDG_STATE_HOME`` defaults to ``~/.local/state`` (XDG Base Directory spec); never the current
    directory. The directory is created when the receiver opens the database.
    """
    base = os.environ.get("XDG_STATE_HOME") or ""
    state = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"
    return f"sqlite:///{state / 'ground-receiver' / 'ground.db'}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (None for other databases or in-memory SQLite)."""
    if not url.startswith("sqlite:///") or url in ("sqlite:///", "sqlite:///:memory:"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def hash_token(token: str) -> str:
    """The stored form of a bearer token: ``sha256:<64 hex digits>``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def _stored_token(tok: str) -> str:
    if tok.startswith("sha256:"):
        if len(tok) != 71 or any(c not in "0123456789abcdef" for c in tok[7:]):
            raise ValueError("sha256 token hash must be 64 lowercase hex digits")
        return tok
    if len(tok) < 16:
        raise ValueError("token must have at least 16 characters")
    return hash_token(tok)


class Operator(BaseModel):
    """A ground operations user: its token (``sha256:<hex>`` or plain) and roles.

    Roles: ``fleet`` (the fleet view), ``export`` (the daily CSV export), ``metrics``
    (``/metrics``, for the Prometheus scraper).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str
    roles: tuple[Literal["fleet", "export", "metrics"], ...] = ("fleet",)

    @field_validator("token")
    @classmethod
    def _hash(cls, v: str) -> str:
        return _stored_token(v)


class ReceiverSettings(BaseSettings):
    """Everything the receiver reads at start. Sizes in bytes, times in seconds."""

    model_config = SettingsConfigDict(env_prefix="GROUND_RECEIVER_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    #: SQLAlchemy URL: ``sqlite:////var/lib/ground/ground.db`` or
    #: ``postgresql+psycopg://user:pw@host/db``; default :func:`default_database_url` (XDG state).
    database_url: str = Field(default_factory=default_database_url)
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=0, le=65535)
    #: Legacy, kept for aircraft not yet given a key pair: aircraft id -> ``sha256:<hex>`` of
    #: its token, or the plain token. Aircraft with keys sign instead (``aircraft_keys`` table).
    aircraft: dict[str, str] = Field(default_factory=dict)
    #: A request body (compressed) larger than this is refused (413) before it is read whole.
    max_body_bytes: int = Field(16 * 1024 * 1024, gt=0)
    #: A batch larger than this once decompressed is refused (413): no decompression bombs.
    max_batch_bytes: int = Field(64 * 1024 * 1024, gt=0)
    #: At most this many records in one batch (400 beyond).
    max_records: int = Field(200_000, gt=0)
    #: A batch starting beyond a stream's watermark waits this long for its predecessor (s).
    reorder_wait_s: float = Field(5.0, ge=0)
    #: An idle client connection is kept this long (s): an aircraft's probe and its batch go on
    #: one connection even when the aircraft builds the batch slowly (a busy CPU on board).
    keep_alive_s: float = Field(30.0, gt=0)
    #: SQLite only: FULL keeps the promise that an acknowledged batch survives a power cut.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    #: A signed request's X-Timestamp may be this far from the ground clock (s). Wide: an
    #: aircraft clock may be off before its time source is set, and batches are idempotent.
    signature_max_skew_s: float = Field(86400.0, gt=0)
    #: Ground operations users (HTTP Basic on the fleet view and the export).
    operators: dict[str, Operator] = Field(default_factory=dict)
    #: The ground's Ed25519 private key (PEM) that signs downlink documents; None: no publishing
    #: (``ground-receiver downlink keygen FILE`` makes one and prints the public key for the
    #: aircraft's ``sync.ground_public_key``).
    downlink_key_file: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("aircraft")
    @classmethod
    def _normalise_tokens(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for ac, tok in v.items():
            if not ac or len(ac) > 64:
                raise ValueError(f"aircraft id {ac!r} must have 1 to 64 characters")
            if tok.startswith("sha256:"):
                if len(tok) != 71 or any(c not in "0123456789abcdef" for c in tok[7:]):
                    raise ValueError(f"{ac}: sha256 token hash must be 64 lowercase hex digits")
                out[ac] = tok
            else:
                if len(tok) < 16:
                    raise ValueError(f"{ac}: token must have at least 16 characters")
                out[ac] = hash_token(tok)
        return out

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the config file (passed as init values)."""
        return env_settings, init_settings

    def token_index(self) -> dict[str, str]:
        """``sha256:<hex>`` of each token -> aircraft id (for the bearer lookup)."""
        return {h: ac for ac, h in self.aircraft.items()}


def load_settings(config: str | os.PathLike[str] | None = None, **overrides: Any) -> ReceiverSettings:
    """Read the TOML file ``config`` (or ``$GROUND_RECEIVER_CONFIG``), apply ``overrides``.

    Raises ConfigError naming the file and every bad key.
    """
    path = config or os.environ.get("GROUND_RECEIVER_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ReceiverSettings(**data)
    except ValidationError as e:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from e
