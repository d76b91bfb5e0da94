"""Durable file writes: temp file, fsync, rename, fsync of the directory.

After :func:`atomic_write` returns, the file is there with all of its content after a power cut,
or (if the cut came before the rename was made durable) the previous version is. Never a torn mix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "ensure_dir", "fsync_dir", "fsync_file", "replace_durably"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Fsync the directory ``path`` so that creates, renames and deletes in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush the data of the file at ``path`` to disk (fsync)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) durably: each new directory's parent is fsynced.

    A directory created without that can vanish at a power cut, with everything acknowledged in it.
    """
    target = Path(path).absolute()
    missing = []
    p = target
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)
    return target


def replace_durably(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` (same filesystem) and make the rename durable."""
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` durably and atomically; raises OSError (for example ENOSPC).

    On failure the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        replace_durably(Path(tmp), target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
