"""Errors of the cabin network, under the appliance's one tree (:mod:`appliance.errors`).

::

    ApplianceError
    └── DeviceError              an access point did not do what was asked
        ├── NotReadyError        may pass: retried with backoff
        │   ├── UnreachableError no answer: refused, reset, timed out, answer lost
        │   ├── BusyError        the device is busy (with another command, a scan, booting)
        │   └── SessionExpired   the device forgot our session (it rebooted): log in again
        ├── AuthFailedError      the device refused our credentials: needs attention, not retried
        ├── RejectedError        the device refused the request (invalid configuration): failed
        ├── ConflictError        the request does not fit the device's state (nothing to confirm)
        └── CutOffError          a change cut the device off; it rolled back by itself: failed

:func:`classify` maps an exception to the job outcome: ``not_ready`` (retry), ``auth_failed``
(needs attention) or ``error`` (failed).
"""

from __future__ import annotations

from typing import Literal

from ..errors import ApplianceError

__all__ = ["AuthFailedError", "BusyError", "ConflictError", "CutOffError", "DeviceError",
           "Failure", "NotReadyError", "RejectedError", "SessionExpired", "UnreachableError",
           "classify"]

#: How a failure is handled: retry, ask a human, or give up.
Failure = Literal["not_ready", "auth_failed", "error", "cut_off"]


class DeviceError(ApplianceError):
    """Base of the access points' errors; ``device`` names the access point."""

    def __init__(self, device: str, detail: str) -> None:
        """Keep the device name and the reason in words."""
        super().__init__(f"{device}: {detail}")
        self.device = device
        self.detail = detail


class NotReadyError(DeviceError):
    """The device cannot do it now; ``retry_after_s`` is its hint (0 if none)."""

    def __init__(self, device: str, detail: str, retry_after_s: float = 0.0) -> None:
        """Keep the hint (s)."""
        super().__init__(device, detail)
        self.retry_after_s = retry_after_s


class UnreachableError(NotReadyError):
    """No answer: connection refused or reset, timeout, or the answer was lost on the way."""


class BusyError(NotReadyError):
    """The device answered that it is busy (or still booting)."""


class SessionExpired(NotReadyError):
    """The device no longer knows our session token (for example after a reboot)."""


class AuthFailedError(DeviceError):
    """The device refused the configured credentials."""


class RejectedError(DeviceError):
    """The device refused the request as invalid (for example a channel it does not support)."""


class ConflictError(DeviceError):
    """The request does not fit the device's state (confirm with nothing pending, no candidate)."""


class CutOffError(DeviceError):
    """After a change the device stopped answering us; it rolled the change back by itself."""


def classify(exc: BaseException) -> Failure:
    """The failure class of ``exc``: not_ready (retry), auth_failed, cut_off, or error."""
    if isinstance(exc, NotReadyError):
        return "not_ready"
    if isinstance(exc, AuthFailedError):
        return "auth_failed"
    if isinstance(exc, CutOffError):
        return "cut_off"
    return "error"
