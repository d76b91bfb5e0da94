"""Mount-table helpers that work on a dead or hung FUSE mount.

``os.path.ismount`` stats the path, which fails with ENOTCONN once the filesystem
process is gone (reporting False for a mount that is still there) and blocks while
the process is alive but not serving, such as the filesystem process itself after
its request loop ended. These helpers read ``/proc/self/mountinfo`` instead and
never stat the mount point; they unmount with ``fusermount3``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

FUSERMOUNT = "fusermount3"


def _unescape(text: str) -> str:
    r"""Undo the octal escapes of /proc/self/mountinfo (``\040`` is a space)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        code = text[i + 1 : i + 4]
        if text[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mount_points() -> list[str]:
    """Return every mount point of this process's mount namespace, in table order."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return [_unescape(line.split(" ")[4]) for line in f if line.count(" ") >= 4]


def _canonical(path: str | os.PathLike[str]) -> str:
    """Absolute, normalised ``path`` without touching the filesystem.

    No ``realpath``: stat-ing a FUSE mount whose server is stopped or is the caller
    itself blocks forever. Pass symlink-free paths (resolve them before mounting).
    """
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def is_mounted(path: str | os.PathLike[str]) -> bool:
    """True if something is mounted exactly at ``path`` (alive or not); never stats ``path``."""
    return _canonical(path) in mount_points()


def lazy_unmount(path: str | os.PathLike[str], timeout: float = 10.0) -> None:
    """Detach whatever is mounted at ``path`` (``fusermount3 -u -z``), if anything.

    Raises:
        RuntimeError: the mount is still there afterwards.
    """
    target = _canonical(path)
    if not is_mounted(target):
        return
    tool = shutil.which(FUSERMOUNT)
    if tool is not None:
        subprocess.run([tool, "-u", "-z", target], capture_output=True, timeout=timeout, check=False)
    if is_mounted(target) and os.geteuid() == 0:
        subprocess.run(["umount", "-l", target], capture_output=True, timeout=timeout, check=False)
    if is_mounted(target):
        raise RuntimeError(f"could not unmount {target}")


def clean_unmount(path: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Unmount ``path`` with ``fusermount3 -u`` (fails while files are open there).

    Returns:
        True if nothing is mounted at ``path`` afterwards.
    """
    target = _canonical(path)
    if not is_mounted(target):
        return True
    tool = shutil.which(FUSERMOUNT)
    if tool is None:
        return False
    subprocess.run([tool, "-u", target], capture_output=True, timeout=timeout, check=False)
    return not is_mounted(target)
