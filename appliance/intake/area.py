"""The staging area on disk: part files, unpacking, staged bundles; every call blocks.

Layout under ``root``: ``uploads/<id>.part`` (payload bytes as received, ``received`` bytes of
them durable), ``unpack/<id>`` (a bundle being unpacked and checked; never kept over a restart),
``staged/<id>`` (verified, unpacked, waiting for activation). Directory changes are fsynced
before a call returns. The service runs these calls in worker threads (``asyncio.to_thread``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BundleRefused, InsufficientStorage
from ..store.files import ensure_dir, fsync_dir
from .archive import unpack
from .bundle import BundleMeta
from .space import out_of_space

__all__ = ["StagingArea", "check_payload"]

log = logging.getLogger(__name__)


def check_payload(part: Path, length: int, sha256: str) -> None:
    """Check the payload file's length (bytes) and SHA-256 (hex); BundleRefused if they differ."""
    size = part.stat().st_size if part.exists() else 0
    if size != length:
        raise BundleRefused(f"truncated upload: payload has {size} of {length} bytes")
    h = hashlib.sha256()
    with open(part, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != sha256:
        raise BundleRefused("payload SHA-256 differs from the signed metadata (altered, or "
                            "files mixed from another bundle)")


@dataclass(frozen=True, slots=True)
class StagingArea:
    """The folders under ``root`` (see the module docstring)."""

    root: Path

    @property
    def uploads(self) -> Path:
        """Where payloads are received (``<id>.part``)."""
        return self.root / "uploads"

    def part(self, bid: str) -> Path:
        """The part file of upload ``bid``."""
        return self.uploads / f"{bid}.part"

    def staged(self, bid: str) -> Path:
        """The staged folder of bundle ``bid``."""
        return self.root / "staged" / bid

    def prepare(self) -> None:
        """Create the folders (durably)."""
        for d in ("uploads", "unpack", "staged"):
            ensure_dir(self.root / d)

    def recover(self, uploads: Iterable[Any], keep: str | None = None) -> None:
        """Bring the files back in line with the ``intake_upload`` rows after a cut.

        ``unpack/`` is emptied; a receiving upload's part file is truncated to its durable
        ``received`` offset; part files of unknown or finished uploads and staged folders of
        bundles not ``staged`` are removed, but for ``keep`` (the bundle id of a software update
        handed to the updater and not yet taken: the updater removes it).
        """
        shutil.rmtree(self.root / "unpack", ignore_errors=True)
        ensure_dir(self.root / "unpack")
        live = set()
        for r in uploads:
            part = self.part(r.id)
            if r.state == "receiving":
                live.add(part.name)
                if part.exists() and part.stat().st_size > r.received:
                    os.truncate(part, r.received)  # bytes beyond the durable offset: not trusted
                    log.info("intake %s: truncated the part file to %d bytes", r.id[:12], r.received)
            elif r.state in ("complete", "staged"):
                live.add(part.name)
            if r.state != "staged" and r.id != keep:
                shutil.rmtree(self.staged(r.id), ignore_errors=True)
        for p in self.uploads.iterdir():
            if p.name not in live:
                p.unlink()
        fsync_dir(self.uploads)

    def stage(self, bid: str, meta: BundleMeta) -> None:
        """Check the complete payload of ``bid`` against ``meta``, unpack it and move it to staged.

        Raises BundleRefused (length, SHA-256, archive contents, colliding paths; the part file is
        then removed), InsufficientStorage (the disk filled up while unpacking; the part file is
        kept for a retry) or OSError (disk). Whatever fails, nothing of the unpacking is left
        behind. The part file is kept on success (the caller removes it once the staged state is
        durable).
        """
        part = self.part(bid)
        unpack_dir = self.root / "unpack" / bid
        try:
            check_payload(part, meta.payload.length, meta.payload.sha256)
            shutil.rmtree(unpack_dir, ignore_errors=True)
            unpack(part, meta, unpack_dir)
        except BundleRefused:
            shutil.rmtree(unpack_dir, ignore_errors=True)
            part.unlink(missing_ok=True)
            raise
        except BaseException as e:
            shutil.rmtree(unpack_dir, ignore_errors=True)
            if isinstance(e, OSError) and out_of_space(e):
                raise InsufficientStorage(
                    f"the disk filled up while unpacking ({e.strerror}); nothing was kept "
                    "of the unpacking, finalize again once space is freed") from e
            raise
        staged = self.staged(bid)
        shutil.rmtree(staged, ignore_errors=True)
        os.replace(unpack_dir, staged)
        fsync_dir(staged.parent)
        fsync_dir(unpack_dir.parent)

    def drop_part(self, bid: str) -> None:
        """Remove the part file of ``bid`` (if any)."""
        self.part(bid).unlink(missing_ok=True)

    def drop_staged(self, bid: str) -> None:
        """Remove the staged folder of ``bid`` (if any)."""
        shutil.rmtree(self.staged(bid), ignore_errors=True)
