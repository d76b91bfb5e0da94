"""The activators' protocol; the software activator: hand the staged bundle to the privileged updater.

The daemon builds it (``appliance.daemon.build``). The service cannot write the software slots
(``ProtectSystem=strict``, ``User=appliance``): activation writes a request file
(``<staging_dir>/software/request.json``: bundle id and signed envelope, durable) on the data
partition, and systemd's path unit ``appliance-update.path`` starts the privileged updater
(:mod:`.updater`), which re-verifies, installs into the inactive slot, switches, restarts this
service through systemd and judges the new slot's trial.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection

from ..store.files import atomic_write, ensure_dir
from ..store.writer import Writer
from .bundle import Verified

__all__ = ["Activator", "SoftwareActivator"]


class Activator(Protocol):
    """Switches a staged bundle in: ``extra(conn, detail)`` must run inside the switching transaction."""

    async def __call__(self, staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Switch ``staged`` in, running ``extra(conn, detail)`` in the switching transaction.

        ``detail`` says what was switched (titles, slot); it is also returned.
        """


class SoftwareActivator:
    """Write the updater's request, then commit the activation record."""

    def __init__(self, request: Path, writer: Writer,
                 envelope_of: Callable[[str], Any]) -> None:
        """``request``: the request file's path; ``envelope_of(bundle_id)``: its stored envelope."""
        self.request = request
        self.writer = writer
        self.envelope_of = envelope_of

    async def __call__(self, staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        """Write the request durably, then commit ``extra``; returns the detail recorded.

        The request comes first: a cut before the commit leaves an update that the updater still
        performs (the slots are the authority at the next start), never an activation recorded
        that nobody performs.
        """
        envelope = await asyncio.to_thread(self.envelope_of, v.bundle_id)
        body = {"bundle_id": v.bundle_id, "version": v.meta.version, "name": v.meta.name,
                "envelope": envelope, "requested_at": time.time()}
        await asyncio.to_thread(ensure_dir, self.request.parent)
        await asyncio.to_thread(atomic_write, self.request,
                                json.dumps(body, sort_keys=True).encode(), 0o640)
        detail = {"handed_to": "updater", "request": str(self.request)}
        await self.writer.run(lambda conn: extra(conn, detail))
        return detail
