"""The content inventory on the admin port: ``GET /admin/v1/content`` (crew).

``{"titles": [{id, title, kind, version, installed_at, flight_only, not_before, not_after,
duration_s, files, bytes, languages, rating}], "count": N}``: every title installed in the
content store (``appliance content install`` or a content bundle), ordered by id. ``version`` is
the first 16 hex digits of the manifest digest; ``installed_at`` is epoch seconds (local clock);
``bytes`` is the sum of the package's file sizes from its manifest; the licensing window dates are
ISO 8601 UTC or null. Read in a worker thread with the store's own read connection.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from ...content.store import ContentStore, Installed

__all__ = ["make_router", "title_row"]


def title_row(inst: Installed) -> dict[str, Any]:
    """One installed title as the inventory lists it."""
    m = inst.manifest
    return {"id": inst.id, "title": m.title, "kind": m.kind, "version": inst.version[:16],
            "installed_at": inst.installed_at, "flight_only": m.flight_only,
            "not_before": m.not_before.isoformat() if m.not_before else None,
            "not_after": m.not_after.isoformat() if m.not_after else None,
            "duration_s": m.duration_s, "files": len(m.files),
            "bytes": sum(f.size for f in m.files.values()), "languages": list(m.languages),
            "rating": m.rating}


def make_router(store: ContentStore) -> APIRouter:
    """The inventory route over ``store`` (the admin app adds the crew dependency)."""
    r = APIRouter(prefix="/content", tags=["content"])

    @r.get("")
    async def inventory() -> dict[str, Any]:
        """Every installed title with its version, size and licensing window."""
        titles = [title_row(i) for i in await run_in_threadpool(store.installed)]
        return {"titles": titles, "count": len(titles)}

    return r
