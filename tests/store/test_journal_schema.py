"""One journal row schema and one outbox payload shape for every kind; migration 0007 converts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select

from appliance.modes.events import AirGroundChanged, ModeChanged, PhaseChanged, TimeSource
from appliance.store.engine import make_engine
from appliance.store.journal import (
    JournalEntry,
    JournalKind,
    entry_payload,
    event_entry,
    iso_utc,
    write_entry,
)
from appliance.store.migrate import alembic_config, upgrade
from appliance.store.models import journal, outbox

UTC = 1720249163.25
PAYLOAD_KEYS = {"journal_id", "kind", "utc", "time_source", "t_card", "summary", "data"}
EVENT_DATA = {"previous", "current", "evidence"}

#: Old (revision 0006) rows, one per kind, as each of the four writers stored them.
OLD_ROWS: list[dict[str, Any]] = [
    {"kind": "mode", "t_card": 12.5, "time_source": "avionics", "summary": "mode GROUND -> FLIGHT",
     "data": {"t_card": 12.5, "utc": UTC, "time_source": "avionics", "previous": "GROUND",
              "current": "FLIGHT", "evidence": {"votes": [1, 1]}, "kind": "mode"}},
    {"kind": "airground", "t_card": 12.0, "time_source": "avionics",
     "summary": "airground ground -> air",
     "data": {"t_card": 12.0, "utc": UTC, "time_source": "avionics", "previous": "ground",
              "current": "air", "evidence": {}, "kind": "airground"}},
    {"kind": "phase", "t_card": 13.0, "time_source": "local", "summary": "phase takeoff -> climb",
     "data": {"t_card": 13.0, "utc": UTC, "time_source": "local", "previous": "takeoff",
              "current": "climb", "evidence": {"rate": 1500.0}, "kind": "phase"}},
    {"kind": "bite", "t_card": None, "time_source": "local", "summary": "bite journal green: ok",
     "data": {"subsystem": "journal", "state": "green", "reason": "ok"}},
    {"kind": "admin", "t_card": None, "time_source": "local", "summary": "admin x by a (crew)",
     "data": {"user": "a", "role": "crew", "action": "x", "ok": True, "client": "t",
              "detail": {}}},
    {"kind": "intake", "t_card": None, "time_source": "local", "summary": "intake: begin",
     "data": {"action": "begin", "bundle_id": "ab" * 32, "kind": "content", "version": 2}},
    {"kind": "wap", "t_card": None, "time_source": "local", "summary": "wap ap1: up -> down",
     "data": {"event": "device", "device": "ap1", "previous": "up", "state": "down",
              "reason": "timeout"}},
    {"kind": "sync_lost", "t_card": None, "time_source": "local", "summary": "sync: lost 4..6",
     "data": {"stream": "usage", "seq_lo": 4, "seq_hi": 6, "records": 3, "acked": 6,
              "watermark": 3}},
]


def _entries() -> list[tuple[JournalEntry, str | None]]:
    ev = [ModeChanged(1.0, UTC, "avionics", "GROUND", "FLIGHT", {"votes": [1]}),
          AirGroundChanged(1.0, UTC, "avionics", "ground", "air", {}),
          PhaseChanged(2.0, UTC, "local", "takeoff", "climb", {})]
    out: list[tuple[JournalEntry, str | None]] = [
        (event_entry(e), "events") for e in ev]
    for kind, stream in ((JournalKind.BITE, "health"), (JournalKind.ADMIN, "audit"),
                         (JournalKind.INTAKE, "intake"), (JournalKind.WAP, "health"),
                         (JournalKind.SYNC_LOST, None), (JournalKind.GATE, None),
                         (JournalKind.ORDER, "order_status")):
        out.append((JournalEntry(kind, f"{kind} x", UTC, TimeSource.LOCAL, {"k": kind.value}),
                    stream))
    return out


def test_every_kind_one_row_schema_and_one_payload_shape(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    engine = make_engine(path)
    upgrade(engine, path)
    entries = _entries()
    assert {e.kind for e, _ in entries} == set(JournalKind)
    with engine.begin() as c:
        ids = [write_entry(c, e, "F-ABCD", s) for e, s in entries]
    with engine.connect() as c:
        rows = c.execute(select(journal).order_by(journal.c.id)).mappings().all()
        payloads = {r.idempotency_key: r.payload for r in c.execute(select(outbox))}
    for (entry, stream), got, row in zip(entries, ids, rows, strict=True):
        assert row["id"] == got.id and row["kind"] == entry.kind.value
        assert row["utc"] == UTC and row["time_source"] == entry.time_source.value
        assert not set(row["data"]) & {"kind", "utc", "time_source", "t_card"}
        if stream is None:
            assert got.outbox_key is None
            continue
        assert got.outbox_key is not None and got.outbox_key.startswith(f"F-ABCD:{stream}:")
        p = payloads[got.outbox_key]
        assert set(p) == PAYLOAD_KEYS and p == entry_payload(got.id, entry)
        assert p["utc"] == iso_utc(UTC) == "2024-07-06T06:59:23.250+00:00"
        assert p["kind"] == row["kind"] and p["data"] == row["data"]
        assert p["time_source"] in ("avionics", "local") and p["summary"] == row["summary"]
    assert rows[0]["data"] == {"previous": "GROUND", "current": "FLIGHT",
                               "evidence": {"votes": [1]}}


def test_queued_without_aircraft_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    engine = make_engine(path)
    upgrade(engine, path)
    entry = JournalEntry(JournalKind.BITE, "x", UTC, TimeSource.LOCAL)
    with engine.begin() as c, pytest.raises(ValueError, match="aircraft"):
        write_entry(c, entry, None, "health")


def test_migration_0007_converts_every_old_shape(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    engine = make_engine(path)
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0006")
    db = sqlite3.connect(path)
    with db:
        for i, r in enumerate(OLD_ROWS, 1):
            db.execute("INSERT INTO journal (kind, t_card, utc, time_source, summary, data, created)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (r["kind"], r["t_card"], UTC, r["time_source"], r["summary"],
                        json.dumps(r["data"]), UTC + i))
        # a pending record in the old payload shape (utc a float, fields spread at the top)
        old_payload = {"journal_id": 6, "kind": "intake", "utc": UTC, "time_source": "local",
                       "action": "begin"}
        db.execute("INSERT INTO stream_seq VALUES ('intake', 1)")
        db.execute("INSERT INTO outbox (stream, seq, idempotency_key, priority, payload, created)"
                   " VALUES ('intake', 1, 'F:intake:1', 2, ?, ?)", (json.dumps(old_payload), UTC))
    before = db.execute("SELECT id, kind, t_card, utc, time_source, summary, created FROM journal"
                        " ORDER BY id").fetchall()

    assert upgrade(engine, path) is not None  # to head, with a backup

    rows = db.execute("SELECT id, kind, t_card, utc, time_source, summary, created, data"
                      " FROM journal ORDER BY id").fetchall()
    assert [r[:7] for r in rows] == before  # the columns are untouched
    for old, row in zip(OLD_ROWS, rows, strict=True):
        data = json.loads(row[7])
        assert not set(data) & {"utc", "time_source", "t_card"}, data
        if old["kind"] in ("mode", "airground", "phase"):
            assert set(data) == EVENT_DATA
            assert data == {k: old["data"][k] for k in EVENT_DATA}
        else:  # already in the kind's own fields: unchanged
            assert data == old["data"]
    (payload,) = db.execute("SELECT payload FROM outbox").fetchone()
    assert json.loads(payload) == old_payload  # possibly on the ground already: never rewritten

    command.downgrade(cfg, "0006")  # and back: the old event rows again, exactly
    back = [json.loads(d) for (d,) in db.execute("SELECT data FROM journal ORDER BY id")]
    assert back == [r["data"] for r in OLD_ROWS]
    db.close()
