"""Software A/B slots: a new slot that fails its health check is rolled back; the old one serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

import pytest

from appliance.errors import IntakeError
from appliance.intake.activators import SoftwareActivator
from appliance.intake.bundle import METADATA
from appliance.intake.service import IntakeService
from appliance.intake.slots import SoftwareSlots, Supervisor, copy_installer

from .helpers import KEYS, World, make_bundle

#: A fake service: says READY=1 over $NOTIFY_SOCKET, then reports its slot's health in a file.
SERVICE = """
import os, socket, sys, time, pathlib
slot = pathlib.Path(__file__).parent
pathlib.Path(sys.argv[1]).write_text(slot.name + " " + (slot / "health.txt").read_text())
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
time.sleep(60)
"""


def software_world(tmp: Path) -> tuple[World, SoftwareSlots, list[str]]:
    w = World(tmp)
    slots = SoftwareSlots(tmp / "intake" / "software")
    restarts: list[str] = []
    act = SoftwareActivator(slots, copy_installer, w.writer, lambda: restarts.append("restart"),
                            restart_delay_s=0)
    w.service = IntakeService(w.service.cfg, w.service.trust, w.writer, w.reader, lambda: w.mode,
                              w.service.policy, lambda: w.utc, {"software": act},
                              free_space=lambda p: 1 << 40, slots=slots)
    return w, slots, restarts


def test_failed_health_rolls_back_to_the_old_slot(tmp_path: Path) -> None:
    w, slots, restarts = software_world(tmp_path)
    health_file = tmp_path / "running"

    async def health() -> bool:
        try:
            return health_file.read_text().split()[1] == "ok"
        except (OSError, IndexError):
            return False

    sup = Supervisor(slots, lambda slot: [sys.executable, str(slot / "service.py"), str(health_file)],
                     health, bound_s=3.0)

    async def scenario() -> None:
        await w.push(make_bundle(tmp_path, 1, {"service.py": SERVICE, "health.txt": "ok"}, KEYS[:1],
                                 kind="software"))
        await asyncio.sleep(0.01)  # the restart is scheduled after the durable record
        assert slots.current() == "a" and restarts == ["restart"]
        first = await sup.switch()  # the restart into slot a (first install: on trial, passes)
        assert first is not None and first["result"] == "committed"
        assert health_file.read_text() == "a ok"
        await w.service.sync_slots()
        assert w.service.installed()["software"]["version"] == 1
        # Version 2 is broken: READY=1 but its health check fails.
        await w.push(make_bundle(tmp_path, 2, {"service.py": SERVICE, "health.txt": "broken"},
                                 KEYS[:1], kind="software"))
        assert slots.current() == "b"
        report = await sup.switch()
        assert report is not None and report["result"] == "rolled_back", report
        assert "health check failed" in report["reason"] and report["old_ready"] is True
        assert slots.current() == "a" and slots.trial() is None
        assert health_file.read_text() == "a ok"  # the old slot serves again
        assert sup.proc is not None and sup.proc.returncode is None
        await w.service.sync_slots()  # as at the next start of the service: journal + record
        assert w.service.installed()["software"]["version"] == 1
        await sup.stop()

    try:
        asyncio.run(scenario())
        actions = [r["data"]["action"] for r in w.journal()]
        assert "software_rolled_back" in actions and "software_committed" in actions
        assert json.loads((tmp_path / "b-software-2.bundle" / METADATA).read_text())
    finally:
        sup.close()
        w.close()


def test_slot_that_never_gets_ready_is_rolled_back(tmp_path: Path) -> None:
    slots = SoftwareSlots(tmp_path / "sw")
    slots.prepare()
    for name, script in (("a", "import time, os, socket\ns = socket.socket(socket.AF_UNIX, "
                          "socket.SOCK_DGRAM)\ns.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
                          "time.sleep(60)\n"), ("b", "raise SystemExit(3)\n")):
        src = tmp_path / f"src-{name}"
        src.mkdir()
        (src / "service.py").write_text(script)
        slots.install(src, {"version": 1}, copy_installer) if name == "a" else None
        if name == "a":
            slots.flip("a")
        else:
            slots.activate(slots.install(src, {"version": 2}, copy_installer))

    async def ok() -> bool:
        return True

    sup = Supervisor(slots, lambda slot: [sys.executable, str(slot / "service.py")], ok, bound_s=3)

    async def scenario() -> None:
        report = await sup.boot()
        assert report is not None and report["result"] == "rolled_back"
        assert "exited with status 3" in report["reason"]
        assert slots.current() == "a" and report["old_ready"] is True
        await sup.stop()

    try:
        asyncio.run(scenario())
    finally:
        sup.close()


def test_half_built_slot_is_removed_and_a_slot_on_trial_is_kept(tmp_path: Path) -> None:
    """A cut while slot X is built leaves its marker: the next prepare removes X, never current."""
    slots = SoftwareSlots(tmp_path / "sw")
    slots.prepare()
    src = tmp_path / "src"
    src.mkdir()
    (src / "service.py").write_text("pass\n")
    slots.flip(slots.install(src, {"version": 1}, copy_installer))  # slot a, current, committed

    def cut(staged: Path, slot: Path) -> None:
        copy_installer(staged, slot)
        raise KeyboardInterrupt  # stands for the cut: BaseException, nothing after it runs

    with contextlib.suppress(KeyboardInterrupt):
        slots.install(src, {"version": 2}, cut)
    # The installer's own failure path cleaned up; now leave what a real cut leaves.
    assert not (slots.slots / "b").exists() and not list(slots.slots.glob(".building-*"))
    (slots.slots / "b").mkdir()
    (slots.slots / "b" / "half.py").write_text("")
    (slots.slots / ".building-b").write_text("{}")
    (slots.slots / ".building-a").write_text("{}")  # a stale marker can never remove current
    slots.prepare()
    assert not (slots.slots / "b").exists() and (slots.slots / "a" / "service.py").exists()
    assert not list(slots.slots.glob(".building-*")) and slots.current() == "a"

    slots.activate(slots.install(src, {"version": 2}, copy_installer))  # b on trial
    with pytest.raises(IntakeError, match="software slot b is on trial"):
        slots.install(src, {"version": 3}, copy_installer)  # would overwrite a, the rollback slot
    assert (slots.slots / "a" / "slot.json").exists()


def test_cut_between_the_flip_and_the_commit_is_settled_at_start(tmp_path: Path) -> None:
    """The slot switched but the activation's commit was lost: the next start settles it."""
    w, slots, _ = software_world(tmp_path)

    class CutWriter:
        async def run(self, fn: object) -> None:
            raise KeyboardInterrupt  # the power went after the flip, before the commit

    async def scenario() -> None:
        await w.push(make_bundle(tmp_path, 1, {"service.py": "pass\n"}, KEYS[:1], kind="software"))
        slots.end_trial({"result": "committed", "new": "a", "old": None})
        b2 = make_bundle(tmp_path, 2, {"service.py": "pass\n"}, KEYS[:1], kind="software")
        act = w.service.activators["software"]
        assert isinstance(act, SoftwareActivator)
        act.writer = CutWriter()  # type: ignore[assignment]
        with contextlib.suppress(KeyboardInterrupt):
            await w.push(b2)
        bid = next(u["id"] for u in w.service.list_uploads() if u["version"] == 2)
        assert slots.current() == "b" and w.service.status(bid)["state"] == "staged"
        assert w.service.installed()["software"]["version"] == 1
        await w.service.sync_slots()  # as IntakeService.start does after the cut
        assert w.service.installed()["software"]["version"] == 2
        assert w.service.status(bid)["state"] == "active"
        installed = await w.service.activate(bid)  # the hangar's retry: answered, not refused
        assert installed["version"] == 2

    try:
        asyncio.run(scenario())
        rows = [r for r in w.journal() if r["data"]["action"] == "activated"]
        assert [r["data"]["version"] for r in rows] == [1, 2]
        assert "found active after a cut" in rows[-1]["summary"]
    finally:
        w.close()
