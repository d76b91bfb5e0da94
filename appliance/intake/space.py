"""Disk space for the intake: what a step needs, what is free, and the journal's reserve.

The staging area shares its filesystem with the journal (``<data_dir>``) on the aircraft. The
intake never takes the last ``reserve_bytes`` of it: passenger orders and every other journal
commit keep working while a bundle is received or unpacked. A step that does not fit raises
:class:`~appliance.errors.InsufficientStorage` naming the bytes needed and free, before it
writes anything; a write that still hits ``ENOSPC``/``EDQUOT`` (something else filled the disk
meanwhile) is turned into the same error by the caller (:func:`out_of_space`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InsufficientStorage
from .bundle import BundleMeta

__all__ = ["BLOCK_BYTES", "Space", "free_bytes", "out_of_space", "unpacked_bytes"]

#: The allocation unit assumed for each unpacked file (bytes; a file takes whole blocks).
BLOCK_BYTES = 4096


def free_bytes(path: Path) -> int:
    """Bytes free for an unprivileged writer on the filesystem of ``path`` (``statvfs``)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def out_of_space(e: BaseException) -> bool:
    """True if ``e`` is the filesystem saying it is full (``ENOSPC``) or over quota (``EDQUOT``)."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def unpacked_bytes(meta: BundleMeta) -> int:
    """What unpacking ``meta`` takes on disk at most (bytes).

    Each file rounded up to whole blocks, plus a block per directory level of each file (a
    generous bound for the directories).
    """
    total = 0
    for path, f in meta.files.items():
        total += -(-f.length // BLOCK_BYTES) * BLOCK_BYTES + path.count("/") * BLOCK_BYTES
    return total


@dataclass(frozen=True, slots=True)
class Space:
    """Free space of the staging area at ``root`` as the intake may use it.

    ``free_space(root)`` gives the filesystem's free bytes; ``reserve_bytes`` of them are the
    journal's and never counted as available.
    """

    root: Path
    reserve_bytes: int
    free_space: Callable[[Path], int] = free_bytes

    def available(self) -> int:
        """Bytes the intake may still use now (free minus the reserve; may be negative)."""
        return self.free_space(self.root) - self.reserve_bytes

    def require(self, need: int, what: str) -> None:
        """Raise InsufficientStorage unless ``need`` bytes fit beside the reserve; ``what`` names the step."""
        free = self.free_space(self.root)
        if need + self.reserve_bytes > free:
            raise InsufficientStorage(
                f"not enough free space for {what}: needs {need} bytes plus the journal's reserve "
                f"of {self.reserve_bytes}, {free} bytes free in the staging area")
