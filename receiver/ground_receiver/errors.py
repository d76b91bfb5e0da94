"""The receiver's errors. No HTTP codes here: ``app`` maps each ``code`` to a status.

::

    ReceiverError
    ├── BatchRejected       a batch that cannot be taken as sent (code says why)
    ├── AuthRefused         a request whose aircraft identity does not hold (code says why)
    └── ConfigError         invalid receiver configuration
"""

from __future__ import annotations

__all__ = ["AuthRefused", "BatchRejected", "ConfigError", "ReceiverError"]


class ReceiverError(Exception):
    """Base of every error the receiver raises on purpose."""


class BatchRejected(ReceiverError):
    """A batch refused as a whole.

    ``code`` is one of ``malformed`` (not zstd, not JSON, not the schema), ``too_large``
    (compressed or decompressed size over the limit), ``unsupported`` (content type or encoding),
    ``aircraft_mismatch`` (the body names another aircraft than the token), ``batch_id_reused``
    (a known batch id with different content).
    """

    def __init__(self, code: str, detail: str) -> None:
        """Keep the machine-readable ``code`` and the human-readable ``detail``."""
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class ConfigError(ReceiverError):
    """Invalid configuration (unknown key, bad value, unreadable file)."""


class AuthRefused(ReceiverError):
    """A request refused for its identity.

    ``code``: ``unauthorized`` (no or malformed credentials, bad signature), ``unknown_aircraft``
    (no such key registered for the aircraft), ``key_revoked`` (revoked or past its rotation
    grace).
    """

    def __init__(self, code: str, detail: str) -> None:
        """Keep the machine-readable ``code`` and the human-readable ``detail``."""
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
