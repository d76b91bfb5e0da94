"""Access point drivers, as python-can does adapters.

The base class holds the public methods, each driver its ``_internal`` parts.

:class:`AccessPoint` (public: ``connect``, ``status``, ``get_config``, ``put_config``, ``commit``,
``confirm``, ``reboot``, ``close``) logs in on first use, logs in again once when the device has
forgotten the session (it rebooted), and counts commands and failures. Every call takes ``by``:
who is asking (a job's idempotency key, or ``"poll"``), sent to the device so that its own log can
tell jobs apart. Tagged commands (``commit``, ``confirm``, ``reboot``) carry the job's key as
``tag``: the device remembers recent tags, so a repeated command is not done twice.

:class:`JsonApiAccessPoint` maps those operations onto the access points' HTTP JSON API (below);
the transport is one abstract ``_exchange``: :class:`~.http_driver.HttpJsonAccessPoint` speaks
HTTP (httpx), :class:`~.sim_driver.SimulatedAccessPoint` calls an in-process simulated device.

The JSON API (v1)::

    POST /api/v1/login            {"user", "password"} -> {"token"}          401 auth_failed
    GET  /api/v1/status           -> DeviceStatus.to_json()
    GET  /api/v1/config           -> {"running": ApConfig, "candidate": ApConfig|null, "rev", "tag"}
    PUT  /api/v1/config/candidate {"config": ApConfig}                        400 invalid
    POST /api/v1/commit           {"tag", "confirm_timeout_s": s|null} -> {"rev", "tag", "pending"}
    POST /api/v1/confirm          {"tag"}                                     409 conflict
    POST /api/v1/reboot           {"tag"} -> 202 {"rebooting": true}
    errors: {"error": "auth_failed"|"session_expired"|"not_ready"|"busy"|"invalid"|"conflict",
             "detail", "retry_after_s"?}; 401, 503 not_ready, 409 busy/conflict, 400 invalid

Errors raised: see :mod:`appliance.cabin.errors`.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .errors import (
    AuthFailedError,
    BusyError,
    ConflictError,
    DeviceError,
    RejectedError,
    SessionExpired,
    UnreachableError,
)
from .model import ApConfig, DeviceStatus

__all__ = ["AccessPoint", "DriverStats", "JsonApiAccessPoint", "raise_for_answer"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class DriverStats:
    """Commands sent, failures per class, the last error and when (epoch s)."""

    commands: int = 0
    logins: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict for the admin API."""
        return {"commands": self.commands, "logins": self.logins, "failures": dict(self.failures),
                "last_error": self.last_error, "last_error_at": self.last_error_at}


class AccessPoint(abc.ABC):
    """One access point. Public methods here; drivers implement the ``_`` methods."""

    #: The driver's name in the settings (``cabin_network.access_points[].driver``).
    driver: ClassVar[str] = ""

    def __init__(self, name: str) -> None:
        """``name``: the access point's inventory name (used in errors and logs)."""
        self.name = name
        self.connected = False
        self.stats = DriverStats()

    # ------------------------------------------------------------------ public
    async def connect(self, by: str = "poll") -> None:
        """Log in (a new session); raises AuthFailedError, NotReadyError, DeviceError."""
        self.stats.logins += 1
        await self._guard(self._connect(by))
        self.connected = True

    async def status(self, by: str = "poll") -> DeviceStatus:
        """The device's status and running configuration."""
        return await self._call(lambda: self._status(by), by)

    async def get_config(self, by: str) -> ApConfig:
        """The running configuration."""
        return await self._call(lambda: self._get_config(by), by)

    async def put_config(self, cfg: ApConfig, by: str) -> None:
        """Stage ``cfg`` as the candidate (nothing changes until :meth:`commit`)."""
        await self._call(lambda: self._put_config(cfg, by), by)

    async def commit(self, tag: str, confirm_timeout_s: float | None) -> None:
        """Make the candidate the running configuration, tagged ``tag``.

        With ``confirm_timeout_s`` (s) the device rolls the change back by itself unless
        :meth:`confirm` arrives in time (and on a reboot before it). Committing a tag the device
        already has is a no-op.
        """
        await self._call(lambda: self._commit(tag, confirm_timeout_s), tag)

    async def confirm(self, tag: str) -> None:
        """Keep the pending change ``tag``; ConflictError if nothing with that tag is pending or kept."""
        await self._call(lambda: self._confirm(tag), tag)

    async def reboot(self, tag: str) -> None:
        """Reboot; the device records ``tag`` so a repeated request does not reboot it twice."""
        await self._call(lambda: self._reboot(tag), tag)
        self.connected = False

    async def close(self) -> None:
        """Forget the session and release the transport."""
        self.connected = False
        await self._close()

    # ------------------------------------------------------------------ common machinery
    async def _call(self, fn: Callable[[], Awaitable[T]], by: str) -> T:
        if not self.connected:
            await self.connect(by)
        try:
            return await self._guard(fn())
        except SessionExpired:
            self.connected = False
            await self.connect(by)
            return await self._guard(fn())

    async def _guard(self, aw: Awaitable[T]) -> T:
        self.stats.commands += 1
        try:
            return await aw
        except DeviceError as e:
            kind = type(e).__name__
            self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1
            self.stats.last_error, self.stats.last_error_at = str(e), time.time()
            if isinstance(e, UnreachableError):
                self.connected = False
            raise

    # ------------------------------------------------------------------ driver parts
    @abc.abstractmethod
    async def _connect(self, by: str) -> None:
        """Open a session (log in)."""

    @abc.abstractmethod
    async def _status(self, by: str) -> DeviceStatus:
        """Read the status."""

    @abc.abstractmethod
    async def _get_config(self, by: str) -> ApConfig:
        """Read the running configuration."""

    @abc.abstractmethod
    async def _put_config(self, cfg: ApConfig, by: str) -> None:
        """Stage a candidate configuration."""

    @abc.abstractmethod
    async def _commit(self, tag: str, confirm_timeout_s: float | None) -> None:
        """Commit the candidate."""

    @abc.abstractmethod
    async def _confirm(self, tag: str) -> None:
        """Confirm a pending commit."""

    @abc.abstractmethod
    async def _reboot(self, tag: str) -> None:
        """Reboot."""

    async def _close(self) -> None:  # noqa: B027 - optional hook, most drivers hold nothing
        """Release the transport (default: nothing)."""


def raise_for_answer(device: str, status: int, data: Any) -> None:
    """Raise the error an API answer (HTTP ``status``, JSON ``data``) stands for; return if 2xx."""
    if 200 <= status < 300:
        return
    d = data if isinstance(data, dict) else {}
    code, detail = str(d.get("error", status)), str(d.get("detail", ""))
    retry = float(d.get("retry_after_s", 0) or 0)
    msg = f"{status} {code}" + (f": {detail}" if detail else "")
    if status == 401:
        if code == "session_expired":
            raise SessionExpired(device, msg)
        raise AuthFailedError(device, msg)
    if status == 503 or code in ("busy", "not_ready"):
        raise BusyError(device, msg, retry)
    if status == 409:
        raise ConflictError(device, msg)
    if status in (400, 404, 422):
        raise RejectedError(device, msg)
    if status in (502, 504):
        raise UnreachableError(device, msg)
    raise DeviceError(device, msg)


class JsonApiAccessPoint(AccessPoint):
    """The access points' JSON API over an abstract transport (``_exchange``)."""

    def __init__(self, name: str, user: str, password: str) -> None:
        """Log in as ``user`` with ``password``."""
        super().__init__(name)
        self.user = user
        self.password = password
        self.token: str | None = None

    @abc.abstractmethod
    async def _exchange(self, method: str, path: str, body: dict[str, Any] | None, by: str,
                        ) -> tuple[int, Any]:
        """Send one request; return (status, JSON body). Raise UnreachableError on no answer."""

    async def _api(self, method: str, path: str, body: dict[str, Any] | None, by: str) -> Any:
        status, data = await self._exchange(method, path, body, by)
        raise_for_answer(self.name, status, data)
        return data

    async def _connect(self, by: str) -> None:
        self.token = None
        data = await self._api("POST", "/api/v1/login",
                               {"user": self.user, "password": self.password}, by)
        try:
            self.token = str(data["token"])
        except (KeyError, TypeError) as e:
            raise DeviceError(self.name, f"malformed login answer {data!r}") from e

    async def _status(self, by: str) -> DeviceStatus:
        data = await self._api("GET", "/api/v1/status", None, by)
        try:
            return DeviceStatus.from_json(data)
        except ValueError as e:
            raise DeviceError(self.name, str(e)) from e

    async def _get_config(self, by: str) -> ApConfig:
        data = await self._api("GET", "/api/v1/config", None, by)
        try:
            return ApConfig.from_json(data["running"])
        except (ValueError, KeyError, TypeError) as e:
            raise DeviceError(self.name, f"malformed configuration: {e}") from e

    async def _put_config(self, cfg: ApConfig, by: str) -> None:
        await self._api("PUT", "/api/v1/config/candidate", {"config": cfg.to_json()}, by)

    async def _commit(self, tag: str, confirm_timeout_s: float | None) -> None:
        await self._api("POST", "/api/v1/commit",
                        {"tag": tag, "confirm_timeout_s": confirm_timeout_s}, tag)

    async def _confirm(self, tag: str) -> None:
        await self._api("POST", "/api/v1/confirm", {"tag": tag}, tag)

    async def _reboot(self, tag: str) -> None:
        await self._api("POST", "/api/v1/reboot", {"tag": tag}, tag)
