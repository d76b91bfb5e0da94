"""Outbox items, batches (the wire contract with the receiver), acknowledgements, summaries."""

from __future__ import annotations

import json

import zstandard
from sqlalchemy import insert, select

from appliance.avionics.params import Parameter, Validity
from appliance.avionics.summaries import FlightHealth, Sample, downsample
from appliance.store.models import journal as journal_table
from appliance.store.models import outbox, stream_seq
from appliance.sync.batch import BatchLimits, build_batch
from appliance.sync.queue import DropRange, OutboxReader, Record, apply_ack, declare_lost
from appliance.sync.tables import sync_drop, sync_stream
from ground_receiver.wire import decode_body

from .helpers import AIRCRAFT, Journal


def _drop(j: Journal, stream: str, lo: int, hi: int) -> None:
    def write(conn):  # type: ignore[no-untyped-def]
        conn.execute(outbox.delete().where(outbox.c.stream == stream, outbox.c.seq >= lo,
                                           outbox.c.seq <= hi))
        conn.execute(insert(sync_drop).values(stream=stream, seq_lo=lo, seq_hi=hi,
                                              records=hi - lo + 1, bytes=10, dropped_at=1.0))
    j.writer.submit(write).result()


def test_items_merge_records_and_drop_ranges_consecutively(journal: Journal) -> None:
    journal.fill("logs", 20)
    _drop(journal, "logs", 5, 9)
    _drop(journal, "logs", 15, 20)
    r = OutboxReader(journal.reader)
    items, hole = r.items("logs", 0, 100, 10**6)
    kinds = [(type(i).__name__, i.seq if isinstance(i, Record) else (i.lo, i.hi)) for i in items]
    assert kinds[:5] == [("Record", 1), ("Record", 2), ("Record", 3), ("Record", 4),
                         ("DropRange", (5, 9))]
    assert kinds[-1] == ("DropRange", (15, 20)) and hole is None
    assert len([i for i in items if isinstance(i, Record)]) == 9
    items, _ = r.items("logs", 12, 100, 10**6)  # from a cursor
    assert [i.seq if isinstance(i, Record) else i.lo for i in items] == [13, 14, 15]
    items, _ = r.items("logs", 0, 3, 10**6)  # record limit
    assert [i.seq for i in items if isinstance(i, Record)] == [1, 2, 3]


def test_a_hole_is_reported_not_skipped(journal: Journal) -> None:
    journal.fill("orders", 10)
    journal.writer.submit(lambda c: c.execute(outbox.delete().where(outbox.c.seq == 4))).result()
    items, hole = OutboxReader(journal.reader).items("orders", 0, 100, 10**6)
    assert [i.seq for i in items if isinstance(i, Record)] == [1, 2, 3] and hole == 4
    items, hole = OutboxReader(journal.reader).items("orders", 3, 100, 10**6)
    assert items == [] and hole == 4


def test_batch_is_what_the_receiver_decodes(journal: Journal) -> None:
    journal.fill("orders", 3, lambda i: {"seat": f"{i}A", "items": [{"sku": "TEA", "qty": 1}]})
    journal.fill("logs", 4)
    _drop(journal, "logs", 1, 2)
    b = build_batch(OutboxReader(journal.reader), AIRCRAFT, [("orders", 0), ("logs", 5)], {},
                    BatchLimits(max_records=100, max_bytes=10**6))
    assert b.records == 5 and b.end == {"orders": 3, "logs": 4} and b.start == {"orders": 0, "logs": 0}
    raw = zstandard.ZstdDecompressor().decompress(b.body)
    assert len(raw) == b.raw_bytes
    wire = decode_body(b.body, "zstd", max_batch_bytes=10**6, max_records=100)
    assert wire.batch_id == b.batch_id and wire.aircraft == AIRCRAFT
    assert [s.stream for s in wire.streams] == ["orders", "logs"]
    assert wire.streams[0].records[1].payload == {"seat": "1A", "items": [{"sku": "TEA", "qty": 1}]}
    assert [(d.lo, d.hi) for d in wire.streams[1].dropped] == [(1, 2)]
    assert json.loads(raw)["v"] == 1


def test_ack_deletes_only_what_was_acknowledged(journal: Journal) -> None:
    journal.fill("usage", 10)
    journal.fill("logs", 10)
    _drop(journal, "logs", 3, 6)
    journal.writer.submit(lambda c: apply_ack(c, {"usage": 4, "logs": 5}, 7.0)).result()
    with journal.reader.connect() as c:
        left = {s: [q for (q,) in c.execute(select(outbox.c.seq).where(outbox.c.stream == s)
                                            .order_by(outbox.c.seq))] for s in ("usage", "logs")}
        ranges = [(r.seq_lo, r.seq_hi) for r in c.execute(select(sync_drop))]
        acked = dict(c.execute(select(sync_stream.c.stream, sync_stream.c.acked_seq)).all())
    assert left == {"usage": list(range(5, 11)), "logs": list(range(7, 11))}
    assert ranges == [(6, 6)] and acked == {"usage": 4, "logs": 5}


def test_ack_beyond_the_local_sequence_moves_it_up(journal: Journal) -> None:
    journal.fill("orders", 2)
    journal.writer.submit(lambda c: apply_ack(c, {"orders": 50}, 1.0)).result()
    with journal.reader.connect() as c:
        assert c.execute(select(stream_seq.c.last_seq).where(
            stream_seq.c.stream == "orders")).scalar() == 50
    assert journal.fill("orders", 1) == [f"{AIRCRAFT}:orders:51"]


def test_watermark_below_the_acknowledged_declares_only_what_is_gone(journal: Journal) -> None:
    journal.fill("usage", 20)
    journal.fill("logs", 5)
    journal.writer.submit(lambda c: apply_ack(c, {"usage": 10, "logs": 5}, 1.0)).result()
    journal.fill("usage", 1)  # seq 21
    # a row of the acknowledged span is still here (it must be sent, not declared lost)
    journal.writer.submit(lambda c: c.execute(insert(outbox).values(
        stream="usage", seq=7, priority=1, idempotency_key=f"{AIRCRAFT}:usage:7", created=1.0,
        payload={"i": 6}))).result()
    # the receiver went back to usage 3 (logs: as acknowledged, orders: never seen here)
    lost = journal.writer.submit(
        lambda c: declare_lost(c, {"usage": 3, "logs": 5, "orders": 9}, 2.0)).result()
    assert [(x.stream, x.lo, x.hi, x.acked, x.watermark) for x in lost] == [
        ("usage", 4, 6, 10, 3), ("usage", 8, 10, 10, 3)]
    assert "usage seq 4..6" in lost[0].detail
    with journal.reader.connect() as c:
        ranges = [(r.stream, r.seq_lo, r.seq_hi, r.records)
                  for r in c.execute(select(sync_drop).order_by(sync_drop.c.seq_lo))]
        acked = dict(c.execute(select(sync_stream.c.stream, sync_stream.c.acked_seq)).all())
        notes = [r.data for r in c.execute(select(journal_table).where(
            journal_table.c.kind == "sync_lost"))]
    assert ranges == [("usage", 4, 6, 3), ("usage", 8, 10, 3)]
    assert acked == {"usage": 3, "logs": 5}
    assert [(n["stream"], n["seq_lo"], n["seq_hi"]) for n in notes] == [
        ("usage", 4, 6), ("usage", 8, 10)]
    # the stream goes on from the watermark: the declared ranges, the row kept, the rest
    items, hole = OutboxReader(journal.reader).items("usage", 3, 100, 10**6)
    assert hole is None
    assert [(i.lo, i.hi) if isinstance(i, DropRange) else i.seq for i in items] == [
        (4, 6), 7, (8, 10), *range(11, 22)]
    # asked again (or the same answer seen twice): nothing declared twice
    assert journal.writer.submit(
        lambda c: declare_lost(c, {"usage": 3, "logs": 5}, 3.0)).result() == []


def _sample(t: float, lat: float | None, track: float = 90.0, alt: float = 30000) -> Sample:
    def p(name: str, v: float) -> Parameter:
        return Parameter(name, v, "", Validity.VALID, t, "card")
    params = {"track_angle_true": p("track_angle_true", track),
              "pressure_altitude": p("pressure_altitude", alt)}
    if lat is not None:
        params |= {"latitude": p("latitude", lat), "longitude": p("longitude", 1.0)}
    return Sample(t, 1_700_000_000 + t, params)


def test_track_downsampling_keeps_one_point_per_period_and_the_turns() -> None:
    samples = [_sample(t, 43.0 + t / 1000) for t in range(0, 121)]  # 2 minutes, 1 Hz, straight
    assert [round(p.utc - 1_700_000_000) for p in downsample(samples, 30)] == [0, 30, 60, 90, 120]
    turn = [_sample(t, 43.0, track=90 + (40 if t >= 10 else 0)) for t in range(0, 20)]
    assert [round(p.utc - 1_700_000_000) for p in downsample(turn, 30, 15)] == [0, 10]
    assert downsample([_sample(t, None) for t in range(5)]) == []  # no position, no point


def test_flight_health_counts_validity_and_extremes() -> None:
    h = FlightHealth(["latitude", "pressure_altitude"])
    for t in range(10):
        h.push(_sample(t, 43.0 if t % 2 else None, alt=1000 * t), "CLIMB" if t < 5 else "CRUISE")
    s = h.summary()
    assert s["parameters"]["latitude"] == {"valid_ratio": 0.5, "samples": 10,
                                           "not_valid": {"missing": 5}}
    assert s["max"]["pressure_altitude"] == 9000 and s["phases"] == ["CLIMB", "CRUISE"]
    assert s["duration_s"] == 9.0


def test_drop_range_dataclass_is_frozen() -> None:
    r = DropRange(1, 2, 2, 10, 0.0)
    try:
        r.lo = 5  # type: ignore[misc]
    except AttributeError:
        return
    raise AssertionError("DropRange must be frozen")
