"""A migrated journal database with its single writer and a read engine, for subsystem tests."""

from __future__ import annotations

from pathlib import Path

from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer


class MigratedJournal:
    """A migrated journal database with its writer and a read engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        engine = make_engine(path)
        upgrade(engine, path)
        self.writer = Writer(engine)
        self.writer.start()
        self.reader = make_engine(path, readonly=True)

    def close(self) -> None:
        self.writer.stop()
