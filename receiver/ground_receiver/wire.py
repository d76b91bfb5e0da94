"""The batch on the wire (version 1): decoding with size limits, and its schema.

A request body is a zstd frame (``Content-Encoding: zstd``) holding one JSON object::

    {"v": 1, "aircraft": "F-GKXA", "batch_id": "F-GKXA:1732170000123:5f0c...", "sent": 1732170000.1,
     "streams": [
        {"stream": "orders",
         "records": [{"seq": 42, "created": 1732169990.5, "payload": {...}}, ...],
         "dropped": [{"lo": 7, "hi": 9, "records": 3, "bytes": 912, "at": 1732160000.0}]},
        ...]}

- ``records`` of a stream are in strictly increasing ``seq`` (1-based, per aircraft and stream);
  the record's idempotency key is ``{aircraft}:{stream}:{seq}``.
- ``dropped`` declares sequence ranges the aircraft deleted unsent (its outbox disk budget):
  the receiver records them as gaps and moves its watermark over them.
- ``created``, ``sent``, ``at`` are epoch seconds (aircraft clock).
- ``status`` (optional) is the aircraft's state for the fleet view, the latest kept:
  ``{"backlog": {stream: records queued when the batch was built, its own included},
  "bite": {subsystem: "green"|"amber"|"red"},
  "software": "1.4.2", "content": "2024-07"}`` (each part optional).

:func:`decode_body` raises :class:`~ground_receiver.errors.BatchRejected` (``too_large``,
``malformed``) and returns a :class:`Batch`.
"""

from __future__ import annotations

import io
import itertools
from typing import Annotated, Any, Literal

import zstandard
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import BatchRejected

__all__ = ["AircraftStatus", "Batch", "Dropped", "Record", "StreamChunk", "decode_body"]

Seq = Annotated[int, Field(ge=1, le=2**62)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Record(_Strict):
    """One outbox record: its sequence number, creation time (epoch s) and payload (any JSON)."""

    seq: Seq
    created: float
    payload: Any


class Dropped(_Strict):
    """A range ``lo..hi`` (inclusive) the aircraft dropped unsent: ``records`` rows, ``bytes``."""

    lo: Seq
    hi: Seq
    records: Annotated[int, Field(ge=0)] = 0
    bytes: Annotated[int, Field(ge=0)] = 0
    at: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Dropped:
        if self.hi < self.lo:
            raise ValueError(f"dropped range {self.lo}..{self.hi} is reversed")
        return self


class StreamChunk(_Strict):
    """The part of a batch for one stream."""

    stream: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]
    priority: int | None = None
    records: list[Record] = Field(default_factory=list)
    dropped: list[Dropped] = Field(default_factory=list)

    @model_validator(mode="after")
    def _increasing(self) -> StreamChunk:
        seqs = [r.seq for r in self.records]
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            raise ValueError(f"stream {self.stream}: records not in strictly increasing seq")
        return self


Short = Annotated[str, Field(max_length=64)]


class AircraftStatus(_Strict):
    """What the aircraft says of itself for the fleet view (see the module doc)."""

    backlog: dict[Short, Annotated[int, Field(ge=0)]] = Field(default_factory=dict,
                                                              max_length=64)
    bite: dict[Short, Short] = Field(default_factory=dict, max_length=64)
    software: Short | None = None
    content: Short | None = None


class Batch(_Strict):
    """A whole batch (see the module doc)."""

    v: Literal[1]
    aircraft: Annotated[str, Field(min_length=1, max_length=64)]
    batch_id: Annotated[str, Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    sent: float | None = None
    status: AircraftStatus | None = None
    streams: list[StreamChunk]

    @model_validator(mode="after")
    def _unique_streams(self) -> Batch:
        names = [s.stream for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError("a stream appears twice in the batch")
        return self

    @property
    def record_count(self) -> int:
        """Records in the batch, all streams."""
        return sum(len(s.records) for s in self.streams)


def _decompress(body: bytes, limit: int) -> bytes:
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
            out = reader.read(limit + 1)
            # stream_reader stops at the end of the first frame; anything after it is garbage
    except zstandard.ZstdError as e:
        raise BatchRejected("malformed", f"body is not a valid zstd frame: {e}") from e
    if len(out) > limit:
        raise BatchRejected("too_large", f"batch exceeds {limit} bytes once decompressed")
    return out


def decode_body(body: bytes, encoding: str | None, *, max_batch_bytes: int,
                max_records: int) -> Batch:
    """Decompress (``encoding`` ``zstd`` or None for plain JSON), parse and validate a batch.

    Raises BatchRejected: ``unsupported`` for another encoding, ``too_large`` past
    ``max_batch_bytes`` decompressed or ``max_records`` records, ``malformed`` otherwise.
    """
    enc = (encoding or "identity").strip().lower()
    if enc == "zstd":
        raw = _decompress(body, max_batch_bytes)
    elif enc == "identity":
        if len(body) > max_batch_bytes:
            raise BatchRejected("too_large", f"batch exceeds {max_batch_bytes} bytes")
        raw = body
    else:
        raise BatchRejected("unsupported", f"Content-Encoding {encoding!r}: use zstd")
    try:
        batch = Batch.model_validate_json(raw)
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                         for err in e.errors()[:5])
        more = f" (+{e.error_count() - 5} more)" if e.error_count() > 5 else ""
        raise BatchRejected("malformed", f"batch does not match schema v1: {errs}{more}") from e
    if batch.record_count > max_records:
        raise BatchRejected("too_large", f"{batch.record_count} records; at most {max_records}")
    return batch
