"""Software A/B slots: a new slot that fails its health check is rolled back; the old one serves."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import IntakeError
from appliance.intake.activators import SoftwareActivator
from appliance.intake.bundle import METADATA
from appliance.intake.service import IntakeService
from appliance.intake.slots import SoftwareSlots, Supervisor, copy_installer

from .helpers import KEYS, World, make_bundle

REPO = Path(__file__).resolve().parents[2]

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



#: Builds slot b with an installer that copies the files, then the power goes (SIGKILL).
CUT_INSTALL = """
import os, signal, sys
from pathlib import Path
from appliance.intake.slots import SoftwareSlots, copy_installer
def cut(staged, slot):
    copy_installer(staged, slot)
    os.kill(os.getpid(), signal.SIGKILL)
SoftwareSlots(Path(sys.argv[1])).install(Path(sys.argv[2]), {"version": 2}, cut)
"""


def test_slot_half_built_at_a_cut_is_removed_never_the_current_one(tmp_path: Path) -> None:
    slots = SoftwareSlots(tmp_path / "sw")
    slots.prepare()
    src = tmp_path / "src"
    src.mkdir()
    (src / "service.py").write_text("pass\n")
    slots.flip(slots.install(src, {"version": 1}, copy_installer))  # slot a, current
    proc = subprocess.run([sys.executable, "-c", CUT_INSTALL, str(slots.root), str(src)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (slots.slots / "b" / "service.py").exists()  # what the cut left: b, not finished
    slots.prepare()  # the next start
    assert not (slots.slots / "b").exists(), "a half-built slot survived the start"
    assert slots.info("a") == {"version": 1} and (slots.slots / "a" / "service.py").exists()
    assert slots.current() == "a" and not [p for p in slots.slots.iterdir() if p.name[0] == "."]
    slots.flip(slots.install(src, {"version": 2}, copy_installer))  # and b builds again
    assert slots.info("b") == {"version": 2}


def test_no_install_over_the_rollback_slot_during_a_trial(tmp_path: Path) -> None:
    slots = SoftwareSlots(tmp_path / "sw")
    slots.prepare()
    src = tmp_path / "src"
    src.mkdir()
    (src / "service.py").write_text("pass\n")
    slots.flip(slots.install(src, {"version": 1}, copy_installer))
    slots.activate(slots.install(src, {"version": 2}, copy_installer))  # b on trial, a: rollback
    with pytest.raises(IntakeError, match="software slot b is on trial"):
        slots.install(src, {"version": 3}, copy_installer)  # would overwrite a
    assert slots.info("a") == {"version": 1}
