"""Migrations at start: alembic ``upgrade head``, after a backup copy of the database.

The backup (SQLite online backup API, so it is consistent even with a WAL) is taken only when a
migration is pending on a database that already has tables: ``journal.db.pre-<revision>.bak``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from ..errors import StoreError
from .recovery import backup_copy

__all__ = ["MIGRATIONS", "alembic_config", "upgrade"]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    """An alembic Config for ``engine`` using the package's ``migrations/`` folder (shipped in the wheel)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def _has_tables(engine: Engine) -> bool:
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE type = 'table'").scalar()
    return bool(n)


def upgrade(engine: Engine, db: Path) -> str | None:
    """Bring the database to the newest revision; returns the backup path's name if one was made.

    Raises StoreError if a migration fails (the backup is kept).
    """
    cfg = alembic_config(engine)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == head:
        return None
    made = None
    if db.exists() and _has_tables(engine):
        target = db.with_name(f"{db.name}.pre-{head}.bak")
        backup_copy(db, target)
        made = target.name
        log.info("backed up %s to %s before migrating %s -> %s", db, target, current, head)
    try:
        command.upgrade(cfg, "head")
    except Exception as e:
        raise StoreError(f"migration {current} -> {head} failed: {e}") from e
    return made
