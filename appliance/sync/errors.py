"""Errors of the outbound sync, under the appliance's one tree (:mod:`appliance.errors`).

::

    ApplianceError
    └── SyncError
        ├── TransientError    the link or the receiver failed for now (network, timeout, 5xx):
        │                     retried with backoff, then the link is probed again
        └── RejectedError     the receiver refused (4xx: bad token, malformed or oversized batch):
                              not retried as is; shown in the status with the receiver's words
"""

from __future__ import annotations

from ..errors import ApplianceError

__all__ = ["RejectedError", "SyncError", "TransientError"]


class SyncError(ApplianceError):
    """Base of the sync's errors."""


class TransientError(SyncError):
    """A failure that may pass: connection refused or reset, timeout, link down, 5xx, 429."""


class RejectedError(SyncError):
    """The receiver refused the request: ``status`` (HTTP), ``code`` and ``detail`` as it said."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        """Keep the receiver's answer."""
        super().__init__(f"receiver refused ({status} {code}): {detail}")
        self.status = status
        self.code = code
        self.detail = detail
