"""Issue 14: a power cut at every durable step of the privileged updater leaves exactly one outcome.

The real updater (:func:`~appliance.intake.updater.apply`, :func:`~appliance.intake.updater.boot_check`)
on real files: slot ``a`` holds v1 and is current; the service has left a request for v2 (signed
by the pinned key) and its staged files, as the software activator does. A forked child runs
``apply`` and dies with ``os._exit`` (no ``finally``, no cleanup: the power going) right after its
k-th durable step (every ``fsync_dir``: each atomic write, rename and unlink ends with one); the
"next boot" then runs what the image runs: the boot check (``appliance-update-check.service``),
then ``apply`` again while the request is there (``appliance-update.path``). For every k until a
run completes without a cut, after the next boot: no request and no trial left, exactly one report
for the update, and ``current`` is the v2 slot if that report says ``committed`` and the v1 slot
otherwise, each slot whole (``slot.json`` and its files). Once with a trial that passes, once with
one that fails its health check.

systemd is a stand-in here (a restart is a new invocation, active at once); the real unit, the real
trial and a cut of the real container are tests/systemd/test_update.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from appliance.intake import slots as slots_mod
from appliance.intake import updater
from appliance.intake.bundle import METADATA, load_envelope
from appliance.intake.slots import SoftwareSlots, copy_installer
from appliance.intake.updater import Systemctl, UpdaterPaths, apply, boot_check
from appliance.settings import Settings
from appliance.store import files

from .helpers import KEYS, make_bundle, pub_hex


class StandInSystemd(Systemctl):
    """``appliance.service`` as the trial sees it: each restart a new invocation, active at once."""

    def __init__(self) -> None:
        self.invocation = 0

    def show(self, unit: str) -> dict[str, str]:
        return {"ActiveState": "active", "SubState": "running", "Result": "success",
                "InvocationID": f"inv{self.invocation}"}

    def restart(self, unit: str) -> None:
        self.invocation += 1


class Cut:
    """Counts durable steps; the child dies right after step ``at`` (0: never)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.steps = 0

    def install(self, mp: pytest.MonkeyPatch) -> None:
        real = files.fsync_dir

        def fsync_dir(path: str | os.PathLike[str]) -> None:
            real(path)
            self.steps += 1
            if self.steps == self.at:
                os._exit(99)
        for mod in (files, slots_mod, updater):
            mp.setattr(mod, "fsync_dir", fsync_dir)


def world(tmp: Path) -> tuple[Settings, UpdaterPaths]:
    """v1 current in slot a; the service's request for v2 and its staged files."""
    paths = UpdaterPaths(tmp / "opt", tmp / "intake")
    slots = paths.slots()
    slots.prepare()
    v1 = tmp / "v1"
    (v1 / "bin").mkdir(parents=True)
    (v1 / "bin" / "appliance").write_text("v1")
    slots.flip(slots.install(v1, {"version": 1, "bundle_id": "v1"}, copy_installer))
    bundle = make_bundle(tmp, 2, {"appliance-0.2.0-py3-none-any.whl": "v2 wheel"}, KEYS[:1],
                         kind="software")
    env = json.loads((bundle / METADATA).read_text())
    bid = load_envelope(env).bundle_id()
    shutil.copytree(tmp / "src-software-2", paths.staged(bid))
    paths.request.parent.mkdir(parents=True, exist_ok=True)
    paths.request.write_text(json.dumps({"bundle_id": bid, "version": 2, "envelope": env,
                                         "requested_at": time.time()}))
    return world_paths(tmp)


def run_cut(s: Settings, paths: UpdaterPaths, at: int, healthy: bool,
            mp: pytest.MonkeyPatch) -> bool:
    """``apply`` in a child cut after durable step ``at``; True if the child finished uncut."""
    health = (lambda: (True, "")) if healthy else (lambda: (False, "the admin port: HTTP 500"))
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            Cut(at).install(mp)
            apply(s, paths, StandInSystemd(), installer=copy_installer, health=health,
                  settle_s=0.0)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, 99), f"the updater failed (status {code}) with its cut after step {at}"
    return code == 0


def next_boot(s: Settings, paths: UpdaterPaths, healthy: bool) -> list[dict[str, object]]:
    """What the image runs at the next boot; returns every report left (taken)."""
    slots = paths.slots()
    boot_check(slots, None, paths.request)
    if paths.request.exists():
        health = (lambda: (True, "")) if healthy else (lambda: (False, "HTTP 500"))
        apply(s, paths, StandInSystemd(), installer=copy_installer, health=health, settle_s=0.0)
    return slots.take_reports()


def check_whole(slots: SoftwareSlots, slot: str, version: int) -> None:
    info = slots.info(slot)
    assert info is not None and info["version"] == version, f"slot {slot}: {info}"
    assert not (slots.slots / f".building-{slot}").exists()
    expect = "v1" if version == 1 else "v2 wheel"
    name = "bin/appliance" if version == 1 else "appliance-0.2.0-py3-none-any.whl"
    assert (slots.slots / slot / name).read_text() == expect


@pytest.mark.parametrize("healthy", [True, False], ids=["trial-passes", "trial-fails"])
def test_a_cut_at_any_step_of_the_updater_leaves_one_outcome(
        tmp_path: Path, healthy: bool, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    monkeypatch.setattr(updater, "POLL_S", 0.01)
    # On tmpfs when there is one: the cuts are the child's death, not lost writes (fsyncs are slow
    # on a shared disk, and ~60 runs fsync a few hundred times).
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        tmp_path = Path(tempfile.mkdtemp(prefix="updater-cuts.", dir=shm))
        request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    template = tmp_path / "template"
    world(template)
    seen: dict[str, int] = {}
    at = 0
    while True:
        at += 1
        assert at < 200, "the updater never finished"
        run = tmp_path / f"cut-{at}"
        shutil.copytree(template, run, symlinks=True)
        s, paths = world_paths(run)
        finished = run_cut(s, paths, at, healthy, monkeypatch)
        reports = next_boot(s, paths, healthy)
        slots = paths.slots()
        where = f"cut after durable step {at}"
        assert not paths.request.exists(), where
        assert slots.trial() is None, where
        assert len(reports) == 1, f"{where}: reports {[r.get('result') for r in reports]}"
        (report,) = reports
        assert report["result"] in ("committed", "rolled_back", "abandoned"), f"{where}: {report}"
        assert report["version"] == 2 and report["old"] == "a", f"{where}: {report}"
        current = slots.current()
        if report["result"] == "committed":
            assert current == "b", where
            check_whole(slots, "b", 2)
        else:
            assert current == "a", where
        check_whole(slots, "a", 1)
        seen[str(report["result"])] = seen.get(str(report["result"]), 0) + 1
        if finished:
            break
    print(f"\n{at} cut points, outcomes after the next boot: {seen}")
    # Every kind of cut happened: before the switch, during the trial, and after the decision.
    assert at > 10
    assert seen.get("committed" if healthy else "rolled_back", 0) >= 2
    assert seen.get("abandoned", 0) >= 1 or seen.get("rolled_back", 0) >= 2


def world_paths(root: Path) -> tuple[Settings, UpdaterPaths]:
    """The settings and paths of a copied world (the request and staged files as copied)."""
    s = Settings(data_dir=root, intake={
        "software_root": root / "opt", "staging_dir": root / "intake", "health_bound_s": 0.05,
        "roles": {"software": {"keys": [pub_hex(KEYS[0])]}}})
    return s, UpdaterPaths(root / "opt", root / "intake")
