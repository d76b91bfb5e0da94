"""The content service: the store/catalog/usage lifecycle (load, poll for installs, flush usage).

The daemon (``appliance.daemon.build``) builds it with the content store, the catalog, the usage
journal and the sendfile media server, starts it before the passenger web server and stops it
after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .catalog import Catalog
from .mediaserver import MediaServer
from .store import ContentStore
from .usage import UsageJournal

__all__ = ["ContentService"]

log = logging.getLogger(__name__)


@dataclass
class ContentService:
    """The store/catalog/usage lifecycle: load the catalog, poll for installs, flush usage."""

    store: ContentStore
    catalog: Catalog
    usage: UsageJournal
    media: MediaServer | None
    poll_s: float = 2.0
    flush_s: float = 10.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Prepare the store, load the catalog, start the media server and the periodic work."""
        await asyncio.to_thread(self.store.prepare)
        await self.refresh()
        if self.media is not None:
            await self.media.start()
            self.catalog.set_media_port(self.media.port)
        self._tasks = [asyncio.create_task(self._every(self.poll_s, self.refresh), name="catalog"),
                       asyncio.create_task(self._every(self.flush_s, self.usage.flush), name="usage")]

    async def refresh(self) -> None:
        """Reload the catalog if the store's generation moved (an install by the CLI, say)."""
        changed = await asyncio.to_thread(self.catalog.read)
        if changed is not None:
            self.catalog.load(*changed)

    async def _every(self, period: float, fn: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await fn()
            except Exception:  # supervisor boundary: log, keep the service up
                log.exception("content: periodic %s failed", getattr(fn, "__name__", fn))

    async def stop(self) -> None:
        """Stop the periodic work and the media server, journal every open usage session."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.media is not None:
            await self.media.stop()
        try:
            await asyncio.wait_for(self.usage.flush(everything=True), 5.0)
        except Exception:  # the writer may already be gone: say so, do not hide the stop
            log.exception("content: final usage flush failed")
        self.catalog.close()
