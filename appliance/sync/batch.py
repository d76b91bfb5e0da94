"""Batches: outbox items of several streams, as zstd-compressed JSON (wire format v1).

The wire format is the ground receiver's (``ground_receiver.wire``)::

    {"v":1,"aircraft":"F-GKXA","batch_id":"...","sent":1732170000.1,"streams":[
      {"stream":"orders","priority":0,"records":[{"seq":42,"created":1732169990.5,"payload":{...}}],
       "dropped":[{"lo":7,"hi":9,"records":3,"bytes":912,"at":1732160000.0}]}, ...]}

The JSON is assembled from the payloads' stored JSON text (no decode/encode round trip). Streams
are filled in priority order: a batch holds every pending order before the first usage record.
The batch id (``{aircraft}:{ms}:{random}``) is the request's idempotency key: a retry of the
same batch sends the same id and the same bytes.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import zstandard

from .queue import DropRange, OutboxReader, Record

__all__ = ["Batch", "BatchLimits", "build_batch", "new_batch_id"]


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """At most ``max_records`` records and about ``max_bytes`` of JSON per batch; zstd level."""

    max_records: int = 5000
    max_bytes: int = 1_000_000
    level: int = 6


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch ready to send.

    ``start``/``end``: per stream, the seq before the first item and the last seq covered
    (records and drop ranges); ``records``: record count; ``raw_bytes``: JSON size; ``body``: the
    zstd frame; ``holes``: streams with nothing to send because their next seq is missing from
    the outbox (stream -> that seq): the uplink blocks them and says so in the status.
    """

    batch_id: str
    body: bytes
    raw_bytes: int
    records: int
    start: dict[str, int]
    end: dict[str, int]
    record_counts: dict[str, int]
    holes: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the batch carries nothing (no record, no drop range)."""
        return not self.end


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def new_batch_id(aircraft: str) -> str:
    """A fresh batch id: ``{aircraft}:{epoch ms}:{12 hex}`` (pattern ``[A-Za-z0-9_.:-]+``)."""
    return f"{_SAFE.sub('_', aircraft)}:{int(time.time() * 1000)}:{secrets.token_hex(6)}"


def _chunk_json(stream: str, priority: int, items: Sequence[Record | DropRange]) -> str:
    recs = ",".join(f'{{"seq":{i.seq},"created":{i.created!r},"payload":{i.payload_json}}}'
                    for i in items if isinstance(i, Record))
    drops = ",".join(f'{{"lo":{i.lo},"hi":{i.hi},"records":{i.records},"bytes":{i.bytes},'
                     f'"at":{i.at!r}}}' for i in items if isinstance(i, DropRange))
    return (f'{{"stream":{json.dumps(stream)},"priority":{priority},"records":[{recs}],'
            f'"dropped":[{drops}]}}')


def build_batch(reader: OutboxReader, aircraft: str, streams: Sequence[tuple[str, int]],
                cursors: Mapping[str, int], limits: BatchLimits,
                compressor: zstandard.ZstdCompressor | None = None,
                status: Mapping[str, object] | None = None) -> Batch:
    """Read the next items of ``streams`` ((name, priority) in sending order) after ``cursors``.

    Blocking (database reads, compression): call it from a worker thread. The result may be
    :attr:`Batch.empty`. ``status``: the aircraft's state for the ground's fleet view
    (``{"backlog": {stream: n}, "bite": {...}, "software": ..., "content": ...}``), or None.
    """
    chunks: list[str] = []
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    counts: dict[str, int] = {}
    holes: dict[str, int] = {}
    nrec = nbytes = 0
    for stream, priority in streams:
        left_rec, left_bytes = limits.max_records - nrec, limits.max_bytes - nbytes
        if left_rec <= 0 or left_bytes <= 0:
            break
        after = cursors.get(stream, 0)
        items, hole = reader.items(stream, after, left_rec, left_bytes)
        if hole is not None and not items:
            holes[stream] = hole
        if not items:
            continue
        text = _chunk_json(stream, priority, items)
        chunks.append(text)
        n = sum(1 for i in items if isinstance(i, Record))
        last = items[-1]
        start[stream] = after
        end[stream] = last.seq if isinstance(last, Record) else last.hi
        counts[stream] = n
        nrec += n
        nbytes += len(text)
    batch_id = new_batch_id(aircraft)
    extra = f'"status":{json.dumps(status, separators=(",", ":"))},' if status else ""
    raw = (f'{{"v":1,"aircraft":{json.dumps(aircraft)},"batch_id":{json.dumps(batch_id)},'
           f'"sent":{time.time()!r},{extra}"streams":[{",".join(chunks)}]}}').encode()
    cctx = compressor or zstandard.ZstdCompressor(level=limits.level)
    return Batch(batch_id, cctx.compress(raw), len(raw), nrec, start, end, counts, holes)
