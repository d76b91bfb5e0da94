"""Wiring for the daemon: ``build_intake(settings, chain, writer, reader, content_store, auth)``.

Returns ``(router, service)``: include the router in ``AdminDeps.routers``, add
``service.on_event`` to ``chain.listeners``, ``await service.start()`` after the writer started
(and after the content store's ``prepare``). Software activation installs into the inactive A/B
slot under ``<staging_dir>/software``, flips ``current`` and calls ``restart`` (default: SIGTERM
to this process, so the supervisor/systemd starts the new slot and judges it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Connection, Engine

from ..modes.engine import AvionicsChain
from ..modes.policy import PolicyTable
from ..settings import Settings
from ..store.writer import Writer
from ..web.auth import AdminAuth
from .api import make_router
from .bundle import Trust, Verified
from .content_apply import ContentActivator, StoreLike
from .service import Activator, IntakeConfig, IntakeService
from .slots import SlotInstaller, SoftwareSlots, venv_installer

__all__ = ["SoftwareActivator", "build_intake", "content_activator"]


def content_activator(store: StoreLike) -> Activator:
    """The content activator over the content store (one catalog transaction per bundle)."""
    act = ContentActivator(store)

    async def activate(staged: Path, v: Verified,
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> dict[str, Any]:
        titles = await act.activate(staged, sorted(v.meta.files), extra)
        return {"titles": titles}
    return activate


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


def build_intake(settings: Settings, chain: AvionicsChain, writer: Writer, reader: Engine,
                 content_store: StoreLike | None, auth: AdminAuth,
                 quiet: Callable[[], str | None] | None = None,
                 restart: Callable[[], None] | None = None,
                 ) -> tuple[APIRouter, IntakeService]:
    """The admin router and the service (see the module docstring)."""
    cfg = settings.intake
    root = cfg.staging_dir or settings.data_dir / "intake"
    trust = Trust.from_hex({k: (r.keys, r.threshold) for k, r in cfg.roles.items()})
    slots = SoftwareSlots(root / "software")
    soft = SoftwareActivator(slots, venv_installer, writer,
                             restart or (lambda: os.kill(os.getpid(), signal.SIGTERM)))
    activators: dict[str, Activator] = {"software": soft}
    if content_store is not None:
        activators["content"] = content_activator(content_store)
    service = IntakeService(
        IntakeConfig(root, settings.aircraft_id, cfg.max_bundle_bytes, cfg.chunk_bytes,
                     cfg.free_margin_bytes, cfg.quiet_wait_s),
        trust, writer, reader, lambda: chain.mode, PolicyTable.default(),
        lambda: chain.clock.utc(chain.store.now), activators,
        quiet=(quiet or (lambda: None)) if cfg.quiet != "none" else (lambda: None), slots=slots)
    return make_router(service, auth), service
