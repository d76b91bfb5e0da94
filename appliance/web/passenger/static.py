"""The portal's static files in memory: precompressed, also under content-hashed names.

Every file of ``assets/`` (the page's script and style, and whatever else is put there, e.g. a
lazily loaded ``map.js``), ``assets/i18n/*.json`` and the vendor folder (npm builds: hls.js,
epub.js, the map outlines) is read once at start and kept as:

- its bytes, and for text types (``.js .css .json .svg .html``) gzip (level 9) and brotli
  (quality 11) bodies, computed once: for the vendor folder, ``NAME.br``/``NAME.gz`` sidecars
  written at build time (``python -m appliance.web.passenger.static DIR``, the Makefile's
  ``content`` target) are used when they decompress to the file's bytes, else computed here;
- a logical name (``app.js``, ``vendor/hls.min.js``) served at ``/portal/<name>`` with
  ``Cache-Control: no-cache`` and an ETag (revalidated), and a hashed name (``app.<12 hex of
  sha256>.js``) served with ``public, max-age=31536000, immutable``. :meth:`StaticFiles.urls`
  maps logical names to hashed URLs (the page inlines it as ``window.ASSET_URLS``).

A response carries the best encoding the client accepts (br, then gzip, else identity:
RFC 9110 §12.5.3, q=0 honoured), with ``Content-Encoding`` and ``Vary: Accept-Encoding``; each
encoding has its own strong ETag.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import brotli

__all__ = ["IMMUTABLE", "Asset", "StaticFiles", "choose_encoding", "compress", "hashed_name"]

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".json": "application/json",
         ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
         ".webp": "image/webp", ".woff2": "font/woff2"}
COMPRESSIBLE = {".html", ".js", ".css", ".json", ".svg"}
FAST_ABOVE = 128 * 1024
_DECODE = {"br": brotli.decompress, "gzip": gzip.decompress}


def hashed_name(name: str, data: bytes) -> str:
    """``dir/stem.ext`` -> ``dir/stem.<12 hex of sha256(data)>.ext`` (``hls.min.js`` keeps ``.min``)."""
    p = PurePosixPath(name)
    digest = hashlib.sha256(data).hexdigest()[:12]
    return str(p.with_name(f"{p.stem}.{digest}{p.suffix}"))


def compress(data: bytes, sidecars: Path | None = None, best: bool = False) -> dict[str, bytes]:
    """The gzip and brotli bodies of ``data`` (only those smaller than it).

    Brotli quality 11 (``best``, or ``data`` up to :data:`FAST_ABOVE` bytes), else 6: a service
    start without build-time sidecars must not spend seconds on hls.js (quality 11: ~10 s here).

    ``sidecars``: the source file; ``<file>.br`` / ``<file>.gz`` next to it are used when they
    decompress to ``data`` (written at build time), else the bodies are computed.
    """
    out: dict[str, bytes] = {}
    for enc, ext in (("br", ".br"), ("gzip", ".gz")):
        body: bytes | None = None
        if sidecars is not None:
            side = sidecars.with_name(sidecars.name + ext)
            if side.is_file():
                candidate = side.read_bytes()
                try:
                    if _DECODE[enc](candidate) == data:
                        body = candidate
                except (OSError, EOFError, brotli.error):
                    body = None
        if body is None:  # at start: the best brotli for small files, a quick one for big ones
            quality = 11 if best or len(data) <= FAST_ABOVE else 6
            body = (brotli.compress(data, quality=quality) if enc == "br"
                    else gzip.compress(data, compresslevel=9, mtime=0))
        if len(body) < len(data):
            out[enc] = body
    return out


def choose_encoding(accept_encoding: str | None, available: Iterable[str]) -> str:
    """The best of ``available`` (``br``, then ``gzip``) ``Accept-Encoding`` allows, else identity.

    ``"gzip, deflate, br"`` -> ``br``; ``"br;q=0, gzip"`` -> ``gzip``; none -> ``identity``.
    """
    q: dict[str, float] = {}
    for part in (accept_encoding or "").split(",")[:16]:
        coding, _, params = part.strip().partition(";")
        value = 1.0
        for prm in params.split(";"):
            k, _, v = prm.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    value = float(v)
                except ValueError:
                    value = 0.0
        q[coding.strip().lower()] = value
    for enc in ("br", "gzip"):
        if enc in available and q.get(enc, q.get("*", 0.0)) > 0:
            return enc
    return "identity"


@dataclass(frozen=True)
class Asset:
    """One file: logical name, content type, hashed URL, bodies by encoding with their ETags."""

    name: str
    ctype: str
    url: str
    bodies: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)


class StaticFiles:
    """The files by logical name and by hashed name (see the module docstring)."""

    def __init__(self, prefix: str = "/portal/") -> None:
        """``prefix``: the URL path the logical names are under."""
        self.prefix = prefix
        self.by_name: dict[str, Asset] = {}
        self.by_hashed: dict[str, Asset] = {}

    def add(self, name: str, data: bytes, source: Path | None = None) -> Asset:
        """Add ``data`` as logical ``name`` (``source``: its file, for build-time sidecars)."""
        suffix = PurePosixPath(name).suffix
        bodies = {"identity": data}
        if suffix in COMPRESSIBLE:
            bodies |= compress(data, source)
        digest = hashlib.sha256(data).hexdigest()[:24]
        etags = {enc: f'"{digest}"' if enc == "identity" else f'"{digest}-{enc}"' for enc in bodies}
        hashed = hashed_name(name, data)
        asset = Asset(name, TYPES.get(suffix, "application/octet-stream"),
                      self.prefix + hashed, bodies, etags)
        self.by_name[name] = asset
        self.by_hashed[hashed] = asset
        return asset

    def lookup(self, path: str) -> tuple[Asset, bool] | None:
        """The asset at ``path`` (relative to the prefix) and whether it is the hashed name."""
        if path in self.by_hashed:
            return self.by_hashed[path], True
        if path in self.by_name:
            return self.by_name[path], False
        return None

    def urls(self) -> dict[str, str]:
        """Logical name -> hashed URL, for every file."""
        return {n: a.url for n, a in sorted(self.by_name.items())}


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.web.passenger.static DIR``: write DIR's ``.br``/``.gz`` sidecars.

    Only text files; a sidecar that still matches is left as it is.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m appliance.web.passenger.static DIR", file=sys.stderr)
        return 2
    for p in sorted(Path(args[0]).iterdir()):
        if p.is_file() and p.suffix in COMPRESSIBLE:
            for enc, body in compress(p.read_bytes(), p, best=True).items():
                side = p.with_name(p.name + (".br" if enc == "br" else ".gz"))
                if not side.is_file() or side.read_bytes() != body:
                    side.write_bytes(body)
            print(f"{p}: precompressed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
