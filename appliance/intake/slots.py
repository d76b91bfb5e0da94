"""Software A/B slots and the supervisor that restarts into the new slot or rolls back.

Layout under ``root`` (``<staging_dir>/software``)::

    slots/a/, slots/b/     two slot directories (a virtualenv each; ``slot.json`` says what it holds)
    slots/.building-X      present while slot X is being built (removed once it is whole)
    current -> slots/a     the active slot: a relative symlink, replaced atomically (rename + fsync)
    trial.json             present while a newly activated slot is on trial: {"new", "old", ...}
    report.json            the outcome of the last trial, until the intake service journals it

Install (:meth:`SoftwareSlots.install`): the inactive slot is rebuilt in place (a virtualenv
cannot be moved) between a durable marker ``slots/.building-X`` and its removal once every file is
fsynced; a cut in between leaves the marker and the next :meth:`~SoftwareSlots.prepare` removes the
half-built slot, so a slot without a marker is whole. Activation
(:meth:`SoftwareSlots.activate`): write ``trial.json`` durably, then flip ``current``; a cut
between the two leaves the old slot current and a stale trial that :meth:`Supervisor.boot`
clears. The :class:`Supervisor` (the process manager around the service: in production the
``appliance-supervisor`` role is played by this class run from the image's boot script) starts
the current slot's command with ``NOTIFY_SOCKET`` set; on trial, the slot must send ``READY=1``
and pass ``health()`` within ``bound_s`` seconds, else ``current`` flips back, the old slot is
started again and the report says ``rolled_back`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import IntakeError
from ..store.files import atomic_write, ensure_dir, fsync_dir

__all__ = ["SlotInstaller", "SoftwareSlots", "Supervisor", "copy_installer", "fsync_tree",
           "venv_installer"]

log = logging.getLogger(__name__)
SlotInstaller = Callable[[Path, Path], None]
SLOTS = ("a", "b")


def copy_installer(staged: Path, slot: Path) -> None:
    """Copy the staged files into ``slot`` as they are (a prebuilt slot tree), fsyncing each."""
    for dirpath, _, names in os.walk(staged):
        rel = Path(dirpath).relative_to(staged)
        (slot / rel).mkdir(parents=True, exist_ok=True)
        for n in names:
            dst = slot / rel / n
            shutil.copy2(Path(dirpath) / n, dst)
            with open(dst, "rb+") as f:
                os.fsync(f.fileno())
        fsync_dir(slot / rel)


def fsync_tree(root: Path) -> None:
    """Fsync every regular file and directory under ``root`` (and ``root``), so it survives a cut."""
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = Path(dirpath) / n
            if p.is_file() and not p.is_symlink():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(dirpath)


def venv_installer(staged: Path, slot: Path) -> None:
    """Make ``slot`` a virtualenv and install the staged wheels into it (no index, no network).

    pip resolves every dependency from the bundle's wheels alone (``--no-index --find-links``, no
    pip configuration file read), so a bundle missing a dependency fails here, not at the next
    start. Runs at the slot's final path: a virtualenv's scripts name their interpreter by its
    absolute path, so a virtualenv cannot be moved once built. Raises IntakeError with pip's last
    words when it fails.
    """
    wheels = sorted(str(p) for p in staged.rglob("*.whl"))
    if not wheels:
        raise IntakeError("software bundle holds no wheel")
    links = sorted({str(Path(w).parent) for w in wheels})
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1"}
    env.pop("PYTHONPATH", None)
    steps = [[sys.executable, "-m", "venv", str(slot)],
             [str(slot / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-cache-dir",
              "--disable-pip-version-check", "--quiet",
              *[x for d in links for x in ("--find-links", d)], *wheels]]
    for cmd in steps:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            tail = " | ".join((out.stderr or out.stdout).strip().splitlines()[-3:])
            raise IntakeError(f"installing the software bundle failed ({cmd[2]}, "
                              f"status {out.returncode}): {tail}")
    copy_installer(staged, slot / "bundle")


class SoftwareSlots:
    """The two slots and the ``current`` link."""

    def __init__(self, root: Path) -> None:
        """Keep slots under ``root`` (created by :meth:`prepare`)."""
        self.root = root
        self.slots = root / "slots"
        self.link = root / "current"
        self.trial_path = root / "trial.json"
        self.report_path = root / "report.json"

    def prepare(self) -> None:
        """Create the folders durably; remove half-built slots left by a cut (see :meth:`install`)."""
        ensure_dir(self.slots)
        for d in self.slots.glob(".new-*"):
            shutil.rmtree(d, ignore_errors=True)
        for marker in self.slots.glob(".building-*"):
            slot = marker.name.removeprefix(".building-")
            if slot in SLOTS and slot != self.current():
                log.warning("software slot %s was half built at a cut: removed", slot)
                shutil.rmtree(self.slots / slot, ignore_errors=True)
            marker.unlink()
        fsync_dir(self.slots)

    def current(self) -> str | None:
        """The active slot name (``a``/``b``) or None before the first activation."""
        try:
            target = os.readlink(self.link)
        except FileNotFoundError:
            return None
        name = Path(target).name
        return name if name in SLOTS else None

    def inactive(self) -> str:
        """The slot a new install goes to."""
        return "b" if self.current() == "a" else "a"

    def info(self, slot: str | None) -> dict[str, Any] | None:
        """The ``slot.json`` of ``slot`` (version, bundle id, keys...) or None."""
        if slot is None:
            return None
        try:
            data: dict[str, Any] = json.loads((self.slots / slot / "slot.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def install(self, staged: Path, info: dict[str, Any], installer: SlotInstaller) -> str:
        """Build the inactive slot from ``staged`` with ``installer``; returns its name.

        The slot is built at its final path (a virtualenv cannot move) between a durable marker
        ``slots/.building-X`` and the marker's removal, after every file of the slot and its
        ``slot.json`` are fsynced: a cut in between leaves the marker, and :meth:`prepare` removes
        the half-built slot, so a slot without a marker is whole. Refused (IntakeError) while a slot
        is on trial (``trial.json`` names the current slot): the inactive slot is then the one a
        rollback returns to. Raises IntakeError
        (or the installer's error) with the running slot untouched and the inactive one removed.
        """
        if (trial := self.trial()) is not None and trial.get("new") == self.current():
            raise IntakeError(f"software slot {trial.get('new')} is on trial; install again once "
                              "it is committed or rolled back")
        slot = self.inactive()
        final = self.slots / slot
        marker = self.slots / f".building-{slot}"
        atomic_write(marker, json.dumps(info, sort_keys=True).encode())
        try:
            shutil.rmtree(final, ignore_errors=True)
            final.mkdir()
            installer(staged, final)
            atomic_write(final / "slot.json", json.dumps(info, sort_keys=True).encode())
            fsync_tree(final)
            fsync_dir(self.slots)
            marker.unlink()
            fsync_dir(self.slots)
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            marker.unlink(missing_ok=True)
            fsync_dir(self.slots)
            raise
        return slot

    def flip(self, slot: str) -> None:
        """Point ``current`` at ``slot`` atomically and durably."""
        tmp = self.root / f".current.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(f"slots/{slot}", tmp)
        os.replace(tmp, self.link)
        fsync_dir(self.root)

    def activate(self, slot: str) -> None:
        """Put ``slot`` on trial: ``trial.json`` first (durable), then the flip."""
        old = self.current()
        atomic_write(self.trial_path, json.dumps({"new": slot, "old": old,
                                                  "at": time.time()}).encode())
        self.flip(slot)

    def trial(self) -> dict[str, Any] | None:
        """The trial in progress, or None."""
        try:
            data: dict[str, Any] = json.loads(self.trial_path.read_text())
            return data
        except (OSError, ValueError):
            return None

    def end_trial(self, report: dict[str, Any]) -> None:
        """Record the trial's outcome (``report.json``) and remove ``trial.json``, durably."""
        atomic_write(self.report_path, json.dumps(report, sort_keys=True).encode())
        with contextlib.suppress(FileNotFoundError):
            self.trial_path.unlink()
        fsync_dir(self.root)

    def take_report(self) -> dict[str, Any] | None:
        """The last trial's report, removed once read (the caller journals it); None if none."""
        try:
            data: dict[str, Any] = json.loads(self.report_path.read_text())
        except (OSError, ValueError):
            return None
        self.report_path.unlink()
        fsync_dir(self.root)
        return data


class Supervisor:
    """Run the current slot; on trial, roll back unless it is READY and healthy within the bound.

    ``command(slot_dir)`` is the argv that starts the service of a slot; ``health()`` returns True
    when the running service answers its health check. Both are called with ``NOTIFY_SOCKET`` set
    for the child (sd_notify protocol: a datagram ``READY=1``).
    """

    def __init__(self, slots: SoftwareSlots, command: Callable[[Path], list[str]],
                 health: Callable[[], Awaitable[bool]], bound_s: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        """Supervise ``slots``; ``bound_s`` is the trial's time limit (s)."""
        self.slots = slots
        self.command = command
        self.health = health
        self.bound_s = bound_s
        self.env = env or {}
        self.proc: asyncio.subprocess.Process | None = None
        self._sock_dir = Path(tempfile.mkdtemp(prefix="slot-notify."))

    async def boot(self) -> dict[str, Any] | None:
        """Start the current slot; if it is on trial, judge it (and roll back if needed).

        Returns the trial report, or None when no trial was pending.
        """
        trial = self.slots.trial()
        current = self.slots.current()
        if trial is not None and trial.get("new") != current:
            self.slots.end_trial({"result": "abandoned", "new": trial.get("new"),
                                  "old": trial.get("old"), "reason": "cut before the flip"})
            trial = None
        if current is None:
            raise IntakeError("no software slot is active")
        ok, reason = await self._start(current)
        if trial is None:
            return None
        if ok:
            report = {"result": "committed", "new": current, "old": trial.get("old")}
            self.slots.end_trial(report)
            return report
        old = trial.get("old")
        log.error("software slot %s failed its trial (%s): rolling back to %s", current, reason, old)
        await self.stop()
        report = {"result": "rolled_back", "new": current, "old": old, "reason": reason}
        if old in SLOTS:
            self.slots.flip(str(old))
            ok_old, why = await self._start(str(old))
            report["old_ready"] = ok_old
            if not ok_old:
                report["old_reason"] = why
        self.slots.end_trial(report)
        return report

    async def switch(self) -> dict[str, Any] | None:
        """After :meth:`SoftwareSlots.activate`: stop the running slot, then :meth:`boot`."""
        await self.stop()
        return await self.boot()

    async def _start(self, slot: str) -> tuple[bool, str]:
        """Start ``slot``; (True, "") once READY and healthy within the bound, else (False, why)."""
        path = self._sock_dir / f"notify-{slot}-{time.monotonic_ns()}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bound_s
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(self.slots.slots / slot),
                env={**os.environ, **self.env, "NOTIFY_SOCKET": str(path)},
                stdin=subprocess.DEVNULL)
            ready = False
            while loop.time() < deadline:
                if self.proc.returncode is not None:
                    return False, f"exited with status {self.proc.returncode} before passing"
                with contextlib.suppress(BlockingIOError):
                    while True:
                        if b"READY=1" in sock.recv(4096).split(b"\n"):
                            ready = True
                if ready and await self.health():
                    return True, ""
                await asyncio.sleep(0.1)
            return False, ("READY=1 but the health check failed" if ready
                           else "no READY=1") + f" within {self.bound_s:g} s"
        finally:
            sock.close()
            path.unlink(missing_ok=True)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the running slot (SIGTERM, then SIGKILL after ``timeout`` s)."""
        p, self.proc = self.proc, None
        if p is None or p.returncode is not None:
            return
        p.terminate()
        try:
            await asyncio.wait_for(p.wait(), timeout)
        except TimeoutError:
            p.kill()
            await p.wait()

    def close(self) -> None:
        """Remove the notify socket directory."""
        shutil.rmtree(self._sock_dir, ignore_errors=True)
