"""The appliance's one exception tree. Domain errors carry no HTTP codes; the web layer maps them.

::

    ApplianceError
    ├── ConfigError            invalid configuration (the CLI exits 78, EX_CONFIG)
    ├── StartupError           a part cannot start (a web port is taken)
    ├── AvionicsError
    │   └── SourceError        a bus source cannot be opened or was lost
    ├── StoreError             the journal database cannot be opened, migrated or written
    │   └── WriterClosedError  a write was submitted after the writer stopped
    ├── PolicyError            the current mode does not allow the requested action
    ├── ContentError           passenger content (store, catalog)
    │   ├── PackageError       a content package is refused (bad manifest, playlist, missing file)
    │   ├── OrderRefused       an order is refused as written (not on the menu, out of stock, ...)
    │   ├── OrdersFull         the orders stream is at its stated bound; try again later
    │   ├── UnknownOrder       no order has that number (or the key does not match)
    │   └── OrderStateError    a status change the order's state machine does not allow
    └── IntakeError            hangar intake (uploads, staging, activation, software slots)
        ├── BundleRefused      a bundle is refused (signature, version, expiry, hash, path, size)
        ├── UnknownUpload      no upload has the given bundle id
        ├── InsufficientStorage  not enough free space for a chunk or for unpacking (retry later)
        └── UploadStalled      an upload's body stopped arriving (idle timeout); resume from received

Decoding errors of single words and frames come from ``firmware_bridge`` (DecodeError,
ParityError); they are counted per source, never raised out of the pipeline.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """Invalid configuration: unknown key, bad value, unreadable file."""


class StartupError(ApplianceError):
    """A part of the service cannot start (for example its listening port is taken)."""


class AvionicsError(ApplianceError):
    """A problem with the avionics inputs as a whole (not a single bad word)."""


class SourceError(AvionicsError):
    """A bus source (serial card, CAN) cannot be opened or was lost."""


class StoreError(ApplianceError):
    """The journal database cannot be opened, migrated or written."""


class WriterClosedError(StoreError):
    """A write was submitted to the single writer after it stopped."""


class PolicyError(ApplianceError):
    """The current mode does not allow the requested action."""


class ContentError(ApplianceError):
    """Passenger content cannot be installed, found or served."""


class PackageError(ContentError):
    """A content package is refused: bad manifest, bad playlist, missing or altered file."""


class OrderRefused(ContentError):
    """An order is refused as written; the message is the reason (it names the item).

    ``index``: the position of the refused item in the order's items (None: the whole order).
    """

    def __init__(self, reason: str, index: int | None = None, code: str = "not_on_menu",
                 sku: str | None = None) -> None:
        """Carry the reason, the item's position, a code and the item's SKU.

        ``code``: ``not_on_menu``, ``out_of_stock`` or ``too_many``.
        """
        super().__init__(reason)
        self.index = index
        self.code = code
        self.sku = sku


class UnknownOrder(ContentError):
    """No order has that number (or, for a passenger, the key given is not the order's)."""


class OrderStateError(ContentError):
    """A status change that the order's state machine does not allow (placed -> delivered)."""


class OrdersFull(ContentError):
    """The orders waiting for the ground reached their bound; the message says which."""


class IntakeError(ApplianceError):
    """Hangar intake: an upload, staging, activation or software slot operation failed."""


class BundleRefused(IntakeError):
    """A bundle is refused; the message is the reason shown to the operator (nothing installed)."""


class UnknownUpload(IntakeError):
    """No upload has the bundle id asked for (the message names it)."""


class InsufficientStorage(IntakeError):
    """Not enough free disk space for the step asked (the message says how much is needed and free).

    Nothing was kept of the step but what was durable before it; the upload is left as it was, so
    the step can be retried once space is freed. The journal's reserve is never counted as free.
    """


class UploadStalled(IntakeError):
    """An upload's body stopped arriving for longer than the idle timeout.

    The bytes received before are durable and the upload is free for a resuming push (from
    ``received``).
    """
