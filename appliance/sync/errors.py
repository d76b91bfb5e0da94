"""Errors of the outbound sync, under the appliance's one tree (:mod:`appliance.errors`).

Typed by what happened, not by how the receiver's HTTP answer said it: the receiver's client
(:mod:`appliance.sync.client`) is the only place that reads status codes and maps them here.

::

    ApplianceError
    └── SyncError
        ├── ReceiverUnavailable   the link or the receiver failed for now (network error, timeout,
        │                         receiver overloaded or down, an unreadable answer): retried with
        │                         backoff, then the link counts as down and is probed again
        └── ReceiverRejected      the receiver refused the request (bad token, malformed batch):
            │                     not retried as is; shown in the status with the receiver's words
            └── BatchTooLarge     the receiver refused a batch for its size: send smaller ones

A stream part the receiver defers inside an accepted batch (its ``gap`` error: an earlier
sequence number has not arrived yet) is no exception: it is part of the answer
(:class:`~appliance.sync.client.BatchAnswer`), and means "resume from the watermark".
"""

from __future__ import annotations

from ..errors import ApplianceError

__all__ = ["BatchTooLarge", "ReceiverRejected", "ReceiverUnavailable", "SyncError"]


class SyncError(ApplianceError):
    """Base of the sync's errors."""


class ReceiverUnavailable(SyncError):
    """A failure that may pass: connection refused or reset, timeout, link down, overload."""


class ReceiverRejected(SyncError):
    """The receiver refused the request: ``code`` and ``detail`` as it said them."""

    def __init__(self, code: str, detail: str) -> None:
        """Keep the receiver's answer."""
        super().__init__(f"receiver refused ({code}): {detail}")
        self.code = code
        self.detail = detail


class BatchTooLarge(ReceiverRejected):
    """The receiver takes smaller batches than the one sent."""
