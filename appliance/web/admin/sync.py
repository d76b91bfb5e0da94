"""Admin routes of the outbound sync: ``sync_router(sync) -> APIRouter``.

The daemon includes the router into the admin app (``AdminDeps.routers``), which puts every
route behind the crew role; ``act_dependencies`` (for example
``[Depends(require(auth, Role.MAINTENANCE))]``) are added to the "sync now" action.

- ``GET /admin/v1/sync``: the sync status (:meth:`SyncService.status`): per stream depth, oldest
  record age (s), bytes queued, last acknowledged watermark, drops; link state; uplink counters.
- ``POST /admin/v1/sync/now``: "sync now": wake the uplink, check the disk budget. 202.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from fastapi import APIRouter, status

__all__ = ["SyncControl", "sync_router"]


class SyncControl(Protocol):
    """What the routes need of the sync (``appliance.sync.SyncService`` has it)."""

    def status(self) -> dict[str, Any]:
        """The sync status."""

    def sync_now(self) -> dict[str, Any]:
        """Start a sync attempt now."""


def sync_router(sync: SyncControl, act_dependencies: Sequence[Any] = ()) -> APIRouter:
    """The sync's admin routes over ``sync``; ``act_dependencies`` guard the action."""
    router = APIRouter(prefix="/admin/v1/sync", tags=["sync"])

    @router.get("")
    async def get_sync() -> dict[str, Any]:
        """Per stream: depth, oldest age, bytes queued, acknowledged watermark, drops; links."""
        return sync.status()

    @router.post("/now", status_code=status.HTTP_202_ACCEPTED, dependencies=list(act_dependencies))
    async def post_sync_now() -> dict[str, Any]:
        """Wake the uplink and check the disk budget now."""
        return sync.sync_now()

    return router
