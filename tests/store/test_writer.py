"""The single writer with group commit, the journal, the outbox, and migrations with backup."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, insert, select, text

from appliance.errors import StoreError, WriterClosedError
from appliance.modes.events import ModeChanged, PhaseChanged
from appliance.store.engine import make_engine
from appliance.store.journal import Journal
from appliance.store.migrate import alembic_config, upgrade
from appliance.store.models import outbox, state
from appliance.store.outbox import enqueue
from appliance.store.writer import Writer


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    upgrade(make_engine(path), path)
    return path


def test_pragmas(db: Path) -> None:
    with make_engine(db).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_group_commit_and_isolated_failures(db: Path) -> None:
    w = Writer(make_engine(db))
    w.start()
    gate, running = threading.Event(), threading.Event()

    def hold(c: Connection) -> None:  # hold the thread so that the next writes queue up together
        running.set()
        gate.wait(5)

    w.submit(hold)
    assert running.wait(5)
    futs = [w.submit(lambda c, i=i: c.execute(insert(state).values(key=f"k{i}", value=i)))
            for i in range(50)]
    bad = w.submit(lambda c: c.execute(insert(state).values(key="k1", value=0)))  # duplicate
    gate.set()
    for f in futs:
        f.result(5)
    with pytest.raises(Exception, match="UNIQUE"):
        bad.result(5)
    w.stop()
    assert w.stats.writes == 52 and w.stats.failed_writes == 1
    assert w.stats.commits == 2 and w.stats.max_group == 51
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM state").fetchone()[0] == 50
    with pytest.raises(WriterClosedError):
        w.submit(lambda c: None)


def deferred_violation(c: Connection) -> None:
    """A write whose foreign-key violation is only found at COMMIT (the commit fails)."""
    c.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
    c.execute(text("CREATE TABLE IF NOT EXISTS p(id INTEGER PRIMARY KEY)"))
    c.execute(text("CREATE TABLE IF NOT EXISTS ch(pid INTEGER REFERENCES p(id)"
                   " DEFERRABLE INITIALLY DEFERRED)"))
    c.execute(text("INSERT INTO ch VALUES (42)"))


def test_failed_commit_fails_every_caller(db: Path) -> None:
    w = Writer(make_engine(db))
    w.start()

    with pytest.raises(StoreError):
        w.submit(deferred_violation).result(5)
    w.stop()
    assert w.stats.failed_commits == 1


def test_health_follows_the_latest_group_not_a_sticky_flag(db: Path) -> None:
    """A failed commit makes the journal unhealthy until the next clean one; history remains."""
    w = Writer(make_engine(db), stall_s=0.1)
    assert w.health() == (True, "")
    w.start()

    with pytest.raises(StoreError):
        w.submit(deferred_violation).result(5)
    ok, why = w.health()
    assert not ok and "commit failed" in why
    st = w.stats
    assert st.failing and st.faults == 1 and st.first_fault_utc == st.last_fault_utc
    assert st.cleared_utc is None
    w.submit(lambda c: c.execute(insert(state).values(key="k", value="v"))).result(5)
    assert w.health() == (True, "")
    assert not st.failing and st.faults == 1 and st.cleared_utc is not None
    assert st.cleared_utc >= (st.last_fault_utc or 0)
    # A group that runs longer than stall_s is unhealthy while it runs.
    release = threading.Event()
    fut = w.submit(lambda c: release.wait(5))
    deadline = time.monotonic() + 5
    while w.health()[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    ok, why = w.health()
    assert not ok and "running for" in why
    release.set()
    fut.result(5)
    assert w.health() == (True, "")
    w.stop()
    assert w.health() == (True, "")  # stopped on purpose: not a fault


def test_outbox_sequence_and_keys(db: Path) -> None:
    w = Writer(make_engine(db))
    w.start()
    keys = [w.submit(lambda c: enqueue(c, "F-ABCD", "events", {"n": 1})).result() for _ in range(3)]
    w.stop()
    assert keys == ["F-ABCD:events:1", "F-ABCD:events:2", "F-ABCD:events:3"]


def test_mode_change_and_outbox_in_one_transaction(db: Path) -> None:
    w = Writer(make_engine(db))
    w.start()
    j = Journal(w, make_engine(db, readonly=True), "F-ABCD")

    async def main() -> None:
        a = await j.record(ModeChanged(1.0, 1720249163.0, "avionics", "GROUND", "FLIGHT", {"x": 1}))
        b = await j.record(PhaseChanged(2.0, 1720249164.0, "avionics", "takeoff", "climb", {}))
        assert a.outbox_key is not None and b.outbox_key is None

    asyncio.run(main())
    w.stop()
    rows = j.query("mode")
    assert [r["summary"] for r in rows] == ["mode GROUND -> FLIGHT"]
    assert rows[0]["utc_iso"].startswith("2024-07-06T06:59:23")
    assert j.last_mode() == "FLIGHT"
    with make_engine(db).connect() as c:
        (payload,) = c.execute(select(outbox.c.payload)).one()
    assert payload == {"journal_id": rows[0]["id"], "kind": "mode",
                       "utc": "2024-07-06T06:59:23.000+00:00", "time_source": "avionics",
                       "t_card": 1.0, "summary": "mode GROUND -> FLIGHT",
                       "data": {"previous": "GROUND", "current": "FLIGHT", "evidence": {"x": 1}}}


def test_migration_backup_when_pending(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    engine = make_engine(path)
    with engine.begin() as c:  # a database from before migrations, holding data
        c.exec_driver_sql("CREATE TABLE keepme (x)")
        c.exec_driver_sql("INSERT INTO keepme VALUES (42)")
    made = upgrade(engine, path)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert made == f"journal.db.pre-{head}.bak"
    bak = sqlite3.connect(tmp_path / made)
    assert bak.execute("SELECT x FROM keepme").fetchall() == [(42,)]
    assert upgrade(engine, path) is None  # at head: no second backup
    with engine.begin() as c:  # an unknown revision: a clear StoreError, the data kept
        c.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(StoreError):
        upgrade(engine, path)
    assert sqlite3.connect(path).execute("SELECT x FROM keepme").fetchall() == [(42,)]
