"""The passenger catalog: installed titles, who may see them now, and the response built once.

:func:`access` is the rule (pure, table-tested): passenger services must be open in the current mode,
the aircraft's UTC must lie in the title's licensing window, and a flight-only title is playable
only where the mode policy opens flight-only content (FLIGHT) — elsewhere it is listed, locked,
with "Available after take-off". Titles outside their window are not listed at all.

:class:`Catalog` holds the titles (reloaded when the store's generation changes) and builds the
catalog JSON body and its ETag once per (generation, mode, licensing period); a request costs a
tuple comparison and a bisect over the window boundaries.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PackageError
from ..modes.policy import Mode, ModePolicy, PolicyTable
from .manifest import Manifest
from .store import ContentStore, Installed
from .validate import read_hls

__all__ = ["Access", "Catalog", "CatalogBody", "Title", "access", "load_menu"]

log = logging.getLogger(__name__)
LOCKED_MESSAGE = "Available after take-off"
CLOSED_MESSAGE = "Passenger services are closed right now ({mode}); they open again after maintenance"


class Access(enum.StrEnum):
    """Whether a title may be played now."""

    OK = "ok"
    CLOSED = "closed"  #: passenger services are closed in this mode
    LOCKED = "locked"  #: flight-only title outside FLIGHT
    NOT_LICENSED = "not_licensed"  #: outside the licensing window (not listed)


def access(m: Manifest, policy: ModePolicy, utc: float) -> Access:
    """The rule for title ``m`` under the mode's ``policy`` at aircraft UTC ``utc`` (epoch s)."""
    if not policy.passenger_services:
        return Access.CLOSED
    lo, hi = m.window()
    if (lo is not None and utc < lo) or (hi is not None and utc >= hi):
        return Access.NOT_LICENSED
    if m.flight_only and not policy.flight_only_content:
        return Access.LOCKED
    return Access.OK


@dataclass(slots=True)
class Title:
    """An installed title as the media paths need it (``root_fd`` is the package directory)."""

    id: str
    version: str
    path: Path
    manifest: Manifest
    root_fd: int
    #: Package path -> seconds of media it holds (segments), for usage accounting.
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def v16(self) -> str:
        """The version as it appears in media URLs (first 16 hex digits)."""
        return self.version[:16]

    def url(self, rel: str) -> str:
        """The media URL path of package file ``rel``."""
        return f"/media/{self.id}/{self.v16}/{rel}"


@dataclass(frozen=True, slots=True)
class CatalogBody:
    """A built catalog response: status (200, or 503 when closed), JSON bytes, strong ETag."""

    status: int
    body: bytes
    etag: str


def load_menu() -> list[dict[str, Any]]:
    """The packaged default menu (``menu.toml``): ``[{sku, name (English), names, price, currency}]``.

    ``price`` in the major unit. The menu in force is :func:`.menu.read_menu`'s (a menu bundle
    replaces it); the portal's shop reads that one from ``/api/v1/menu``.
    """
    from .menu import default_menu
    return [{"sku": i.sku, "name": i.name["en"], "names": i.name, "price": i.price / 100,
             "currency": i.currency} for i in default_menu()]


def _title(inst: Installed) -> Title:
    fd = os.open(inst.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    t = Title(inst.id, inst.version, inst.path, inst.manifest, fd)
    if inst.manifest.kind == "video":
        try:
            _, playlists = read_hls(inst.path, inst.manifest.entry)
        except PackageError as e:
            log.error("content %s: %s; served without usage seconds", inst.id, e)
            return t
        for _, pl in playlists:
            for rel, d in pl.segments:
                t.seconds[rel] = d
    return t


class Catalog:
    """Titles and the catalog response; ``mode()`` and ``utc()`` read the avionics chain."""

    def __init__(self, store: ContentStore, policy: PolicyTable, mode: Callable[[], Mode],
                 utc: Callable[[], float], media_port: int | None = None,
                 menu: list[dict[str, Any]] | None = None) -> None:
        """``media_port`` is the sendfile server's port (None: media on the passenger port only)."""
        self.store = store
        self.policy = policy
        self.mode = mode
        self.utc = utc
        self.media_port = media_port
        self.menu = load_menu() if menu is None else menu
        self.generation = -1
        self.titles: dict[str, Title] = {}
        self._bounds: list[float] = []
        self._cache: tuple[tuple[int, Mode, int], CatalogBody] | None = None
        self.builds = 0

    def set_media_port(self, port: int | None) -> None:
        """Announce the sendfile server's port in the catalog (known once it has bound)."""
        self.media_port = port
        self._cache = None

    def load(self, generation: int, installed: list[Installed]) -> None:
        """Replace the titles (call on the event loop; blocking work is done by :meth:`read`)."""
        old = self.titles
        new: dict[str, Title] = {}
        for inst in installed:
            prev = old.get(inst.id)
            if prev is not None and prev.version == inst.version:
                new[inst.id] = prev
                continue
            try:
                new[inst.id] = _title(inst)
            except OSError as e:
                log.error("content %s: cannot open %s: %s", inst.id, inst.path, e)
        for cid, t in old.items():
            if new.get(cid) is not t:
                os.close(t.root_fd)
        self.titles = new
        self.generation = generation
        self._bounds = sorted({b for t in new.values() for b in t.manifest.window() if b is not None})
        self._cache = None
        log.info("catalog generation %d: %d titles", generation, len(new))

    def read(self) -> tuple[int, list[Installed]] | None:
        """Blocking (run in a thread): the store's rows if its generation moved, else None."""
        gen = self.store.generation()
        if gen == self.generation:
            return None
        return gen, self.store.installed()

    def close(self) -> None:
        """Close the package directory fds."""
        for t in self.titles.values():
            os.close(t.root_fd)
        self.titles = {}

    def check(self, cid: str, version: str) -> tuple[Title | None, Access]:
        """The title behind a media URL and whether it may be served now (None: unknown/old version)."""
        t = self.titles.get(cid)
        if t is None or t.v16 != version:
            return None, Access.NOT_LICENSED
        return t, access(t.manifest, self.policy[self.mode()], self.utc())

    def body(self) -> CatalogBody:
        """The catalog response for now: rebuilt only when generation, mode or licensing period moved."""
        mode = self.mode()
        key = (self.generation, mode, bisect.bisect_right(self._bounds, self.utc()))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        built = self._build(mode)
        self._cache = (key, built)
        return built

    def _build(self, mode: Mode) -> CatalogBody:
        self.builds += 1
        policy, utc = self.policy[mode], self.utc()
        doc: dict[str, Any] = {"generation": self.generation, "mode": str(mode),
                               "media_port": self.media_port}
        if not policy.passenger_services:
            doc |= {"services": "closed", "message": CLOSED_MESSAGE.format(mode=mode),
                    "titles": [], "menu": []}
            status = 503
        else:
            titles = []
            for t in sorted(self.titles.values(), key=lambda t: (t.manifest.kind, t.manifest.title)):
                a = access(t.manifest, policy, utc)
                if a is Access.NOT_LICENSED:
                    continue
                m = t.manifest
                item: dict[str, Any] = {
                    "id": t.id, "version": t.v16, "kind": m.kind, "title": m.title,
                    "languages": list(m.languages), "duration_s": m.duration_s,
                    "rating": m.rating, "licence": m.licence, "attribution": m.attribution,
                    "description": m.description, "flight_only": m.flight_only,
                    "localized": {lang: loc.model_dump(exclude_none=True)
                                  for lang, loc in m.localized.items()},
                    "available": a is Access.OK,
                    "message": None if a is Access.OK else LOCKED_MESSAGE,
                    "poster": t.url(m.poster) if m.poster else None,
                    "posters": [{"w": p.w, "h": p.h, "url": t.url(p.path)} for p in m.posters],
                    "entry": t.url(m.entry) if a is Access.OK else None}
                if m.kind == "book" and a is Access.OK and "book/toc.json" in m.files:
                    item["toc"] = t.url("book/toc.json")
                titles.append(item)
            doc |= {"services": "open", "message": None, "titles": titles, "menu": self.menu}
            status = 200
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return CatalogBody(status, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
