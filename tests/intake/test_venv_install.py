"""Issue 14, acceptance 2: the real installer puts a software bundle's real wheels into a slot, offline.

This tree is built into wheels with a bumped version (a copy of the sources; no network, no build
isolation); with every third-party wheel from ``var/wheelhouse`` (``make wheelhouse``, pinned to
the development venv) they make a software bundle, signed, pushed through the intake service
(signatures and threshold at ``begin``, every file's hash at ``finalize``) and installed from the
staging area into a slot as the software activation does, with
:meth:`~appliance.intake.slots.SoftwareSlots.install` and the real installer,
:func:`~appliance.intake.slots.venv_installer` (a virtualenv, then ``pip install --no-index`` from
the bundle's wheels only). The slot's own ``bin/appliance --version``
then names the bumped version and the slot, and the slot's service, started from the slot,
answers ``GET /admin/v1/status`` with them. Marked ``system`` (about a minute: the venv and ~45
wheels); ``make test-system`` builds the wheelhouse first.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from packaging.version import Version

from appliance import __version__
from appliance.errors import IntakeError
from appliance.intake.bundle import METADATA, load_envelope, sign
from appliance.intake.hangar import build_bundle
from appliance.intake.service import IntakeService
from appliance.intake.slots import SoftwareSlots, venv_installer

from ..e2e.service import Service
from .helpers import KEYS, World

pytestmark = [pytest.mark.system, pytest.mark.e2e]
REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = REPO / "var" / "wheelhouse"
SOURCES = {
    "appliance": ["pyproject.toml", "setup.py", "appliance", "media", "migrations"],
    "firmware-bridge": ["firmware-bridge/pyproject.toml", "firmware-bridge/firmware_bridge"],
}


def bumped() -> str:
    v = Version(__version__)
    return f"{v.major}.{v.minor}.{v.micro + 1}"


def build_wheels(base: Path, version: str) -> list[Path]:
    """This tree's two wheels, the appliance's at ``version`` (built from a copy, offline)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name, paths in SOURCES.items():
        for rel in paths:
            src, dst = REPO / rel, base / "src" / name / Path(rel).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree(src, dst, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst))
    pyproject = base / "src" / "appliance" / "pyproject.toml"
    text, n = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(),
                      count=1)
    assert n == 1
    pyproject.write_text(text)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--no-build-isolation", "--no-index", "--no-cache-dir",
                          "--disable-pip-version-check", "-w", str(base / "wheels"),
                          str(base / "src" / "firmware-bridge"), str(base / "src" / "appliance")],
                         cwd=base, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return sorted((base / "wheels").glob("*.whl"))


def clean_env() -> dict[str, str]:
    """The environment without this checkout's venv or paths (the slot must stand alone)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.timeout(600)
def test_software_bundle_installs_its_real_wheels_offline(tmp_path: Path) -> None:
    if not (WHEELHOUSE / ".done").exists():
        pytest.fail("no var/wheelhouse: run `make wheelhouse` (make test-system does it first)")
    t0 = time.monotonic()
    version = bumped()
    ours = build_wheels(tmp_path / "build", version)
    assert [w.name.split("-")[:2] for w in ours] == [["appliance", version],
                                                    ["firmware_bridge", "0.1.0"]]
    deps = [w for w in sorted(WHEELHOUSE.glob("*.whl"))
            if not w.name.startswith(("appliance-", "firmware_bridge-"))]
    out = tmp_path / "appliance-sw.bundle"
    build_bundle("software", "appliance", 2, [*ours, *deps], out)
    env = sign(load_envelope(out / METADATA), KEYS[0])
    (out / METADATA).write_bytes(env.to_json())
    t_built = time.monotonic()

    (tmp_path / "aircraft").mkdir()
    w = World(tmp_path / "aircraft")
    w.service = IntakeService(w.service.cfg, w.service.trust, w.writer, w.reader, lambda: w.mode,
                              w.service.policy, lambda: w.utc, {}, free_space=lambda p: 1 << 40)
    try:
        st = asyncio.run(w.push(out, activate=False))  # verified and staged
        assert st["state"] == "staged", st
    finally:
        w.close()
    staged = w.service.area.staged(st["id"])
    # What the software activation (the privileged updater) does with a staged bundle.
    slots = SoftwareSlots(tmp_path / "software")
    slots.prepare()
    info = {"version": 2, "bundle_id": st["id"], "name": "appliance", "keyids": st["keyids"],
            "installed_at": time.time()}
    name = slots.install(staged, info, venv_installer)
    slots.flip(name)
    t_installed = time.monotonic()
    assert name == "a" and slots.current() == "a"
    slot = slots.slots / "a"
    assert (slot / "slot.json").exists() and not [p for p in slots.slots.iterdir()
                                                 if p.name.startswith(".")]

    got = subprocess.run([str(slot / "bin" / "appliance"), "--version"], cwd=tmp_path,
                         env=clean_env(), capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == f"appliance {version} (slot a)"

    # The slot's own service runs and says so.
    svc = Service(tmp_path / "run")
    svc.workdir.mkdir()
    cfg = svc.write_config()
    log = open(svc.log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(slot / "bin" / "appliance"), "run", "--config", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=svc.workdir, env=clean_env())
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                status = svc.admin("/admin/v1/status")
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        assert status is not None, svc.log()
        assert status["version"] == version
        assert status["software"]["slot"] == "a" and status["software"]["current"] is True
        assert status["software"]["prefix"] == str(slot.resolve())
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    print(f"\nwheels built + bundled in {t_built - t0:.1f} s ({len(ours) + len(deps)} wheels, "
          f"payload {env.meta().payload.length / 1e6:.1f} MB); pushed, verified, staged, "
          f"installed into slot a in {t_installed - t_built:.1f} s; total {time.monotonic() - t0:.1f} s")


@pytest.mark.timeout(300)
def test_bundle_missing_a_dependency_fails_at_install_naming_it(tmp_path: Path) -> None:
    """Pip resolves from the bundle alone: no index, no pip configuration, no wheel elsewhere."""
    if not (WHEELHOUSE / ".done").exists():
        pytest.fail("no var/wheelhouse: run `make wheelhouse` (make test-system does it first)")
    staged = tmp_path / "staged"
    staged.mkdir()
    for w in WHEELHOUSE.glob("*.whl"):
        if not w.name.startswith(("fastapi-", "starlette-")):
            shutil.copy2(w, staged / w.name)
    slots = SoftwareSlots(tmp_path / "sw")
    slots.prepare()
    with pytest.raises(IntakeError, match=r"installing the software bundle failed \(pip.*fastapi"):
        slots.install(staged, {"version": 9}, venv_installer)
    assert not (slots.slots / "a").exists() and not list(slots.slots.glob(".building-*"))
