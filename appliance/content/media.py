"""Media requests to answers: which file, which bytes, which status — shared by both media paths.

:meth:`MediaFiles.answer` takes the method, the raw request target, the request headers (lower-case
names) and the client address, and returns a :class:`MediaAnswer`: a status with headers and either
a small body (errors) or an open fd plus the byte span to send. The caller sends and closes the fd.
Errors are 4xx/5xx with a one-line reason (also logged): 404 for unknown titles, versions, files
not in the manifest and every traversal attempt; 404 (logged as an error) for a file of the manifest
that is missing or altered on disk; 403 for a locked title (except its poster); 503 when services
are closed; 405 for methods other than GET, HEAD and OPTIONS; 416/412/304/206/200 from
:func:`~.ranges.decide`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .catalog import Access, Catalog, Title
from .paths import mime_type, open_beneath, parse_media_target
from .ranges import Representation, decide
from .usage import UsageJournal

__all__ = ["IMMUTABLE", "MediaAnswer", "MediaFiles"]

log = logging.getLogger(__name__)
IMMUTABLE = "public, max-age=31536000, immutable"
_CORS = (("access-control-allow-origin", "*"),
         ("access-control-expose-headers", "content-length, content-range, etag, accept-ranges"))
_PREFLIGHT = (*_CORS, ("access-control-allow-methods", "GET, HEAD, OPTIONS"),
              ("access-control-allow-headers", "range, if-range, if-none-match, if-modified-since"),
              ("access-control-max-age", "86400"), ("content-length", "0"))


@dataclass(slots=True)
class MediaAnswer:
    """Status, headers, and either ``body`` or ``fd`` with (``start``, ``length``) to send."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    fd: int | None = None
    start: int = 0
    length: int = 0


class _Stats:
    __slots__ = ("bad", "corrupt", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.bad = 0
        self.corrupt = 0


class MediaFiles:
    """The catalog's files as HTTP answers; usage noted for every body served."""

    def __init__(self, catalog: Catalog, usage: UsageJournal | None = None) -> None:
        """Answer from ``catalog``; note served files in ``usage`` (None: no accounting)."""
        self.catalog = catalog
        self.usage = usage
        self.stats = _Stats()
        self._last_log = 0.0
        self._suppressed = 0

    def _error(self, status: int, reason: str, target: str, client: str,
               level: int = logging.INFO) -> MediaAnswer:
        self.stats.bad += 1
        now = time.monotonic()
        if now - self._last_log >= 0.05 or level >= logging.ERROR:  # at most ~20 lines/s
            extra = f" ({self._suppressed} similar suppressed)" if self._suppressed else ""
            log.log(level, "media %d for %s %r: %s%s", status, client, target[:200], reason, extra)
            self._last_log, self._suppressed = now, 0
        else:
            self._suppressed += 1
        body = (reason + "\n").encode()
        headers: tuple[tuple[str, str], ...] = (
            *_CORS, ("content-type", "text/plain; charset=utf-8"),
            ("content-length", str(len(body))), ("cache-control", "no-store"))
        if status == 405:
            headers = (*headers, ("allow", "GET, HEAD, OPTIONS"))
        return MediaAnswer(status, headers, body)

    def answer(self, method: str, target: str, headers: Mapping[str, str], client: str) -> MediaAnswer:
        """The answer to one request (see the module docstring); never raises for bad input."""
        self.stats.requests += 1
        if method == "OPTIONS":
            return MediaAnswer(204, _PREFLIGHT)
        if method not in ("GET", "HEAD"):
            return self._error(405, "method not allowed", target, client)
        parsed = parse_media_target(target)
        if parsed is None:
            return self._error(404, "not found", target, client, logging.WARNING)
        cid, version, rel = parsed
        title, acc = self.catalog.check(cid, version)
        if title is None or acc is Access.NOT_LICENSED:
            return self._error(404, "no such title", target, client)
        if acc is Access.CLOSED:
            return self._error(503, "passenger services are closed", target, client)
        if acc is Access.LOCKED and rel not in title.manifest.poster_files():  # the catalog shows it
            return self._error(403, "available after take-off", target, client)
        entry = title.manifest.files.get(rel)
        if entry is None:
            return self._error(404, "not found", target, client, logging.WARNING)
        try:
            fd = open_beneath(title.root_fd, rel)
        except OSError as e:
            return self._corrupt(title, rel, f"cannot open: {e.strerror}", target, client)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                raise ValueError(f"on disk {st.st_size} bytes, manifest {entry.size}")
        except (OSError, ValueError) as e:
            os.close(fd)
            return self._corrupt(title, rel, str(e), target, client)
        rep = Representation(entry.size, f'"{entry.sha256[:32]}"', st.st_mtime, mime_type(rel),
                             IMMUTABLE)
        d = decide(method, headers, rep)
        hdrs = (*_CORS, *d.headers)
        if d.status not in (200, 206) or method == "HEAD":
            os.close(fd)
            return MediaAnswer(d.status, hdrs)
        if self.usage is not None:
            self.usage.note(client, title, rel, d.length)
        return MediaAnswer(d.status, hdrs, fd=fd, start=d.start, length=d.length)

    def _corrupt(self, title: Title, rel: str, why: str, target: str, client: str) -> MediaAnswer:
        self.stats.corrupt += 1
        log.error("content %s version %s: %s %s (corrupt package?)", title.id, title.v16, rel, why)
        return self._error(404, "not found", target, client)
