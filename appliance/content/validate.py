"""Check a content package directory before it is installed (or after it was written).

:func:`check_package` reads ``package.json``, then every listed file (size and SHA-256), refuses
symlinks, unlisted files and paths leaving the package, and for a video checks the HLS master and
every media playlist (variants, segments, init maps all present). Any problem raises
:class:`~appliance.errors.PackageError` whose message is the reason shown to the operator.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..errors import PackageError
from .hls import MediaPlaylist, Variant, parse_master, parse_media, parse_renditions
from .manifest import MANIFEST, Manifest, digest

__all__ = ["CheckedPackage", "check_package", "file_sha256", "load_manifest", "read_hls"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class CheckedPackage:
    """A package that passed: its manifest, version (digest) and, for a video, its playlists."""

    manifest: Manifest
    version: str
    variants: tuple[Variant, ...] = ()
    playlists: tuple[tuple[str, MediaPlaylist], ...] = ()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of the file at ``path``; raises OSError."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(root: Path) -> Manifest:
    """Read and validate ``root/package.json``; raises PackageError with the reason."""
    try:
        raw = (root / MANIFEST).read_bytes()
    except OSError as e:
        raise PackageError(f"{root}: no readable {MANIFEST}: {e.strerror}") from e
    try:
        return Manifest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        raise PackageError(f"{root / MANIFEST}: invalid manifest: {e}") from e


def _walk(root: Path) -> set[str]:
    """Every regular file under ``root`` (relative POSIX paths); PackageError on a symlink or other."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise PackageError(f"{rel}: symbolic links are not allowed in a package")
            if stat.S_ISREG(st.st_mode):
                found.add(rel)
            elif not stat.S_ISDIR(st.st_mode):
                raise PackageError(f"{rel}: not a regular file")
    return found


def read_hls(root: Path, entry: str) -> tuple[list[Variant], list[tuple[str, MediaPlaylist]]]:
    """Parse the master playlist ``entry`` and the media playlist of each variant and rendition."""
    try:
        master = (root / entry).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PackageError(f"{entry}: cannot read the master playlist: {e}") from e
    variants = parse_master(master, entry)
    renditions = parse_renditions(master, entry)
    playlists: list[tuple[str, MediaPlaylist]] = []
    uris = [v.uri for v in variants] + [r.uri for r in renditions]
    for uri in uris:
        try:
            text = (root / uri).read_text(encoding="utf-8")
        except FileNotFoundError as e:
            raise PackageError(f"{entry}: playlist {uri} is missing") from e
        except (OSError, UnicodeDecodeError) as e:
            raise PackageError(f"{uri}: cannot read: {e}") from e
        playlists.append((uri, parse_media(text, uri)))
    return variants, playlists


def check_package(root: Path, *, verify_hashes: bool = True) -> CheckedPackage:
    """Check the package at ``root``; returns it checked or raises PackageError with the reason.

    ``verify_hashes=False`` checks sizes only (for a copy whose hashes were computed while writing).
    """
    if not root.is_dir():
        raise PackageError(f"{root}: not a directory")
    manifest = load_manifest(root)
    present = _walk(root) - {MANIFEST}
    listed = set(manifest.files)
    if missing := sorted(listed - present):
        raise PackageError(f"missing file(s): {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if extra := sorted(present - listed):
        raise PackageError(f"file(s) not in the manifest: {', '.join(extra[:5])}")
    for rel, entry in manifest.files.items():
        path = root / rel
        size = path.stat().st_size
        if size != entry.size:
            raise PackageError(f"{rel}: {size} bytes, the manifest says {entry.size}")
        if verify_hashes and file_sha256(path) != entry.sha256:
            raise PackageError(f"{rel}: SHA-256 differs from the manifest")
    if manifest.kind == "book":
        if not manifest.entry.endswith((".html", ".xhtml", ".epub")):
            raise PackageError(f"entry {manifest.entry}: a book's entry is an HTML page or an EPUB")
        return CheckedPackage(manifest, digest(manifest))
    if not manifest.entry.endswith(".m3u8"):
        raise PackageError(f"entry {manifest.entry}: a video's entry is an HLS master playlist")
    variants, playlists = read_hls(root, manifest.entry)
    for uri, pl in playlists:
        refs = [p for p, _ in pl.segments] + ([pl.init] if pl.init else [])
        for ref in refs:
            if ref not in listed:
                raise PackageError(f"{uri}: segment {ref} is missing from the package")
    return CheckedPackage(manifest, digest(manifest), tuple(variants), tuple(playlists))
