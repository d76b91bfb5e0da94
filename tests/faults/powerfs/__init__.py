"""powerfs: power-cut fault injection for code that promises durability.

:class:`PowerFS` runs the FUSE filesystem of :mod:`tests.faults.powerfs.powerfs` as a
subprocess over a backing directory, and :meth:`PowerFS.cut` simulates a power loss:
SIGKILL of the filesystem process, lazy unmount, rewrite of the backing directory to
what would have survived (:func:`tests.faults.powerfs.cut.power_cut`), remount.

Typical use (the service under test must also be killed at the cut, see ``cut``)::

    with PowerFS(backing, mnt, state) as fs:
        ...  # run the code under test on mnt
        fs.cut(random.Random(seed))
        ...  # check that nothing acknowledged is missing on mnt

The cut itself is :func:`tests.faults.powerfs.cut.power_cut`. This package imports
neither pyfuse3 nor trio: only the filesystem subprocess does.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .mounts import clean_unmount, is_mounted, lazy_unmount
from .state import LOG_FILE

if TYPE_CHECKING:
    from .cut import CutReport

__all__ = ["REPO_ROOT", "PowerFS", "fuse_unavailable"]

REPO_ROOT = Path(__file__).resolve().parents[3]
"""Directory from which ``python -m tests.faults.powerfs.powerfs`` resolves."""


class PowerFS:
    """A powerfs mount run as a subprocess, with power cuts on demand.

    Args:
        backing_dir: directory holding the real files (created if missing).
        mountpoint: empty directory to mount on (created if missing).
        state_dir: powerfs state (images, logs); must not be inside ``backing_dir``
            (created if missing). The filesystem's log goes to ``state_dir/powerfs.log``.
        python: interpreter for the filesystem process (default: this one; it needs
            pyfuse3 and trio).
        mount_timeout: seconds to wait for the mount to answer.
        debug: log every FUSE request (slow).

    The object is a context manager: entering mounts, leaving unmounts cleanly and,
    whatever happens, makes sure the process is dead and the mount gone.
    """

    def __init__(
        self,
        backing_dir: str | os.PathLike[str],
        mountpoint: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        python: str | None = None,
        mount_timeout: float = 15.0,
        debug: bool = False,
    ) -> None:
        self.backing_dir = Path(backing_dir).absolute()
        mnt = Path(mountpoint).absolute()
        self.mountpoint = mnt.parent.resolve() / mnt.name  # never stat the mount point itself
        self.state_dir = Path(state_dir).absolute()
        self.python = python or sys.executable
        self.mount_timeout = mount_timeout
        self.debug = debug
        self.cuts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """File receiving the filesystem process's stdout and stderr (appended)."""
        return self.state_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        """PID of the running filesystem process, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def mounted(self) -> bool:
        """True while something is mounted at the mountpoint (even a dead mount)."""
        return is_mounted(self.mountpoint)

    def log_text(self) -> str:
        """Return the filesystem log so far ('' if none)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def mount(self) -> None:
        """Start the filesystem process and wait until the mount answers.

        Every file already in the backing dir counts as durable from now on.

        Raises:
            RuntimeError: already mounted, the process exited, or no answer within
                ``mount_timeout`` (the process is then killed and the mount removed).
        """
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("powerfs is already running")
        if self.mounted:
            raise RuntimeError(f"something is already mounted at {self.mountpoint}")
        for d in (self.backing_dir, self.mountpoint, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        cmd = [self.python, "-m", "tests.faults.powerfs.powerfs", str(self.backing_dir), str(self.mountpoint)]
        cmd += ["--state", str(self.state_dir)] + (["--debug"] if self.debug else [])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.mount_timeout
        try:
            while not (self.mounted and os.path.ismount(self.mountpoint)):
                if self._proc.poll() is not None:
                    status = self._proc.returncode
                    raise RuntimeError(
                        f"powerfs exited with {status} before mounting:\n{self.log_text()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"powerfs did not mount within {self.mount_timeout} s")
                time.sleep(0.01)
        except BaseException:
            self.power_off()
            raise

    def power_off(self) -> None:
        """Cut the power of the filesystem: SIGKILL its process, detach the mount.

        Nothing is rewritten yet (see :meth:`cut`); processes still using the mount
        get ENOTCONN. Safe to call when not running.

        Raises:
            RuntimeError: the mount could not be removed.
        """
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            lazy_unmount(self.mountpoint)

    def cut(self, rng: random.Random, *, remount: bool = True) -> CutReport:
        """Simulate a power loss of the storage, then (by default) boot it again.

        Kills the filesystem process (if still running), detaches the mount,
        rewrites the backing dir to a random survivor state and remounts. Kill the
        processes under test too (before or right after calling :meth:`power_off`):
        anything they acknowledge after the filesystem died never reached it.

        Args:
            rng: decides what unsynced data survives.
            remount: mount again afterwards.

        Returns:
            What the cut kept and dropped.
        """
        from .cut import power_cut  # imported late: `python -m tests.faults.powerfs.cut` stays clean

        self.power_off()
        report = power_cut(self.backing_dir, self.state_dir, rng)
        self.cuts += 1
        if remount:
            self.mount()
        return report

    def unmount(self) -> None:
        """Stop cleanly: unmount (``fusermount3 -u``) and wait for the process to end.

        A clean stop loses nothing: the backing dir keeps every write, synced or not.
        If the mount is busy or the process hangs, falls back to :meth:`power_off`
        (the backing dir then still holds everything written, nothing is rewritten).
        """
        proc = self._proc
        try:
            if clean_unmount(self.mountpoint) and proc is not None:
                proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.power_off()

    def __enter__(self) -> PowerFS:
        """Mount and return self."""
        self.mount()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Unmount cleanly; in any case leave no process and no mount behind."""
        self.unmount()


def fuse_unavailable() -> str | None:
    """Return why PowerFS cannot run here (no /dev/fuse, fusermount3, pyfuse3, trio), or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as exc:
        return f"/dev/fuse is not usable: {exc}"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"pyfuse3/trio not importable ({exc}); see tests/faults/powerfs/README.md"
    return None
