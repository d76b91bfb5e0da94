"""Domain events of the sync (frozen dataclasses): what the status shows and the daemon may log."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AckedRecordsLost", "BatchAcknowledged", "LinkChanged", "RecordsDropped", "StreamBlocked",
           "SyncEvent"]


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """A link went up or down: ``reason`` says what the interfaces or the probe showed."""

    link: str
    up: bool
    reason: str
    at: float  #: epoch s


@dataclass(frozen=True, slots=True)
class BatchAcknowledged:
    """The receiver took a batch; ``watermarks`` {stream: seq} are durable on the ground."""

    batch_id: str
    link: str
    records: int
    wire_bytes: int  #: compressed body bytes
    raw_bytes: int  #: the same batch as plain JSON
    applied: int  #: records new to the receiver (the rest were duplicates)
    watermarks: dict[str, int] = field(default_factory=dict)
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordsDropped:
    """The disk budget deleted records ``seq_lo..seq_hi`` of ``stream`` unsent."""

    stream: str
    seq_lo: int
    seq_hi: int
    records: int
    bytes: int
    at: float


@dataclass(frozen=True, slots=True)
class StreamBlocked:
    """A stream cannot continue: the receiver or the outbox has a hole (``detail`` says where)."""

    stream: str
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class AckedRecordsLost:
    """The receiver no longer holds ``seq_lo..seq_hi`` of ``stream``, which it had acknowledged.

    Its watermark went back (a restored or new database) below what the aircraft deleted on its
    acknowledgement: the records are gone on both sides. The range is declared to the receiver as
    a gap (so the stream goes on from its watermark) and journalled; BITE shows the sync red.
    """

    stream: str
    seq_lo: int
    seq_hi: int
    acked: int  #: what the receiver had acknowledged
    watermark: int  #: what it holds now
    at: float


SyncEvent = LinkChanged | BatchAcknowledged | RecordsDropped | StreamBlocked | AckedRecordsLost
