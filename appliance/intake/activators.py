"""The activators' protocol; the software activator: install into the inactive A/B slot, flip, restart.

The daemon builds them (``appliance.daemon.build``). Software activation installs into the
inactive A/B slot under ``<staging_dir>/software``, flips ``current`` and calls ``restart``
(default: SIGTERM to this process, so the supervisor/systemd starts the new slot and judges it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection

from ..store.writer import Writer
from .bundle import Verified
from .slots import SlotInstaller, SoftwareSlots

__all__ = ["Activator", "SoftwareActivator"]


class Activator(Protocol):
    """Switches a staged bundle in: ``extra(conn, detail)`` must run inside the switching transaction."""

    async def __call__(self, staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Switch ``staged`` in, running ``extra(conn, detail)`` in the switching transaction.

        ``detail`` says what was switched (titles, slot); it is also returned.
        """


class SoftwareActivator:
    """Install into the inactive slot, put it on trial (flip), record it, then restart."""

    def __init__(self, slots: SoftwareSlots, installer: SlotInstaller, writer: Writer,
                 restart: Callable[[], None], restart_delay_s: float = 0.5) -> None:
        """``restart`` is called ``restart_delay_s`` after the flip and the record are durable."""
        self.slots = slots
        self.installer = installer
        self.writer = writer
        self.restart = restart
        self.restart_delay_s = restart_delay_s

    async def __call__(self, staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Build the slot, flip (trial), commit ``extra``; raises with the running slot untouched.

        A cut after the flip and before the commit is reconciled at the next start from the
        slots (they are the authority: ``IntakeService.start`` syncs ``intake_installed``).
        """
        info = {"version": v.meta.version, "bundle_id": v.bundle_id, "name": v.meta.name,
                "keyids": list(v.keyids), "installed_at": time.time()}
        previous = self.slots.current()
        slot = await asyncio.to_thread(self.slots.install, staged, info, self.installer)
        await asyncio.to_thread(self.slots.activate, slot)
        detail = {"slot": slot, "previous_slot": previous}
        await self.writer.run(lambda conn: extra(conn, detail))
        asyncio.get_running_loop().call_later(self.restart_delay_s, self.restart)
        return detail
