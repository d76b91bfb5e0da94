"""Software updates in the image that ships, under systemd-nspawn (issue 14).

The built root filesystem (``make image``; ``KERNEL=0 NO_DISK=1`` is enough) boots as the aircraft
does: read-only root, tmpfs /var, a host directory as the data partition and another, a copy of
the image's ``/opt/appliance``, as the software partition. The hangar CLI runs on the host inside
the container's network namespace (``nsenter -n``) and pushes software bundles made of the real
wheels of this tree with a bumped version (v2 = 0.2.0; three broken v3 = 0.3.0; a good v3 for the
power cuts). The privileged updater in the image installs them into the inactive slot, switches,
restarts ``appliance.service`` through systemd and judges the trial within
``intake.health_bound_s`` (:data:`BOUND_S` here, from the per-aircraft ``aircraft.env``).

The tests run in order on one aircraft (module fixture): v1 -> v2, then the three bad v3, then the
power cuts (the container's PID 1 is SIGKILLed; the next boot uses the same partitions), then the
key rotation (last: the release key is retired by it).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.systemd.nspawn import Container, unavailable, wait_for

ROOTFS = os.environ.get("APPLIANCE_TEST_IMAGE", "")
REPO = Path(__file__).resolve().parents[2]
APPLIANCE = REPO / ".venv/bin/appliance"
BOUND_S = 30
TOKEN = "update-test-token-0123456789abcdef"
UNIT = "appliance.service"

pytestmark = [
    pytest.mark.system,
    pytest.mark.image,
    # The suite's 300 s per test counts the module fixture's setup (wheels, bundles, first boot:
    # ~130 s on a loaded machine) against the first test, whose pip install alone took 117 s there.
    pytest.mark.timeout(900),
    pytest.mark.skipif(not ROOTFS, reason="APPLIANCE_TEST_IMAGE=ROOTFS (make test-system sets it)"),
    pytest.mark.skipif(unavailable() is not None, reason=f"nspawn: {unavailable()}"),
]

#: Broken releases: (file, anchor, replacement) applied to a copy of the tree.
BROKEN = {
    "exits": ("appliance/cli.py", '    """Run the service until SIGTERM."""\n',
              '    """Run the service until SIGTERM."""\n    raise SystemExit(3)  # v3 bug\n'),
    "hangs": ("appliance/cli.py", '    """Run the service until SIGTERM."""\n',
              '    """Run the service until SIGTERM."""\n    import time\n    time.sleep(3600)\n'),
    "unhealthy": ("appliance/web/passenger/app.py", "        return flight_view(chain)\n",
                  '        raise RuntimeError("v3 bug")\n'),
}
TIMES: dict[str, float] = {}


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", "var", ".git", "*.egg-info", "build", ".*_cache",
                                    ".hypothesis", "__pycache__", "node_modules")
    shutil.copytree(REPO, dst, ignore=ignore)


def build_wheels(tmp: Path, version: str, broken: str | None = None) -> Path:
    """The image's dependency wheels plus ``appliance`` built from this tree as ``version``."""
    tag = f"{version}-{broken or 'good'}"
    src, out = tmp / f"src-{tag}", tmp / f"wheels-{tag}"
    _copy_tree(src)
    # appliance.__version__ is the installed distribution's (importlib.metadata): pyproject alone.
    for rel, old in (("pyproject.toml", 'version = "0.1.0"'),):
        text = (src / rel).read_text()
        assert old in text, (rel, old)
        (src / rel).write_text(text.replace(old, old.replace("0.1.0", version), 1))
    if broken is not None:
        rel, anchor, new = BROKEN[broken]
        text = (src / rel).read_text()
        assert anchor in text, (rel, anchor)
        (src / rel).write_text(text.replace(anchor, new, 1))
    out.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--disable-pip-version-check", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    image_wheels = Path(ROOTFS).resolve().parent / "wheels"
    for w in image_wheels.glob("*.whl"):
        if not w.name.startswith("appliance-"):
            shutil.copy(w, out / w.name)
    shutil.rmtree(src)
    return out


@dataclass
class Aircraft:
    """The booted image and its two partitions (host directories)."""

    tmp: Path
    data: Path
    sw: Path
    key: Path
    box: Container | None = None
    boots: int = 0
    bundles: dict[str, Path] = field(default_factory=dict)

    def boot(self) -> float:
        self.boots += 1
        self.box = Container(Path(ROOTFS).resolve(), f"appliance-upd-{self.tmp.name[-6:]}",
                             self.tmp / f"console-{self.boots}.log", volatile="state",
                             bind=[(self.data, "/var/lib/appliance"), (self.sw, "/opt/appliance")])
        t0 = time.monotonic()
        # An update taken again after a cut runs during the boot (startup finishes after it).
        self.box.start(timeout=400)
        wait_for("appliance.service active", lambda: self.state()["ActiveState"] == "active",
                 120, every=0.25)
        return time.monotonic() - t0

    def power_cut(self) -> None:
        assert self.box is not None
        self.box.stop()  # SIGKILL to the container's PID 1: every process goes at once

    def state(self) -> dict[str, str]:
        assert self.box is not None
        return self.box.show(UNIT, "ActiveState", "SubState", "NRestarts", "Result")

    def bundle(self, name: str, version: int, wheels: Path) -> Path:
        out = self.tmp / f"{name}.bundle"
        subprocess.run([str(APPLIANCE), "hangar", "build", "--kind", "software", "--name", name,
                        "--version", str(version), str(wheels), "-o", str(out)],
                       check=True, capture_output=True)
        subprocess.run([str(APPLIANCE), "hangar", "sign", str(out), "--key", str(self.key)],
                       check=True, capture_output=True)
        return out

    def push(self, bundle: Path, wait: bool = True) -> subprocess.Popen[str]:
        assert self.box is not None
        cmd = ["nsenter", "-t", str(self.box.leader), "-n", str(APPLIANCE), "hangar", "push",
               str(bundle), "--url", "http://127.0.0.1:8081", "--token", TOKEN, "--give-up-s", "120"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if wait:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out
        return p

    def status(self) -> dict[str, Any] | None:
        assert self.box is not None
        res = self.box.run("curl", "-sf", "-m", "3", "-H", f"Authorization: Bearer {TOKEN}",
                           "http://127.0.0.1:8081/admin/v1/status", check=False, timeout=10,
                           namespaces=("-n",))
        return json.loads(res.stdout) if res.returncode == 0 else None

    def last_report(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.data / "intake/software/last.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def wait_report(self, version: int, timeout: float = 420) -> dict[str, Any]:
        return wait_for(f"the outcome of the update to v{version}", lambda: (
            r := self.last_report()) and r.get("version") == version and r, timeout, every=0.5)

    def current(self) -> str:
        return os.readlink(self.sw / "current")

    def slot_package(self) -> str:
        """The appliance version installed in the current slot (as the container sees it)."""
        assert self.box is not None
        return self.box.run("/opt/appliance/current/bin/python", "-c",
                            "import importlib.metadata as m; print(m.version('appliance'))"
                            ).stdout.strip()

    def failed_units(self) -> str:
        assert self.box is not None
        return self.box.run("systemctl", "list-units", "--failed", "--no-legend", "--plain").stdout

    def journaled(self, action: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Journal rows (kind intake) and outbox payloads (stream intake) with ``action``."""
        db = sqlite3.connect(f"file:{self.data / 'journal.db'}?mode=ro", uri=True)
        try:
            rows = [json.loads(d) for (d,) in db.execute(
                "SELECT data FROM journal WHERE kind = 'intake' ORDER BY id")]
            queued = [json.loads(p) for (p,) in db.execute(
                "SELECT payload FROM outbox WHERE stream = 'intake' ORDER BY seq")]
        finally:
            db.close()
        return ([r for r in rows if r.get("action") == action],
                [q for q in queued if action in json.dumps(q)])


@pytest.fixture(scope="module")
def aircraft(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aircraft]:
    root = Path(ROOTFS).resolve()
    assert (root / "usr/lib/appliance/updater/bin/appliance").exists(), f"old image at {root}"
    tmp = tmp_path_factory.mktemp("update")
    data, sw = tmp / "data", tmp / "sw"
    data.mkdir()
    subprocess.run(["cp", "-a", str(root / "opt/appliance"), str(sw)], check=True)
    key = tmp / "release.key"
    subprocess.run([str(APPLIANCE), "hangar", "keygen", str(key)], check=True, capture_output=True)
    pub = (tmp / "release.key.pub").read_text().strip()
    # The keys role (who may rotate the pinned keys) is the release key too, threshold 1.
    roles = json.dumps({"software": {"keys": [pub], "threshold": 1},
                        "keys": {"keys": [pub], "threshold": 1}})
    (data / "aircraft.env").write_text(
        f"APPLIANCE_AIRCRAFT_ID=F-TEST\nAPPLIANCE_ADMIN_TOKEN={TOKEN}\n"
        f"APPLIANCE_INTAKE__ROLES='{roles}'\nAPPLIANCE_INTAKE__HEALTH_BOUND_S={BOUND_S}\n")
    a = Aircraft(tmp, data, sw, key)
    t0 = time.monotonic()
    a.bundles["v2"] = a.bundle("v2", 2, build_wheels(tmp, "0.2.0"))
    for i, broken in enumerate(BROKEN):
        a.bundles[broken] = a.bundle(f"v3-{broken}", 3 + i, build_wheels(tmp, "0.3.0", broken))
    good3 = build_wheels(tmp, "0.3.0")
    for i, cut in enumerate(("switch", "trial", "install")):
        a.bundles[cut] = a.bundle(f"v3-{cut}", 10 + i, good3)
    TIMES["wheels and bundles"] = time.monotonic() - t0
    try:
        TIMES["first boot"] = a.boot()
        yield a
    finally:
        if a.box is not None:
            a.box.stop()
        print("\nupdate tests, seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in TIMES.items()))


def test_v1_to_v2(aircraft: Aircraft) -> None:
    a = aircraft
    st = a.status()
    assert st is not None and st["version"] == "0.1.0" and a.current() == "slots/a"
    t0 = time.monotonic()
    a.push(a.bundles["v2"])
    report = a.wait_report(2)
    TIMES["v1->v2"] = time.monotonic() - t0
    assert report["result"] == "committed", report
    assert a.current() == "slots/b"
    assert a.slot_package() == "0.2.0"
    st = a.status()
    assert st is not None and st["version"] == "0.2.0", st
    assert a.box is not None and a.box.http(8080, "/api/v1/flight") is not None
    log = a.box.journal(UNIT)
    assert "Failed with result" not in log and "entered failed state" not in log, log[-3000:]
    assert a.state()["NRestarts"] == "0"
    assert a.failed_units().strip() == ""
    rows, queued = a.journaled("software_committed")
    assert rows and rows[-1]["version"] == 2 and queued
    assert st["bite"]["software_slot"]["state"] == "green", st["bite"]["software_slot"]


@pytest.mark.parametrize(("broken", "why"), [
    ("exits", "stopped before passing"),
    ("hangs", f"no READY=1 within {BOUND_S} s"),
    ("unhealthy", f"READY=1 but the health check failed (passenger port: HTTP 500) within {BOUND_S} s"),
])
def test_broken_v3_is_rolled_back_to_v2(aircraft: Aircraft, broken: str, why: str) -> None:
    a = aircraft
    assert a.current() == "slots/b", "needs test_v1_to_v2 first"
    version = 3 + list(BROKEN).index(broken)
    t0 = time.monotonic()
    a.push(a.bundles[broken])
    report = a.wait_report(version)
    TIMES[f"v3 {broken} -> rolled back"] = time.monotonic() - t0
    TIMES[f"v3 {broken} trial"] = report["trial_s"]
    assert report["result"] == "rolled_back", report
    assert why in report["reason"], report
    assert report["bound_s"] == BOUND_S and report["old_ready"] is True
    assert a.current() == "slots/b" and a.slot_package() == "0.2.0"
    st = wait_for("v2 answering", a.status, 60)
    assert st["version"] == "0.2.0"
    assert st["bite"]["software_slot"]["state"] == "amber"
    rows, queued = a.journaled("software_rolled_back")
    assert any(r["version"] == version for r in rows), rows
    assert any(str(version) in json.dumps(q) for q in queued)
    assert a.failed_units().strip() == ""


def _settled(a: Aircraft) -> bool:
    assert a.box is not None
    busy = a.box.run("systemctl", "is-active", "appliance-update.service", check=False).stdout
    # ... and the service has journaled the updater's last report (it looks every 2 s).
    return (not (a.data / "intake/software/request.json").exists()
            and not any((a.data / "intake/software/reports").glob("*.json"))
            and not (a.sw / "trial.json").exists() and busy.strip() != "activating"
            and a.state()["ActiveState"] == "active")


@pytest.mark.parametrize("cut", ["switch", "trial", "install"])
def test_power_cut_during_an_update(aircraft: Aircraft, cut: str) -> None:
    a = aircraft
    version = 10 + ["switch", "trial", "install"].index(cut)
    before = a.slot_package()
    t0 = time.monotonic()
    pusher = a.push(a.bundles[cut], wait=False)
    if cut == "install":
        wait_for("the install", lambda: any(a.sw.glob("slots/.building-*")), 300, every=0.05)
    else:
        wait_for("the switch", lambda: (a.sw / "trial.json").exists(), 300, every=0.01)
        if cut == "trial":  # the restart into the new slot is under way (a trial lasts >= 5 s)
            time.sleep(3)
            assert (a.sw / "trial.json").exists()
    a.power_cut()
    pusher.wait(150)
    TIMES[f"cut during {cut}: boot"] = a.boot()
    wait_for("the updater to settle", lambda: _settled(a), 400, every=0.5)
    TIMES[f"cut during {cut}"] = time.monotonic() - t0
    report = a.last_report()
    running = a.slot_package()
    st = wait_for("the service answering", a.status, 60)
    assert st["version"] == running  # never a mix: what runs is what the current slot holds
    assert a.failed_units().strip() == ""
    assert report is not None and report.get("version") == version, report
    print(f"\ncut during {cut}: {report['result']} ({report.get('reason', '')}), running {running}")
    if report["result"] == "committed":
        # The install was taken again after boot, or a cut right after trial.json was written (the
        # update accepted, the request still there) was resumed at the switch; either passed.
        assert cut in ("install", "switch") and running == "0.3.0", report
    else:
        assert report["result"] in ("rolled_back", "abandoned"), report
        assert running == before and running in ("0.2.0", "0.3.0")
    assert a.failed_units().strip() == ""
    rows, queued = a.journaled(f"software_{report['result']}")
    assert any(r["version"] == version for r in rows) and queued


def hangar(*args: str) -> str:
    """``appliance hangar ARGS`` on the host; its output (it must succeed)."""
    out = subprocess.run([str(APPLIANCE), "hangar", *args], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_key_rotation_then_the_retired_key_is_refused(aircraft: Aircraft) -> None:
    """Issue test 4: the keys rotated by a bundle signed by the old threshold, through the image.

    The hangar builds key set v1 (every role: a new key, threshold 1) and signs it with the release
    key (the keys role in force) and the new key (the new set's keys role); pushed from the host
    into the container's network namespace, the service activates it. Then a software bundle
    signed only by the retired release key is refused in one line (exit 2) and nothing of it is
    installed or handed to the updater; key set v2 signed only by the new key is accepted.
    """
    a = aircraft
    assert a.box is not None
    t0 = time.monotonic()
    new = a.tmp / "rotated.key"
    hangar("keygen", str(new))
    pub = f"{new}.pub"
    keys1 = a.tmp / "keys-v1.bundle"
    hangar("keyset", "--version", "1", "--content", pub, "--software", pub, "--keys", pub,
           "-o", str(keys1))
    hangar("sign", str(keys1), "--key", str(a.key), "--key", str(new))
    p = a.push(keys1, wait=False)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and ": active;" in out, out

    # Signed only by the retired release key: refused, nothing installed nor asked of the updater.
    wheel_dir = a.tmp / "retired-wheels"
    wheel_dir.mkdir()
    (wheel_dir / "appliance-9.0.0-py3-none-any.whl").write_bytes(b"never installed")
    retired = a.bundle("retired", 90, wheel_dir)
    slot, package, last = a.current(), a.slot_package(), a.last_report()
    p = a.push(retired, wait=False)
    out, _ = p.communicate(timeout=300)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert p.returncode == 2, out
    assert len(lines) == 1 and lines[0].startswith("appliance hangar push: refused: "), out
    assert "retired key" in lines[0] and "key set v1" in lines[0], out
    assert a.current() == slot and a.slot_package() == package and a.last_report() == last
    assert not (a.data / "intake/software/request.json").exists()
    assert not list((a.data / "intake/staged").glob("*/appliance-9.0.0-py3-none-any.whl"))
    rows, queued = a.journaled("refused")
    assert any("retired key" in r.get("reason", "") for r in rows) and queued

    # Key set v2, signed by the new key alone (the old set would have refused it): accepted.
    keys2 = a.tmp / "keys-v2.bundle"
    hangar("keyset", "--version", "2", "--content", pub, "--software", pub, "--keys", pub,
           "-o", str(keys2))
    hangar("sign", str(keys2), "--key", str(new))
    p = a.push(keys2, wait=False)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0 and ": active;" in out, out
    rows, _ = a.journaled("activated")
    assert [r.get("version") for r in rows if r.get("kind") == "keys"][-2:] == [1, 2], rows
    assert a.state()["ActiveState"] == "active" and a.failed_units().strip() == ""
    TIMES["key rotation"] = time.monotonic() - t0
