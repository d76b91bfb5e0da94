"""The intake's records in the journal database: uploads, installed bundles, time floor, journal.

Tables in :mod:`.tables`. Reads use the read engine and block: the service calls them through
``asyncio.to_thread``. Writes are functions ``fn(conn, ...)`` to run inside a single-writer
transaction. Every intake step is journaled (kind ``intake``, ``data = {"action": ..., ...}``)
and queued for the ground (stream ``intake``) in the same transaction, through
:func:`appliance.store.journal.write_entry` (the one row and payload shape).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import UnknownUpload
from ..modes.events import TimeSource
from ..store.journal import JournalEntry, JournalKind, write_entry
from ..store.models import state
from .tables import TIME_FLOOR_KEY, intake_installed, intake_upload

__all__ = ["STREAM", "IntakeRecords"]

#: The ground stream of intake journal rows.
STREAM = "intake"


@dataclass(frozen=True, slots=True)
class IntakeRecords:
    """Reads (blocking) and writer functions over the intake tables and the journal.

    ``utc()`` gives (best-known UTC epoch s, its TimeSource value) for journal rows;
    ``aircraft_id`` goes into outbox keys.
    """

    reader: Engine
    aircraft_id: str
    utc: Callable[[], tuple[float, str]]

    # --- reads (blocking) ------------------------------------------------------------------
    def find(self, bid: str) -> Any:
        """The ``intake_upload`` row of ``bid``, or None."""
        with self.reader.connect() as conn:
            return conn.execute(select(intake_upload).where(intake_upload.c.id == bid)).first()

    def row(self, bid: str) -> Any:
        """The ``intake_upload`` row of ``bid``; UnknownUpload if there is none."""
        row = self.find(bid)
        if row is None:
            raise UnknownUpload(f"no upload {bid}")
        return row

    def uploads(self) -> list[Any]:
        """Every ``intake_upload`` row (for the recovery at start)."""
        with self.reader.connect() as conn:
            return list(conn.execute(select(intake_upload)).all())

    def receiving(self) -> int:
        """How many uploads are receiving (paused or resumed by a mode change)."""
        with self.reader.connect() as conn:
            return len(conn.execute(select(intake_upload.c.id)
                                    .where(intake_upload.c.state == "receiving")).all())

    def is_active(self, bid: str) -> bool:
        """True if ``bid`` is the installed bundle of its kind."""
        with self.reader.connect() as conn:
            return conn.execute(select(intake_installed.c.kind)
                                .where(intake_installed.c.bundle_id == bid)).first() is not None

    def installed_version(self, kind: str) -> int:
        """The active version of ``kind`` (0 if none)."""
        with self.reader.connect() as conn:
            v = conn.execute(select(intake_installed.c.version)
                             .where(intake_installed.c.kind == kind)).scalar()
        return int(v or 0)

    def time_floor(self) -> float | None:
        """The security time floor (epoch s), or None; it never goes back.

        It is the newest signed ``issued`` time and the newest clock a bundle was admitted by
        (see :meth:`open_upload`).
        """
        with self.reader.connect() as conn:
            floor = conn.execute(select(state.c.value).where(state.c.key == TIME_FLOOR_KEY)).scalar()
        return None if floor is None else float(floor)

    def key_set(self) -> dict[str, Any] | None:
        """The installed ``keys`` row (the rotated key set, see :mod:`.keyset`), or None."""
        with self.reader.connect() as conn:
            row = conn.execute(select(intake_installed)
                               .where(intake_installed.c.kind == "keys")).mappings().first()
        return None if row is None else dict(row)

    def installed(self) -> dict[str, dict[str, Any]]:
        """Per kind: ``{kind, version, bundle_id, name, keyids, installed_at, detail}``."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(intake_installed)).mappings().all()
        return {r["kind"]: dict(r) for r in rows}

    def list_uploads(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` uploads (their rows without the signed metadata)."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(intake_upload).order_by(intake_upload.c.updated.desc())
                                .limit(limit)).mappings().all()
        return [{k: v for k, v in r.items() if k != "envelope"} for r in rows]

    # --- writer functions ------------------------------------------------------------------
    def journal(self, conn: Connection, action: str, summary: str, data: Mapping[str, Any],
                ) -> None:
        """Journal an intake step (``data`` gets ``action`` first) and queue it on ``intake``."""
        utc, src = self.utc()
        write_entry(conn, JournalEntry(JournalKind.INTAKE, summary, utc, TimeSource(src),
                                       {"action": action, **data}), self.aircraft_id, STREAM)

    @staticmethod
    def open_upload(conn: Connection, bid: str, values: Mapping[str, Any], exists: bool,
                    floor: float) -> None:
        """Insert (or reset, if it ``exists``) the upload row; raise the time floor to ``floor``.

        The floor (epoch s) only rises: a lower ``floor`` leaves the stored one.
        """
        if exists:
            conn.execute(update(intake_upload).where(intake_upload.c.id == bid).values(**values))
        else:
            conn.execute(insert(intake_upload).values(id=bid, **values))
        stored = conn.execute(select(state.c.value).where(state.c.key == TIME_FLOOR_KEY)).scalar()
        if stored is None or floor > float(stored):
            conn.execute(sqlite_insert(state).values(key=TIME_FLOOR_KEY, value=floor)
                         .on_conflict_do_update(index_elements=["key"], set_={"value": floor}))

    @staticmethod
    def set_upload(conn: Connection, bid: str, **values: Any) -> None:
        """Set columns of the upload row ``bid`` (``state``, ``received``, ``reason``, ``updated``)."""
        conn.execute(update(intake_upload).where(intake_upload.c.id == bid).values(**values))

    @staticmethod
    def install(conn: Connection, kind: str, row: Mapping[str, Any]) -> None:
        """Make ``row`` (``version, bundle_id, name, keyids, installed_at, detail``) ``kind``'s."""
        conn.execute(sqlite_insert(intake_installed).values(kind=kind, **row)
                     .on_conflict_do_update(index_elements=["kind"], set_=dict(row)))
