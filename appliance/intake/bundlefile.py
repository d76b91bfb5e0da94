"""A bundle as the hangar handles it: one file, or (as built by the library) a directory.

The file is an uncompressed POSIX tar (pax) holding exactly two members, in this order:
``payload.tar.zst`` (the compressed payload, as in a bundle directory) and ``metadata.json``
(the envelope with its signatures). Uncompressed, so the payload is read in place (``push`` seeks
to its offset to resume) and signing rewrites only the small metadata member. A directory holds
the same two files side by side (what :func:`appliance.intake.hangar.build_bundle` writes and
the intake tests use). Either form is accepted wherever the hangar takes a bundle.

Errors: :class:`BundleFileError` with a one-line reason (missing path, not a bundle, a member
missing), never a traceback.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .bundle import METADATA, PAYLOAD

__all__ = ["BundleFile", "BundleFileError", "open_bundle", "pack", "write_metadata"]


class BundleFileError(Exception):
    """The path is not a readable bundle (the message says why, in one line)."""


@dataclass(frozen=True, slots=True)
class BundleFile:
    """Where a bundle's parts are: the metadata bytes and the payload (file, byte offset, length)."""

    path: Path
    metadata: bytes
    payload_path: Path
    payload_offset: int
    payload_length: int


def open_bundle(path: Path) -> BundleFile:
    """Read ``path`` (a bundle file or directory); raises BundleFileError naming what is wrong."""
    if not path.exists():
        raise BundleFileError(f"{path}: no such file or directory")
    if path.is_dir():
        meta, payload = path / METADATA, path / PAYLOAD
        for p in (meta, payload):
            if not p.is_file():
                raise BundleFileError(f"{path}: not a bundle ({p.name} missing)")
        try:
            return BundleFile(path, meta.read_bytes(), payload, 0, payload.stat().st_size)
        except OSError as e:
            raise BundleFileError(f"{path}: {e.strerror or e}") from e
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if METADATA not in members or PAYLOAD not in members:
                raise BundleFileError(f"{path}: not a bundle (needs {PAYLOAD} and {METADATA})")
            pm = members[PAYLOAD]
            f = tar.extractfile(members[METADATA])
            assert f is not None  # a regular member
            return BundleFile(path, f.read(), path, pm.offset_data, pm.size)
    except (tarfile.TarError, EOFError) as e:
        raise BundleFileError(f"{path}: not a bundle file ({e})") from e
    except OSError as e:
        raise BundleFileError(f"{path}: {e.strerror or e}") from e


def _write(out: Path, payload: Path, offset: int, length: int, metadata: bytes) -> None:
    """Write the bundle file ``out`` atomically (temp file, fsync, rename, fsync of the directory)."""
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with open(payload, "rb") as src, open(tmp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                src.seek(offset)
                info = tarfile.TarInfo(PAYLOAD)
                info.size, info.mode, info.mtime = length, 0o644, int(time.time())
                tar.addfile(info, src)
                info = tarfile.TarInfo(METADATA)
                info.size, info.mode, info.mtime = len(metadata), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(metadata))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    fd = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pack(directory: Path, out: Path) -> None:
    """Pack a bundle directory (``metadata.json`` + ``payload.tar.zst``) into the file ``out``."""
    b = open_bundle(directory)
    _write(out, b.payload_path, b.payload_offset, b.payload_length, b.metadata)


def write_metadata(path: Path, metadata: bytes) -> None:
    """Replace the metadata of the bundle at ``path`` (file: rewritten atomically; directory)."""
    b = open_bundle(path)
    if path.is_dir():
        tmp = path / f".{METADATA}.tmp"
        tmp.write_bytes(metadata)
        os.replace(tmp, path / METADATA)
        return
    _write(path, b.payload_path, b.payload_offset, b.payload_length, metadata)
