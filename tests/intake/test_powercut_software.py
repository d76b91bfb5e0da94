"""Issue 14: power cuts while a software bundle is uploaded, staged and installed into a slot.

The intake process (:mod:`tests.intake.intake_proc`, the daemon's wiring and router, the real
:func:`~appliance.intake.slots.venv_installer`) has its data dir (journal, uploads, staging) on
PowerFS, which throws away whatever was not fsynced at a cut. The software slots are on the
ordinary disk beside it: PowerFS has no symbolic links, and a slot is a virtualenv with a
``current`` link; for them a cut is the process killed at that instant (no supervisor or
privileged updater runs here: that part, the trial and the rollback, is the updater's).

Software v1 (a wheel of ``firmware-bridge`` at version 0.1.1, and filler so the upload takes ~10
chunks) is pushed and activated uncut, its trial committed as the supervisor would. Then v2
(0.1.2) is pushed step by step and cut 8 times: twice during the upload, twice during finalize,
and during activation once the slot's build marker appears, while pip runs, once ``current``
points at the new slot, and after a random delay. After each restart:

- the resume offset is never behind an acknowledged chunk nor ahead of the bytes sent, and the
  part file is exactly the payload's prefix;
- no slot is half installed: no build marker survives the start, and every slot present has its
  ``slot.json`` and the exact files of its wheel (every file hashed against the wheel's RECORD),
  at the version ``slot.json`` names;
- the installed software version (``intake_installed``) is the version of the slot ``current``
  points at, and once the activation was answered it is v2.

At the end the real push client finishes; v2 is active and its activation journaled.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from appliance.intake.hangar import build_bundle, push, sign_bundle
from appliance.intake.slots import SoftwareSlots

from ..faults.driver import fuse_unavailable
from ..faults.powerfs import PowerFS
from .helpers import KEYS, pub_hex
from .test_powercut import CHUNK, TOKEN, Client, Proc, in_thread, pause, wait_until

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.system, pytest.mark.e2e]
VERSIONS = {1: "0.1.1", 2: "0.1.2"}


def bridge_wheel(base: Path, version: str) -> Path:
    """A wheel of this tree's firmware-bridge at ``version`` (built from a copy, offline)."""
    src = base / f"fb-{version}"
    shutil.copytree(REPO / "firmware-bridge", src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    pp = src / "pyproject.toml"
    pp.write_text(re.sub(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pp.read_text(), count=1))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                          "-w", str(base / "wheels"), str(src)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    (wheel,) = (base / "wheels").glob(f"firmware_bridge-{version}-*.whl")
    return wheel


def software_bundle(tmp: Path, version: int, keys_dir: Path) -> Path:
    wheel = bridge_wheel(tmp, VERSIONS[version])
    filler = tmp / f"filler-{version}.bin"
    filler.write_bytes(random.Random(version).randbytes(300_000))
    out = tmp / f"sw-{version}.bundle"
    build_bundle("software", "appliance-sw", version, [wheel, filler], out)
    key = keys_dir / "k0.pem"
    if not key.exists():
        key.write_bytes(KEYS[0].private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    sign_bundle(out, [key])
    return out


def check_slots(sw: Path) -> dict[str, int]:
    """Every slot whole (see the module docstring); returns ``{slot: version}``."""
    slots = sw / "slots"
    assert not list(slots.glob(".building-*")), "a build marker survived the start"
    assert not list(slots.glob(".new-*"))
    found: dict[str, int] = {}
    for d in sorted(p for p in slots.iterdir() if p.is_dir()):
        info = d / "slot.json"
        assert info.exists(), f"slot {d.name} is present without slot.json: half installed"
        version = int(json.loads(info.read_text())["version"])
        (dist,) = d.glob(f"lib/python*/site-packages/firmware_bridge-{VERSIONS[version]}.dist-info")
        site = dist.parent
        for line in (dist / "RECORD").read_text().splitlines():
            path, digest, _ = line.rsplit(",", 2)
            if digest:
                algo, b64 = digest.split("=", 1)
                body = (site / path).read_bytes()
                want = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
                assert hashlib.new(algo, body).digest() == want, f"slot {d.name}: {path} damaged"
        assert (d / "bin" / "python").exists() and (d / "bundle").is_dir()
        found[d.name] = version
    return found


@pytest.mark.timeout(600)
def test_power_cuts_during_software_upload_staging_install(tmp_path: Path) -> None:
    why_not = fuse_unavailable()
    if why_not:
        pytest.fail(f"PowerFS unavailable: {why_not}")
    t0 = time.monotonic()
    b1 = software_bundle(tmp_path, 1, tmp_path)
    b2 = software_bundle(tmp_path, 2, tmp_path)
    fs = PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "fsstate")
    data = fs.mountpoint
    sw = tmp_path / "software"
    cfg = tmp_path / "intake.json"
    cfg.write_text(json.dumps({
        "data": str(data), "token": TOKEN, "chunk_bytes": CHUNK, "restart": False,
        "software_root": str(sw),
        "roles": {"software": {"keys": [pub_hex(KEYS[0])], "threshold": 1}}}))
    rng = random.Random(20261202)
    proc: Proc | None = None
    c = Client(b2)
    outcomes: list[str] = []
    activation_acked = False

    def start() -> None:
        nonlocal proc
        proc = Proc(cfg)
        proc.wait_ready()
        c.url = proc.url

    def installed_version() -> int:
        inst = httpx.get(f"{c.url}/probe", timeout=30).json()["installed"]["software"]
        return int(inst["version"])

    def cut(label: str, pending: threading.Thread | None = None) -> None:
        assert proc is not None
        fs.power_off()
        proc.kill()
        if pending is not None:
            pending.join(60)
        fs.cut(rng)
        start()
        slots = check_slots(sw)
        current = SoftwareSlots(sw).current()
        assert current is not None and current in slots, (label, current, slots)
        version = installed_version()
        assert version == slots[current], f"{label}: installed v{version}, current slot " \
                                          f"{current} holds v{slots[current]}"
        if activation_acked:
            assert version == 2, f"{label}: the activation was answered, v{version} runs"
        st = c.status()
        assert c.acked <= st["received"] <= max(c.sent, c.acked), (label, st, c.acked, c.sent)
        if st["state"] == "receiving":
            part = (data / "intake" / "uploads" / f"{c.bid}.part").read_bytes()
            assert part == c.payload[:st["received"]], f"{label}: part file != payload prefix"
        c.acked = max(c.acked, st["received"])
        outcomes.append(f"{label}: v{version} in slot {current} {sorted(slots.items())}, upload "
                        f"{st['state']} at {st['received']}")

    def activate() -> None:
        nonlocal activation_acked
        c.call("POST", f"/uploads/{c.bid}/activate", timeout=300)
        activation_acked = True

    try:
        fs.mount()
        start()
        r1 = push(b1, c.url, TOKEN, retry_s=0.05, give_up_s=300, timeout_s=300)
        assert r1.status["state"] == "active"
        assert installed_version() == 1 and check_slots(sw) == {"a": 1}
        assert proc is not None
        proc.kill()  # the supervisor's part: the new slot passed its trial
        SoftwareSlots(sw).end_trial({"result": "committed", "new": "a", "old": None})
        start()
        t_v1 = time.monotonic()

        st = c.begin()
        assert st["received"] == 0 and len(c.payload) > 8 * CHUNK, len(c.payload)
        for _ in range(2):
            c.put(c.acked)
        cut("upload, between chunks 2 and 3")
        c.put(c.acked)
        off = c.acked
        pending = in_thread(lambda: c.put(off))
        time.sleep(rng.uniform(0.0, 0.03))
        cut(f"upload, chunk {off // CHUNK + 1} in flight", pending)
        while (st := c.status())["state"] == "receiving":
            c.put(st["received"])
        assert st["state"] == "complete"

        intake = data / "intake"
        finalize_at: list[tuple[str, Callable[[], bool] | None]] = [
            ("right after the request", None),
            ("once the staged dir appears", lambda: (intake / "staged" / c.bid).exists())]
        for what, cond in finalize_at:
            if c.status()["state"] != "complete":
                break
            pending = in_thread(lambda: c.call("POST", f"/uploads/{c.bid}/finalize"))
            hit = wait_until(cond, 10) if cond else pause(rng.uniform(0, 0.01))
            cut(f"finalize, {what}{'' if hit else ' (not seen)'}", pending)
        if c.status()["state"] == "complete":
            c.call("POST", f"/uploads/{c.bid}/finalize")
        assert c.status()["state"] == "staged"

        slots_dir = sw / "slots"

        def pip_running() -> bool:  # the wheel's files are being written
            return any(slots_dir.glob("b/lib/python*/site-packages/firmware_bridge")) and \
                (slots_dir / ".building-b").exists()

        def current_is_b() -> bool:
            with contextlib.suppress(OSError):
                return os.readlink(sw / "current").endswith("/b")
            return False

        activate_at: list[tuple[str, Callable[[], bool] | None]] = [
            ("once the slot's build marker appears", lambda: (slots_dir / ".building-b").exists()),
            ("while pip installs", pip_running),
            ("once current points at the new slot", current_is_b),
            ("after a random delay", None)]
        for what, cond in activate_at:
            if c.status()["state"] != "staged":
                break
            pending = in_thread(activate)
            hit = wait_until(cond, 120) if cond else pause(rng.uniform(0, 5))
            cut(f"activate, {what}{'' if hit else ' (not seen)'}", pending)

        res = push(b2, c.url, TOKEN, retry_s=0.05, give_up_s=300, timeout_s=300)
        assert res.status["state"] == "active", res.status
        assert installed_version() == 2 and check_slots(sw)[SoftwareSlots(sw).current() or ""] == 2
    finally:
        if proc is not None:
            proc.kill()
        fs.unmount()
    with sqlite3.connect(fs.backing_dir / "journal.db") as db:
        acts = [json.loads(d) for (d,) in db.execute(
            "SELECT data FROM journal WHERE kind = 'intake' ORDER BY id")]
    assert any(a["action"] == "activated" and a.get("version") == 2 for a in acts), acts[-5:]
    print(f"\nv1 installed in {t_v1 - t0:.1f} s; {fs.cuts} cuts, total {time.monotonic() - t0:.1f} s")
    for o in outcomes:
        print("  " + o)
    assert fs.cuts >= 7  # the last activation cut only if the activation had not finished
    assert "internal error" not in fs.log_text()
