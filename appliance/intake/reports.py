"""The privileged updater's trial reports, as the intake service journals them.

The updater (:mod:`.updater`, root) leaves one JSON file per outcome in
``<staging_dir>/software/reports``; :func:`sync_reports` journals each (kind ``intake``, action
``software_<result>``, queued to the ground on stream ``intake`` in the same transaction), keeps the
newest for BITE (:meth:`SoftwareSlots.keep_last`) and makes ``intake_installed`` match the current
slot. Every call blocks but :func:`sync_reports`, which runs the blocking parts in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from ..store.writer import Writer
from .records import IntakeRecords
from .slots import SoftwareSlots

__all__ = ["pending_request", "poll_reports", "sync_reports"]

log = logging.getLogger(__name__)


def pending_request(request: Path | None) -> str | None:
    """The bundle id of the software update request not yet taken by the updater, or None."""
    if request is None:
        return None
    try:
        bid = json.loads(request.read_text()).get("bundle_id")
    except (OSError, ValueError, AttributeError):
        return None
    return bid if isinstance(bid, str) else None


async def sync_reports(slots: SoftwareSlots, records: IntakeRecords, writer: Writer,
                       installed: bool = False) -> list[dict[str, Any]]:
    """Journal the updater's trial reports; returns them.

    With ``installed`` (at start), or after a report, ``intake_installed`` is made to match
    ``current``.
    """
    reports = await asyncio.to_thread(slots.take_reports)
    if not reports and not installed:
        return []
    current = await asyncio.to_thread(slots.current)
    info = await asyncio.to_thread(slots.info, current)

    def write(conn: Connection) -> None:
        for report in reports:
            result = report.get("result")
            records.journal(
                conn, f"software_{result}",
                f"intake: software update to v{report.get('version')} {result}"
                + (f": {report['reason']}" if report.get("reason") else "")
                + f" (running slot {current})", report)
        if info is not None:
            records.install(conn, "software", {
                "version": info.get("version", 0), "bundle_id": info.get("bundle_id", ""),
                "name": info.get("name", ""), "keyids": info.get("keyids", []),
                "installed_at": info.get("installed_at", 0.0), "detail": {"slot": current}})
    if reports or info is not None:
        await writer.run(write)
    if reports:
        await asyncio.to_thread(slots.keep_last, reports[-1])
    return reports


async def poll_reports(every_s: float, sync: Callable[[], Awaitable[object]]) -> None:
    """Call ``sync()`` every ``every_s`` seconds until cancelled; a failure is logged, not fatal."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await sync()
        except Exception:  # logged, retried at the next poll; the service keeps running
            log.exception("intake: journaling the updater's reports failed")
