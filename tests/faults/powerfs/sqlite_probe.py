"""A tiny SQLite writer that reports each acknowledged commit, to be killed at a power cut.

Run as a separate process (a power cut kills the application too, and a process
with a memory-mapped ``-shm`` file on a dead FUSE mount may get SIGBUS)::

    python -m tests.faults.powerfs.sqlite_probe DB --synchronous FULL --first-id 1000

It opens ``DB`` with plain :mod:`sqlite3` in ``journal_mode=WAL``, prints ``ready``,
then inserts rows ``(id, payload)`` into table ``journal``, one autocommit
transaction each, with ids counting up from ``--first-id``. After each commit
returns it prints the id on its own line and flushes: a printed id is an
*acknowledged* row. It stops after ``--count`` rows (default: never) or at the first
SQLite error (exit status 3, message on stderr).

:func:`create_db` makes the schema, :func:`ids_in_db` reads what survived.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

SCHEMA = "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"


def create_db(path: str) -> None:
    """Create the WAL database at ``path`` and make it fully durable.

    Closes SQLite, then fsyncs the database file and its directory, so the schema
    survives any later power cut whatever the durability model of names.

    Raises:
        sqlite3.Error: SQLite failed.
        OSError: fsync failed.
    """
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(SCHEMA)
    finally:
        con.close()
    directory = os.path.dirname(os.path.abspath(path))
    for target, flags in ((path, os.O_RDONLY), (directory, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ids_in_db(path: str) -> tuple[set[int], str]:
    """Open the database (SQLite recovers its WAL) and read it back.

    Returns:
        ``(ids, integrity)``: the ids in table ``journal`` and the first line of
        ``PRAGMA integrity_check`` (``"ok"`` when sound).

    Raises:
        sqlite3.Error: the database cannot be opened or read.
    """
    con = sqlite3.connect(path, isolation_level=None)
    try:
        integrity = str(con.execute("PRAGMA integrity_check").fetchone()[0])
        ids = {int(row[0]) for row in con.execute("SELECT id FROM journal")}
    finally:
        con.close()
    return ids, integrity


def run(
    db: str, synchronous: str, first_id: int, count: int | None, payload: int, autocheckpoint: int
) -> int:
    """Insert and acknowledge rows until ``count`` are done or SQLite fails.

    Returns:
        0 when ``count`` rows were committed, 3 after a SQLite error.
    """
    out = sys.stdout
    try:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={synchronous}")
        con.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
        out.write("ready\n")
        out.flush()
        row = first_id
        blob = os.urandom(payload)
        while count is None or row < first_id + count:
            con.execute("INSERT INTO journal (id, payload) VALUES (?, ?)", (row, blob))
            out.write(f"{row}\n")
            out.flush()
            row += 1
    except sqlite3.Error as exc:
        print(f"sqlite_probe: {exc}", file=sys.stderr)
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and :func:`run`."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.powerfs.sqlite_probe")
    parser.add_argument("db")
    parser.add_argument("--synchronous", choices=("OFF", "NORMAL", "FULL", "EXTRA"), default="FULL")
    parser.add_argument("--first-id", type=int, default=1)
    parser.add_argument("--count", type=int, default=None)
    parser.add_argument("--payload", type=int, default=200, help="bytes of payload per row")
    parser.add_argument("--autocheckpoint", type=int, default=100, help="WAL pages between checkpoints")
    args = parser.parse_args(argv)
    return run(args.db, args.synchronous, args.first_id, args.count, args.payload, args.autocheckpoint)


if __name__ == "__main__":
    sys.exit(main())
