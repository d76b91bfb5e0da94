"""SQLite engines: WAL, ``synchronous=FULL``, explicit BEGIN so that SAVEPOINTs work.

The writer engine has one connection (used only by the writer thread); readers get their own
engine with a small pool, so reads never wait on the writer's thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

__all__ = ["make_engine"]


def make_engine(path: Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
                readonly: bool = False) -> Engine:
    """An engine on the SQLite file ``path`` with the journal's pragmas on every connection."""
    url = f"sqlite+pysqlite:///{path}"
    engine = create_engine(url, poolclass=NullPool if readonly else None,
                           connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite quirk)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if readonly:
            cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if not readonly else "BEGIN")

    return engine
