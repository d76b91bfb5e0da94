"""Recovery at start: integrity check, corrupt journal moved aside, newest good backup restored."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from appliance.store.files import atomic_write
from appliance.store.recovery import RED, backup_copy, check, recover


def make_db(path: Path, rows: int = 2000) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 200,) for _ in range(rows)])
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def corrupt_middle(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(8192))


def test_good_journal_passes_and_is_backed_up(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    make_db(db)
    rep = recover(db)
    assert rep.state == "green" and (tmp_path / "journal.db.last-good.bak").exists()


def test_corrupt_journal_moved_aside_and_backup_restored(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    make_db(db)
    backup_copy(db, tmp_path / "journal.db.last-good.bak")
    corrupt_middle(db)
    assert check(db, 10)[0] is False
    rep = recover(db)
    assert rep.state == RED and rep.restored_from == "journal.db.last-good.bak"
    assert rep.moved_aside and (Path(rep.moved_aside) / "journal.db").exists()
    assert check(db, 10)[0] is True
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone()[0] == 2000


def test_corrupt_journal_without_backup_starts_new(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    db.write_bytes(os.urandom(50_000))  # not a database at all
    rep = recover(db)
    assert rep.state == RED and rep.restored_from is None and not db.exists()
    assert "no good backup" in rep.reason


def test_bad_backup_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    make_db(db)
    bak = tmp_path / "journal.db.pre-0002.bak"
    bak.write_bytes(b"SQLite format 3\0" + os.urandom(10_000))
    corrupt_middle(db)
    rep = recover(db)
    assert rep.restored_from is None


def test_check_is_bounded_in_time(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    make_db(db, rows=20000)
    ok, why = check(db, budget_s=0.0)
    assert ok is None and "did not finish" in why


def test_atomic_write_and_leftover_temp_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    (tmp_path / ".journal.db.restore.tmp").write_bytes(b"half")
    rep = recover(tmp_path / "journal.db")
    assert rep.removed_temp_files == 1 and not list(tmp_path.glob(".*.tmp"))
