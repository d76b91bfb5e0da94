"""Software A/B slots: install into the inactive slot, flip ``current``, trial marker, reports.

Layout under ``root`` (the software partition, ``/opt/appliance`` in the image; written only by the
privileged updater, :mod:`.updater`)::

    slots/a/, slots/b/     two slot directories (a virtualenv each; ``slot.json`` says what it holds)
    slots/.building-X      present while slot X is being built (removed once it is whole)
    current -> slots/a     the active slot: a relative symlink, replaced atomically (rename + fsync)
    trial.json             present while a newly activated slot is on trial: {"new", "old", ...}

and under ``reports`` (``<staging_dir>/software/reports`` on the data partition) one JSON file per
trial outcome (``committed``, ``rolled_back``, ``abandoned``, ``failed``), until the intake service
journals it (:meth:`SoftwareSlots.take_reports`).

Install (:meth:`SoftwareSlots.install`): the inactive slot is rebuilt in place (a virtualenv
cannot be moved) between a durable marker ``slots/.building-X`` and its removal once every file is
fsynced; a cut in between leaves the marker and the next :meth:`~SoftwareSlots.prepare` removes the
half-built slot, so a slot without a marker is whole. Activation
(:meth:`SoftwareSlots.activate`): write ``trial.json`` durably, then flip ``current``; a cut
between the two leaves the old slot current and a stale trial that the updater's boot check
clears (``abandoned``); a cut after the flip leaves the new slot current with the trial pending,
which the boot check rolls back (``rolled_back``, "trial interrupted").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import IntakeError
from ..store.files import atomic_write, ensure_dir, fsync_dir

__all__ = ["SLOTS", "SlotInstaller", "SoftwareSlots", "copy_installer", "fsync_tree",
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

    def __init__(self, root: Path, reports: Path | None = None) -> None:
        """Keep slots under ``root`` (created by :meth:`prepare`), reports in ``reports``.

        ``reports`` defaults to ``root/reports``.
        """
        self.root = root
        self.slots = root / "slots"
        self.link = root / "current"
        self.trial_path = root / "trial.json"
        self.reports = reports if reports is not None else root / "reports"

    def prepare(self) -> None:
        """Create the folders durably; remove half-built slots left by a cut (see :meth:`install`)."""
        ensure_dir(self.slots)
        for d in self.slots.glob(".in-*"):
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

    def end_trial(self, report: dict[str, Any], key: str | None = None) -> None:
        """Record the trial's outcome (:meth:`add_report` under ``key``), then remove ``trial.json``.

        Durable. Run again after a cut between the two, it rewrites the same report file (same
        ``key``) rather than adding a second one.
        """
        self.add_report(report, key=key)
        with contextlib.suppress(FileNotFoundError):
            self.trial_path.unlink()
        fsync_dir(self.root)

    def add_report(self, report: dict[str, Any], owner: tuple[int, int] | None = None,
                   key: str | None = None) -> Path:
        """Write ``report`` (with ``at``, epoch s) as a file in :attr:`reports`, durably.

        ``owner`` (uid, gid): chown the file, so the unprivileged service can read and remove it.
        ``key`` (digits; default the time in ns) names the file: the same key and result replace
        the same file, so an outcome written again after a power cut is not reported twice.
        """
        ensure_dir(self.reports)
        report = {"at": time.time(), **report}
        name = key if key is not None and key.isdigit() else f"{time.time_ns():020d}"
        path = self.reports / f"{name}-{report.get('result', 'report')}.json"
        atomic_write(path, json.dumps(report, sort_keys=True).encode())
        if owner is not None:
            os.chown(path, *owner)
        return path

    def take_reports(self) -> list[dict[str, Any]]:
        """The trial reports not yet taken, oldest first, each removed once read.

        The caller journals them; unreadable files are removed with a warning.
        """
        out: list[dict[str, Any]] = []
        try:
            files = sorted(self.reports.glob("*.json"))
        except OSError:
            return out
        for f in files:
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError) as e:
                log.warning("software report %s unreadable: %s", f.name, e)
            f.unlink(missing_ok=True)
        if files:
            fsync_dir(self.reports)
        return out

    @property
    def last_path(self) -> Path:
        """The newest trial report journaled (beside :attr:`reports`; written by the service)."""
        return self.reports.parent / "last.json"

    def keep_last(self, report: dict[str, Any]) -> None:
        """Keep ``report`` as the newest outcome (for BITE), durably."""
        atomic_write(self.last_path, json.dumps(report, sort_keys=True).encode())

    def last_report(self) -> dict[str, Any] | None:
        """The newest trial outcome journaled, or None."""
        try:
            data: dict[str, Any] = json.loads(self.last_path.read_text())
            return data
        except (OSError, ValueError):
            return None
