"""Software A/B slots: the service only asks, the updater checks what it takes, a cut trial rolls back.

The service writes a request file; the updater re-verifies it; the reports are journaled and queued.

The whole path (install with the real wheels, switch, restart through systemd, trial, rollback,
power cuts) runs in the image under systemd-nspawn: tests/systemd/test_update.py.
"""

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
from appliance.intake.slots import SoftwareSlots, copy_installer
from appliance.intake.updater import Systemctl, UpdaterPaths, apply, boot_check
from appliance.settings import Settings

from .helpers import KEYS, World, make_bundle, pub_hex

REPO = Path(__file__).resolve().parents[2]


def software_world(tmp: Path) -> tuple[World, SoftwareSlots, UpdaterPaths]:
    w = World(tmp)
    paths = UpdaterPaths(tmp / "opt", tmp / "intake")
    slots = paths.slots()
    act = SoftwareActivator(paths.request, w.writer,
                            lambda bid: w.service.records.row(bid).envelope)
    w.service = IntakeService(w.service.cfg, w.service.trust, w.writer, w.reader, lambda: w.mode,
                              w.service.policy, lambda: w.utc, {"software": act},
                              free_space=lambda p: 1 << 40, slots=slots,
                              update_request=paths.request)
    return w, slots, paths


def settings_for(tmp: Path) -> Settings:
    return Settings(data_dir=tmp, intake={"software_root": tmp / "opt", "staging_dir": tmp / "intake",
                                          "roles": {"software": {"keys": [pub_hex(KEYS[0])]}}})


class NoSystemd(Systemctl):
    """The refusals below end before any restart: a call to systemctl is a test failure."""

    def show(self, unit: str) -> dict[str, str]:
        raise AssertionError("systemctl show called")

    def restart(self, unit: str) -> None:
        raise AssertionError("systemctl restart called")


def test_activation_only_asks_the_updater(tmp_path: Path) -> None:
    w, _slots, paths = software_world(tmp_path)

    async def scenario() -> None:
        await w.push(make_bundle(tmp_path, 2, {"appliance-0.2.0-py3-none-any.whl": "wheel"},
                                 KEYS[:1], kind="software"))
    try:
        asyncio.run(scenario())
        req = json.loads(paths.request.read_text())
        assert req["version"] == 2 and req["envelope"]["signatures"]
        assert (paths.staged(req["bundle_id"]) / "appliance-0.2.0-py3-none-any.whl").exists()
        assert not (tmp_path / "opt").exists()  # the service never touched the slots
        actions = [r["data"]["action"] for r in w.journal()]
        assert actions[-1] == "activated"
    finally:
        w.close()


def test_updater_refuses_a_file_changed_after_staging(tmp_path: Path) -> None:
    w, slots, paths = software_world(tmp_path)

    async def scenario() -> None:
        await w.push(make_bundle(tmp_path, 2, {"appliance-0.2.0-py3-none-any.whl": "wheel"},
                                 KEYS[:1], kind="software"))
    try:
        asyncio.run(scenario())
        req = json.loads(paths.request.read_text())
        # The service's user (or anything with its rights) swaps the wheel after verification.
        (paths.staged(req["bundle_id"]) / "appliance-0.2.0-py3-none-any.whl").write_text("evil")
        report = apply(settings_for(tmp_path), paths, NoSystemd(), installer=copy_installer)
        assert report is not None and report["result"] == "failed"
        assert "does not match the signed manifest" in report["reason"]
        assert slots.current() is None and not paths.request.exists()
        assert not any(slots.slots.glob("*/appliance-0.2.0-py3-none-any.whl"))
        asyncio.run(w.service.sync_slots())
        journal = w.journal()
        assert journal[-1]["data"]["action"] == "software_failed"
        assert slots.last_report() is not None and slots.last_report()["result"] == "failed"
    finally:
        w.close()


@pytest.mark.parametrize("signer", [3, None])
def test_updater_refuses_a_request_not_signed_by_the_pinned_keys(tmp_path: Path,
                                                                 signer: int | None) -> None:
    w, slots, paths = software_world(tmp_path)
    bundle = make_bundle(tmp_path, 2, {"x.whl": "wheel"}, [KEYS[signer]] if signer else [],
                         kind="software")
    env = json.loads((bundle / METADATA).read_text())
    paths.request.parent.mkdir(parents=True)
    from appliance.intake.bundle import load_envelope
    bid = load_envelope(env).bundle_id()
    paths.request.write_text(json.dumps({"bundle_id": bid, "envelope": env}))
    try:
        report = apply(settings_for(tmp_path), paths, NoSystemd(), installer=copy_installer)
        assert report is not None and report["result"] == "failed"
        assert ("unknown key" in report["reason"]) if signer else ("below threshold" in report["reason"])
        assert slots.current() is None
    finally:
        w.close()


def _two_slots(tmp: Path) -> SoftwareSlots:
    slots = UpdaterPaths(tmp / "opt", tmp / "intake").slots()
    slots.prepare()
    src = tmp / "src"
    src.mkdir()
    (src / "bin").mkdir()
    slots.flip(slots.install(src, {"version": 1}, copy_installer))
    return slots


def test_boot_check_rolls_back_a_trial_cut_by_power_loss(tmp_path: Path) -> None:
    slots = _two_slots(tmp_path)
    new = slots.install(tmp_path / "src", {"version": 2}, copy_installer)
    slots.activate(new)  # trial.json, then the flip: the power goes during the trial
    assert slots.current() == "b"
    report = boot_check(slots)
    assert report is not None and report["result"] == "rolled_back"
    assert "interrupted" in report["reason"]
    assert slots.current() == "a" and slots.trial() is None
    assert [r["result"] for r in slots.take_reports()] == ["rolled_back"]
    assert boot_check(slots) is None  # nothing left to settle


def test_boot_check_clears_a_trial_cut_before_the_switch(tmp_path: Path) -> None:
    slots = _two_slots(tmp_path)
    slots.install(tmp_path / "src", {"version": 2}, copy_installer)
    slots.trial_path.write_text(json.dumps({"new": "b", "old": "a", "version": 2}))
    report = boot_check(slots)  # the flip never happened
    assert report is not None and report["result"] == "abandoned"
    assert slots.current() == "a" and slots.trial() is None


def test_a_slot_cut_during_its_install_is_removed_and_never_current(tmp_path: Path) -> None:
    slots = _two_slots(tmp_path)

    def cut(staged: Path, slot: Path) -> None:
        (slot / "bin").mkdir()
        raise KeyboardInterrupt  # stands for the power going: nothing after this line runs

    with pytest.raises(KeyboardInterrupt):
        slots.install(tmp_path / "src", {"version": 2}, cut)
    # What a real cut leaves: the marker and a partial slot (the except clause never ran).
    (slots.slots / ".building-b").touch()
    (slots.slots / "b" / "bin").mkdir(parents=True)
    assert boot_check(slots) is None
    assert slots.current() == "a" and (slots.slots / "a").is_dir()
    assert not (slots.slots / "b").exists() and not list(slots.slots.glob(".building-*"))


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


def test_updater_verifies_against_the_rotated_key_set(tmp_path: Path) -> None:
    """A software request signed by a key that a later ``keys`` bundle retired is refused.

    The updater reads the key set in force from the service's journal database (read_trust),
    not only the configured keys (which still pin KEYS[0] here).
    """
    from appliance.intake.bundle import Trust, load_envelope, sign
    from appliance.intake.hangar_keys import build_keyset_bundle
    from appliance.intake.keyset import keys_activator

    w, slots, paths = software_world(tmp_path)
    trust = Trust.from_hex({"content": ([pub_hex(KEYS[0])], 1), "software": ([pub_hex(KEYS[0])], 1),
                            "keys": ([pub_hex(KEYS[1])], 1)})
    svc = w.service
    w.service = IntakeService(svc.cfg, trust, w.writer, w.reader, lambda: w.mode, svc.policy,
                              lambda: w.utc, {"software": svc.activators["software"],
                                              "keys": keys_activator(w.writer,
                                                                     lambda: w.service.trust_in_force())},
                              free_space=lambda p: 1 << 40, slots=slots, update_request=paths.request)
    new = pub_hex(KEYS[3])
    rotation = tmp_path / "keys.bundle"
    env = build_keyset_bundle(1, {"content": ([new], 1), "software": ([new], 1), "keys": ([new], 1)},
                              rotation)
    for k in (KEYS[1], KEYS[3]):
        env = sign(env, k)
    (rotation / METADATA).write_bytes(env.to_json())

    async def scenario() -> None:
        await w.push(make_bundle(tmp_path, 2, {"appliance-0.2.0-py3-none-any.whl": "wheel"},
                                 KEYS[:1], kind="software"))  # accepted: KEYS[0] still in force
        assert (await w.push(rotation))["state"] == "active"  # then KEYS[0] is retired
    try:
        asyncio.run(scenario())
        assert load_envelope(json.loads(paths.request.read_text())["envelope"])
        report = apply(settings_for(tmp_path), paths, NoSystemd(), installer=copy_installer)
        assert report is not None and report["result"] == "failed", report
        assert "retired key" in report["reason"], report
        assert slots.current() is None and not paths.request.exists()
    finally:
        w.close()
