"""The payload archive: a POSIX tar of the bundle's files, zstd-compressed; built and safely unpacked.

:func:`build_payload` (hangar station) writes the tar of ``files`` (in sorted order, regular files
only, mode 0644, mtime 0, owner 0) through zstd. :func:`unpack` (appliance) reads it as a stream
and refuses, with a :class:`~appliance.errors.BundleRefused` reason: a member that is not a regular
file (symlink, hard link, device, FIFO, directory), a name with ``..`` or an absolute name, a file
not in the manifest (extra) or listed twice, a length or SHA-256 differing from the manifest, a
missing file, a truncated archive, and a decompression bomb: the decompressed stream may not
exceed the manifest's total length plus the tar overhead it implies (headers and padding), and a
zstd frame announcing a larger content size is refused before decompressing anything. Files are
written into a fresh directory (``O_EXCL``) and each fsynced; nothing outside it is touched.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import zstandard

from ..errors import BundleRefused
from ..store.files import fsync_dir
from .bundle import BundleMeta, safe_path

__all__ = ["build_payload", "max_tar_bytes", "unpack"]

_CHUNK = 1 << 20
_BLOCK = 512


def build_payload(root: Path, files: Iterable[str], out: Path, level: int = 3) -> None:
    """Write the zstd tar of ``files`` (relative paths under ``root``) to ``out``."""
    cctx = zstandard.ZstdCompressor(level=level)
    with open(out, "wb") as fo, cctx.stream_writer(fo, closefd=False) as zw, \
            tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for rel in sorted(files):
            path = root / rel
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mode = 0o644
            with open(path, "rb") as fi:
                tf.addfile(info, fi)


def max_tar_bytes(meta: BundleMeta) -> int:
    """An upper bound on the honest tar stream's size for ``meta`` (bytes).

    Per file: a header block, a PAX header (two blocks, paths up to 255 bytes), padding; then the
    end-of-archive blocks and tarfile's record padding (10 KiB).
    """
    n = len(meta.files)
    return meta.total_length() + n * 4 * _BLOCK + 20 * _BLOCK + 10240


class _Capped(io.RawIOBase):
    """A reader that refuses to yield more than ``cap`` bytes (the decompression bomb guard)."""

    def __init__(self, inner: IO[bytes], cap: int) -> None:
        self.inner = inner
        self.cap = cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(len(b))
        self.count += len(data)
        if self.count > self.cap:
            raise BundleRefused(f"decompression bomb: the payload expands beyond {self.cap} bytes, "
                                "more than its manifest declares")
        b[:len(data)] = data
        return len(data)


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return "a symbolic link"
    if m.islnk():
        return "a hard link"
    if m.isfifo():
        return "a FIFO"
    if m.ischr() or m.isblk():
        return "a device file"
    if m.isdir():
        return "a directory entry"
    return "not a regular file"


def unpack(payload: Path, meta: BundleMeta, dest: Path) -> None:
    """Unpack ``payload`` into the new directory ``dest``, checking it against ``meta``.

    Raises BundleRefused with the reason (``dest`` is then left for the caller to remove) or
    OSError (disk). Every file is fsynced, then every directory.
    """
    cap = max_tar_bytes(meta)
    with open(payload, "rb") as f:
        head = f.read(18)
        try:
            size = zstandard.get_frame_parameters(head).content_size
        except zstandard.ZstdError as e:
            raise BundleRefused(f"payload is not a zstd stream: {e}") from e
        if size not in (0, zstandard.CONTENTSIZE_UNKNOWN) and size > cap:
            raise BundleRefused(f"decompression bomb: the payload announces {size} bytes, its "
                                f"manifest allows at most {cap}")
        f.seek(0)
        dctx = zstandard.ZstdDecompressor()
        try:
            with dctx.stream_reader(f) as zr:
                capped = io.BufferedReader(_Capped(zr, cap), _CHUNK)
                _extract(capped, meta, dest)
        except zstandard.ZstdError as e:
            raise BundleRefused(f"payload cannot be decompressed (truncated or corrupt): {e}") from e


def _extract(stream: IO[bytes], meta: BundleMeta, dest: Path) -> None:
    os.mkdir(dest, 0o755)
    seen: set[str] = set()
    dirs = {dest}
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for m in tf:
                name = m.name
                if (reason := safe_path(name)) is not None:
                    raise BundleRefused(f"archive member: {reason}")
                if not m.isreg():
                    raise BundleRefused(f"{name}: {_kind(m)} is not allowed in a bundle")
                entry = meta.files.get(name)
                if entry is None:
                    raise BundleRefused(f"{name}: extra file not in the manifest")
                if name in seen:
                    raise BundleRefused(f"{name}: listed twice in the archive")
                seen.add(name)
                if m.size != entry.length:
                    raise BundleRefused(f"{name}: {m.size} bytes, the manifest says {entry.length}")
                src = tf.extractfile(m)
                if src is None:
                    raise BundleRefused(f"{name}: cannot be read from the archive")
                out = dest / name
                for parent in reversed(out.relative_to(dest).parents[:-1]):
                    d = dest / parent
                    if d.is_symlink() or (d.exists() and not d.is_dir()):
                        raise BundleRefused(f"{name}: {parent} is both a file and a directory")
                    if not d.exists():
                        d.mkdir(mode=0o755)
                        dirs.add(d)
                if out.exists() or out.is_symlink():
                    raise BundleRefused(f"{name}: collides with another path of the bundle")
                _write_checked(src, out, name, entry.length, entry.hashes["sha256"])
    except tarfile.TarError as e:
        raise BundleRefused(f"payload archive is truncated or corrupt: {e}") from e
    except EOFError as e:
        raise BundleRefused(f"payload archive is truncated: {e}") from e
    if missing := sorted(set(meta.files) - seen):
        raise BundleRefused(f"missing file(s) in the payload: {', '.join(missing[:5])}")
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(d)


def _write_checked(src: IO[bytes], out: Path, name: str, length: int, sha256: str) -> None:
    h = hashlib.sha256()
    n = 0
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fo:
        while chunk := src.read(_CHUNK):
            n += len(chunk)
            if n > length:
                raise BundleRefused(f"{name}: longer than the manifest's {length} bytes")
            h.update(chunk)
            fo.write(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    if n != length:
        raise BundleRefused(f"{name}: truncated: {n} of {length} bytes")
    if h.hexdigest() != sha256:
        raise BundleRefused(f"{name}: SHA-256 differs from the manifest")
