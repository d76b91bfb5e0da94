"""Recovery at start, before migrations: integrity check, WAL recovery, a lying disk survived.

:func:`recover` opens the journal (SQLite replays its WAL on the first read), runs
``PRAGMA quick_check`` bounded by a time budget, and:

- ok: keeps a fresh backup copy (``journal.db.last-good.bak``) if the last one is older than
  ``backup_every_s``;
- corrupt (or not a database at all): moves the file and its ``-wal``/``-shm`` aside into
  ``corrupt/<UTC stamp>/``, restores the newest backup that itself passes the check (or starts a new
  journal), and reports a BITE failure — the service still starts; it never restart-loops;
- out of time: reports that the check is incomplete (amber) and goes on.

Leftover temporary files (``.*.tmp``) from interrupted atomic writes are removed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .files import ensure_dir, fsync_dir, fsync_file, replace_durably

__all__ = ["RecoveryReport", "backup_copy", "check", "recover"]

log = logging.getLogger(__name__)
GREEN, AMBER, RED = "green", "amber", "red"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What recovery found and did; ``state`` is the journal's BITE colour."""

    state: str
    reason: str
    duration_s: float
    moved_aside: str | None = None
    restored_from: str | None = None
    removed_temp_files: int = 0


def check(db: Path, budget_s: float) -> tuple[bool | None, str]:
    """Run ``PRAGMA quick_check`` on ``db`` within ``budget_s`` seconds.

    Returns (True, "ok"), (False, why) for a corrupt file, or (None, why) if the budget ran out.
    """
    deadline = time.monotonic() + budget_s
    try:
        con = sqlite3.connect(db, timeout=5)
    except sqlite3.Error as e:
        return False, f"cannot open: {e}"
    try:
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.OperationalError as e:
        if "interrupt" in str(e):
            return None, f"integrity check did not finish within {budget_s:.0f} s"
        return False, str(e)
    except sqlite3.DatabaseError as e:
        return False, str(e)
    finally:
        con.close()
    if rows == [("ok",)]:
        return True, "ok"
    return False, "; ".join(str(r[0]) for r in rows[:5])


def backup_copy(db: Path, target: Path) -> None:
    """Consistent copy of ``db`` (online backup API) written durably to ``target``."""
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(db)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    fsync_file(tmp)
    replace_durably(tmp, target)


def _move_aside(db: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    dest = ensure_dir(db.parent / "corrupt" / stamp)  # every new level durable
    for suffix in ("", "-wal", "-shm"):
        f = db.with_name(db.name + suffix)
        if f.exists():
            os.replace(f, dest / f.name)
    fsync_dir(dest)
    fsync_dir(db.parent)
    return dest


def _backups(db: Path) -> list[Path]:
    found = [p for p in db.parent.glob(f"{db.name}.*.bak") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def recover(db: Path, budget_s: float = 10.0, backup_every_s: float = 3600.0) -> RecoveryReport:
    """Check the journal at ``db`` and repair what can be repaired; never raises on corruption."""
    t0 = time.monotonic()
    removed = 0
    if db.parent.exists():
        for tmp in db.parent.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
    if not db.exists() or db.stat().st_size == 0:
        return RecoveryReport(GREEN, "new journal", time.monotonic() - t0, removed_temp_files=removed)
    ok, why = check(db, budget_s)
    if ok is None:
        log.warning("journal %s: %s", db, why)
        return RecoveryReport(AMBER, why, time.monotonic() - t0, removed_temp_files=removed)
    if ok:
        last = db.with_name(f"{db.name}.last-good.bak")
        if not last.exists() or time.time() - last.stat().st_mtime > backup_every_s:
            try:
                backup_copy(db, last)
            except (OSError, sqlite3.Error) as e:
                log.warning("could not refresh the backup %s: %s", last, e)
        return RecoveryReport(GREEN, "integrity check passed", time.monotonic() - t0,
                              removed_temp_files=removed)
    log.error("journal %s is corrupt (%s): moving it aside", db, why)
    dest = _move_aside(db)
    restored = None
    for bak in _backups(db):
        good, _ = check(bak, budget_s)
        if good:
            tmp = db.with_name(f".{db.name}.restore.tmp")
            shutil.copyfile(bak, tmp)
            fsync_file(tmp)
            replace_durably(tmp, db)
            restored = bak.name
            break
    reason = f"journal corrupt ({why}); moved to {dest}; " + (
        f"restored backup {restored}" if restored else "no good backup: started a new journal")
    log.error("%s", reason)
    return RecoveryReport(RED, reason, time.monotonic() - t0, str(dest), restored, removed)
