"""Migrations at start: alembic ``upgrade head``, after a backup copy of the database.

The backup (SQLite online backup API, so it is consistent even with a WAL) is taken only when a
migration is pending on a database that already has tables: ``journal.db.pre-<revision>.bak``.

The alembic scripts live in the source tree's top-level ``migrations/`` folder and are installed as the
package ``appliance.migrations`` (``setup.py`` maps the folder), so they are found through
``importlib.resources`` alike in an editable install and in an installed wheel.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from ..errors import StoreError
from .recovery import backup_copy

__all__ = ["MIGRATIONS", "alembic_config", "migrations_dir", "upgrade"]

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The folder of the installed ``appliance.migrations`` package (alembic's ``script_location``).

    Raises StoreError if the package is not a folder on disk (alembic loads its scripts by path).
    """
    found = files("appliance.migrations")
    if not isinstance(found, Path) or not (found / "env.py").is_file():
        raise StoreError(f"the alembic scripts are not installed as a folder: {found}")
    return found


MIGRATIONS = migrations_dir()


def alembic_config(engine: Engine) -> Config:
    """An alembic Config for ``engine`` using the installed ``appliance.migrations`` scripts."""
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
