"""Issue 14: power cuts while a software bundle is uploaded and staged, and while a slot is built.

(a) The intake side. The intake process (:mod:`tests.intake.intake_proc`, the daemon's wiring and
router) has its data dir (journal, uploads, staging) on PowerFS, which throws away whatever was not
fsynced at a cut. Software v2 (a wheel of this tree's ``firmware-bridge`` at 0.1.2, and filler so
the upload takes ~10 chunks) is pushed step by step and the power is cut 4 times: twice during the
upload (between acknowledged chunks; a chunk in flight) and twice during finalize (right after the
request; once the staged directory appears). After each restart the resume offset is never behind
an acknowledged chunk nor ahead of the bytes sent, and the part file is exactly the payload's
prefix; the real push client then finishes and the bundle is staged, every file as signed.

(b) The slot side, as the software activation builds a slot: :meth:`SoftwareSlots.install` with the
real :func:`venv_installer`, in its own process group, killed (with pip and venv) once the slot's
build marker appears, while the wheel's files are written, and after a random delay, with v1 in
slot ``a`` current. After each cut the next start (``prepare``) leaves no half-installed slot:
every slot present has its ``slot.json`` and exactly the files of its wheel (hashed against the
wheel's RECORD) at the version it names, and ``a`` is untouched. The slots are on the ordinary
disk: PowerFS has no symbolic links (a virtualenv and ``current`` need them), so there a cut is the
processes killed at that instant. Activation (the switch, the trial, a power cut during them) is
the privileged updater's, tested with it (tests/systemd/test_update.py on the ``updater`` branch).
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
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from appliance.intake.hangar import build_bundle, push, sign_bundle
from appliance.intake.slots import SoftwareSlots, venv_installer

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


INSTALL = """
import json, sys
from pathlib import Path
from appliance.intake.slots import SoftwareSlots, venv_installer
slots = SoftwareSlots(Path(sys.argv[1]))
print("INSTALLED", slots.install(Path(sys.argv[2]), json.loads(sys.argv[3]), venv_installer))
"""


def install_proc(sw: Path, staged: Path, version: int) -> subprocess.Popen[str]:
    """The slot build in its own process group (a cut kills pip and venv with it)."""
    return subprocess.Popen([sys.executable, "-c", INSTALL, str(sw), str(staged),
                             json.dumps({"version": version})], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def intake_side(tmp_path: Path, b2: Path, rng: random.Random, outcomes: list[str]) -> Path:
    """(a): returns a copy of the staged bundle."""
    fs = PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "fsstate")
    data = fs.mountpoint
    cfg = tmp_path / "intake.json"
    cfg.write_text(json.dumps({
        "data": str(data), "token": TOKEN, "chunk_bytes": CHUNK,
        "roles": {"software": {"keys": [pub_hex(KEYS[0])], "threshold": 1}}}))
    proc: Proc | None = None
    c = Client(b2)

    def start() -> None:
        nonlocal proc
        proc = Proc(cfg)
        proc.wait_ready()
        c.url = proc.url

    def cut(label: str, pending: threading.Thread | None = None) -> None:
        assert proc is not None
        fs.power_off()
        proc.kill()
        if pending is not None:
            pending.join(60)
        fs.cut(rng)
        start()
        st = c.status()
        assert c.acked <= st["received"] <= max(c.sent, c.acked), (label, st, c.acked, c.sent)
        if st["state"] == "receiving":
            part = (data / "intake" / "uploads" / f"{c.bid}.part").read_bytes()
            assert part == c.payload[:st["received"]], f"{label}: part file != payload prefix"
        c.acked = max(c.acked, st["received"])
        outcomes.append(f"intake: {label}: upload {st['state']} at {st['received']}")

    try:
        fs.mount()
        start()
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
        res = push(b2, c.url, TOKEN, activate=False, retry_s=0.05, give_up_s=120)
        assert res.status["state"] == "staged", res.status
        staged = tmp_path / "staged-v2"
        shutil.copytree(intake / "staged" / c.bid, staged)
    finally:
        if proc is not None:
            proc.kill()
        fs.unmount()
    meta = json.loads((b2 / "metadata.json").read_bytes())["signed"]
    for rel, f in meta["files"].items():
        body = (staged / rel).read_bytes()
        assert len(body) == f["length"] and hashlib.sha256(body).hexdigest() == f["hashes"]["sha256"]
    assert fs.cuts == 4 and "internal error" not in fs.log_text()
    return staged


@pytest.mark.timeout(600)
def test_power_cuts_during_software_intake_and_slot_install(tmp_path: Path) -> None:
    why_not = fuse_unavailable()
    if why_not:
        pytest.fail(f"PowerFS unavailable: {why_not}")
    t0 = time.monotonic()
    rng = random.Random(20261202)
    outcomes: list[str] = []
    b1 = software_bundle(tmp_path, 1, tmp_path)
    b2 = software_bundle(tmp_path, 2, tmp_path)
    staged = intake_side(tmp_path, b2, rng, outcomes)
    t_intake = time.monotonic()

    sw = tmp_path / "software"
    slots = SoftwareSlots(sw)
    slots.prepare()
    v1 = tmp_path / "v1-files"  # v1 as staged: the bundle's files
    v1.mkdir()
    for f in (tmp_path / "wheels").glob(f"*-{VERSIONS[1]}-*.whl"):
        shutil.copy2(f, v1 / f.name)
    slots.flip(slots.install(v1, {"version": 1}, venv_installer))
    assert check_slots(sw) == {"a": 1} and b1.exists()
    a_files = sorted(p.relative_to(sw) for p in (sw / "slots" / "a").rglob("*"))

    def marker() -> bool:
        return any(p.name.startswith(".") for p in (sw / "slots").iterdir())

    def wheel_files() -> bool:
        return any((sw / "slots").glob("b/lib/python*/site-packages/firmware_bridge")) and marker()

    cut_at: list[tuple[str, Callable[[], bool] | None]] = [
        ("once the build marker appears", marker), ("while the wheel's files are written",
                                                    wheel_files), ("after a random delay", None)]
    for what, cond in cut_at:
        p = install_proc(sw, staged, 2)
        hit = wait_until(cond, 120) if cond else pause(rng.uniform(0.5, 8))
        done = p.poll() is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)
        slots.prepare()  # the next start
        found = check_slots(sw)
        assert found.get("a") == 1 and slots.current() == "a", found
        assert sorted(x.relative_to(sw) for x in (sw / "slots" / "a").rglob("*")) == a_files
        outcomes.append(f"slots: cut {what}{'' if hit else ' (not seen)'}"
                        f"{' (already done)' if done else ''}: {sorted(found.items())}")
    p = install_proc(sw, staged, 2)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and "INSTALLED b" in out, err
    slots.flip("b")
    assert check_slots(sw) == {"a": 1, "b": 2} and slots.current() == "b"
    got = subprocess.run([str(sw / "current" / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('firmware-bridge'))"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert got.stdout.strip() == VERSIONS[2], got.stderr
    print(f"\nintake side (4 cuts) {t_intake - t0:.1f} s; slot side (3 cuts) "
          f"{time.monotonic() - t_intake:.1f} s")
    for o in outcomes:
        print("  " + o)
