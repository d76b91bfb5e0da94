"""Issue 14: a slot whose build marker is gone survives a power cut whole (PowerFS).

pip writes a virtualenv's files without fsync. :meth:`SoftwareSlots.install` removes the slot's
build marker only once every file of the slot is durable (:func:`~appliance.intake.slots.
fsync_tree`); otherwise a power cut right after the install returned could leave a slot that
looks finished (no marker, ``slot.json`` present) with files missing or empty: a half-installed
slot marked good, which ``current`` may then point at. Here the slots live on PowerFS (which
drops unsynced writes at a cut) and the installer writes 40 files the way pip does (no fsync).
Each round builds the inactive slot, cuts the power at once, and after the next start
(``prepare``) the slot is either absent or has every file with its exact bytes. (A virtualenv
itself needs symbolic links, which PowerFS does not have; the installer stands in for pip.)
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from appliance.intake.slots import SoftwareSlots

from ..faults.driver import fuse_unavailable
from ..faults.powerfs import PowerFS

_SKIP = fuse_unavailable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]
ROUNDS = 6


def pip_like(version: int) -> tuple[dict[str, bytes], object]:
    """The files of ``version`` and an installer writing them without fsync, as pip does."""
    rng = random.Random(version)
    files = {f"lib/site-packages/pkg/m{i:02d}.py": rng.randbytes(rng.randint(100, 20_000))
             for i in range(40)}

    def install(staged: Path, slot: Path) -> None:
        for rel, body in files.items():
            (slot / rel).parent.mkdir(parents=True, exist_ok=True)
            (slot / rel).write_bytes(body)
    return files, install


@pytest.mark.timeout(240)
def test_a_finished_slot_is_whole_after_a_power_cut(tmp_path: Path) -> None:
    fs = PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "state")
    rng = random.Random(14)
    outcomes = []
    try:
        fs.mount()
        root = fs.mountpoint / "software"
        SoftwareSlots(root).prepare()
        staged = tmp_path / "staged"
        staged.mkdir()
        for version in range(1, ROUNDS + 1):
            slots = SoftwareSlots(root)
            files, installer = pip_like(version)
            name = slots.install(staged, {"version": version}, installer)  # type: ignore[arg-type]
            fs.cut(rng)  # the power goes right after the install returned
            slots = SoftwareSlots(root)
            slots.prepare()  # the next start
            slot = root / "slots" / name
            if not slot.exists():
                outcomes.append(f"v{version}: slot {name} removed")
                continue
            info = slot / "slot.json"
            assert info.exists() and json.loads(info.read_text()) == {"version": version}, name
            for rel, body in files.items():
                assert (slot / rel).exists(), f"v{version}: {rel} lost, slot {name} looks finished"
                got = (slot / rel).read_bytes()
                assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest(), \
                    f"v{version}: {rel} damaged ({len(got)} of {len(body)} bytes), slot {name} " \
                    "looks finished"
            outcomes.append(f"v{version}: slot {name} whole")
    finally:
        fs.unmount()
    print("\n" + "; ".join(outcomes))
    assert sum("whole" in o for o in outcomes) == ROUNDS, outcomes
    assert "internal error" not in fs.log_text()
