"""Media URLs to files, safely; MIME types of everything a package holds.

A media URL is ``/media/<content id>/<version16>/<path in the package>``. :func:`parse_media_target`
percent-decodes the raw request target exactly once and refuses anything that is not a plain
package path (``..``, ``.``, empty segments, backslashes, NUL, a ``%`` left after decoding — that is
a double-encoded attempt). The caller then serves only paths listed in the package's manifest, and
:func:`open_beneath` opens them one component at a time with ``O_NOFOLLOW`` under the package's
directory, so a symlink planted after install is never followed.
"""

from __future__ import annotations

import os
import posixpath
from urllib.parse import unquote

from .manifest import safe_relpath

__all__ = ["MEDIA_PREFIX", "MIME_TYPES", "mime_type", "open_beneath", "parse_media_target"]

MEDIA_PREFIX = "/media/"
#: Extension -> Content-Type. Not the platform's mime.types: Debian's maps .ts to Qt's linguist.
MIME_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".vtt": "text/vtt; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".xhtml": "application/xhtml+xml",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".epub": "application/epub+zip",
    ".txt": "text/plain; charset=utf-8",
}


def mime_type(path: str) -> str:
    """The Content-Type for ``path`` by its extension (application/octet-stream if unknown)."""
    return MIME_TYPES.get(posixpath.splitext(path)[1].lower(), "application/octet-stream")


def parse_media_target(target: str) -> tuple[str, str, str] | None:
    """``/media/ID/VERSION/PATH[?query]`` -> (id, version16, path), or None if not a clean one."""
    raw = target.split("?", 1)[0].split("#", 1)[0]
    if not raw.startswith(MEDIA_PREFIX):
        return None
    try:
        decoded = unquote(raw[len(MEDIA_PREFIX):], errors="strict")
    except UnicodeDecodeError:
        return None
    if "%" in decoded or "\\" in decoded or "\x00" in decoded:
        return None
    parts = decoded.split("/")
    if len(parts) < 3:
        return None
    cid, version, rel = parts[0], parts[1], "/".join(parts[2:])
    if not cid or not version.isalnum() or not safe_relpath(rel):
        return None
    return cid, version, rel


def open_beneath(root_fd: int, rel: str) -> int:
    """Open ``rel`` (a checked relative path) under the directory ``root_fd``, following no symlink.

    Returns a read-only fd of a regular file; raises OSError (ELOOP for a symlink, ENOENT, EISDIR
    or ENOTDIR for anything else).
    """
    parts = rel.split("/")
    dir_fd = root_fd
    opened: list[int] = []
    try:
        for part in parts[:-1]:
            dir_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=dir_fd)
            opened.append(dir_fd)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    finally:
        for d in opened:
            os.close(d)
    return fd
