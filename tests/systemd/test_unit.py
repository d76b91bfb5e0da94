"""The unit files as systemd itself reads them: ``systemd-analyze verify`` and ``security``.

``verify`` resolves the unit's dependencies and checks that ExecStart exists, so it runs on a small
root laid out like the image (the host's unit directory, the unit in /usr/lib/systemd/system and a
stand-in executable at /opt/appliance/current/bin/appliance); the image's own tree is checked by
``make test-image``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "appliance.service"

#: The unit's overall exposure by ``systemd-analyze security --offline=true`` (systemd 252): 0.0 is
#: best, 10.0 worst; "OK" is below 2.0. Measured 1.2. What is left open, and why (systemd/README.md):
#: PrivateNetwork and RestrictAddressFamilies AF_INET/AF_INET6/AF_UNIX (it serves the cabin networks),
#: PrivateDevices (the hot-plugged card's tty must stay reachable; DevicePolicy=closed instead),
#: DeviceAllow (the card), IPAddressDeny (the ground link's addresses are not known yet) and
#: RootDirectory. Lower this constant when the unit gets better; the test fails if it gets worse.
MAX_EXPOSURE = 1.2
#: The software updater's units (issue 14): root, writing only the slots and the data partition.
UPDATER_UNITS = ("appliance-update.path", "appliance-update.service",
                 "appliance-update-check.service")

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze missing (apt-get install systemd)")


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def image_like_root(tmp_path: Path) -> Path:
    """A root with the host's units, ours installed as in the image, and a stand-in ExecStart."""
    root = tmp_path / "root"
    host_units = Path("/usr/lib/systemd/system")
    if not host_units.is_dir():
        host_units = Path("/lib/systemd/system")
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    shutil.copy(UNIT, root / "usr/lib/systemd/system/appliance.service")
    for u in UPDATER_UNITS:
        shutil.copy(SYSTEMD / u, root / "usr/lib/systemd/system" / u)
    for exe in (root / "opt/appliance/slots/a/bin/appliance",
                root / "usr/lib/appliance/updater/bin/appliance"):
        exe.parent.mkdir(parents=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    (root / "opt/appliance/current").symlink_to("slots/a")
    return root


def test_verify_passes(image_like_root: Path) -> None:
    res = analyze("verify", f"--root={image_like_root}", "appliance.service")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "appliance.service" not in res.stderr, res.stderr  # no warnings about our unit either


def test_updater_units_verify(image_like_root: Path) -> None:
    res = analyze("verify", f"--root={image_like_root}", *UPDATER_UNITS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "appliance-update" not in res.stderr, res.stderr


def test_boot_has_no_ordering_cycle(image_like_root: Path) -> None:
    """Enabled as in the image, the boot transaction has no ordering cycle.

    A cycle is not an error for ``verify`` of the units alone: at boot systemd drops a job to break
    it (the boot check did not run at all when it was ordered after basic.target and before the
    path unit, which is before paths.target).
    """
    res = subprocess.run(["systemctl", f"--root={image_like_root}", "enable", "appliance.service",
                          *[u for u in UPDATER_UNITS if u != "appliance-update.service"]],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    res = analyze("verify", f"--root={image_like_root}", "multi-user.target")
    assert "ordering cycle" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_verify_catches_a_missing_executable(image_like_root: Path) -> None:
    # The check above means something: without the slot, verify fails.
    (image_like_root / "opt/appliance/current").unlink()
    res = analyze("verify", f"--root={image_like_root}", "appliance.service")
    assert res.returncode != 0
    assert "/opt/appliance/current/bin/appliance" in res.stderr


def test_security_exposure_at_most_documented_level(image_like_root: Path) -> None:
    res = analyze("security", "--offline=true", f"--root={image_like_root}", "--no-pager",
                  "appliance.service")
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.search(r"Overall exposure level for appliance\.service: (\d+\.\d+)", res.stdout)
    assert m, res.stdout
    assert float(m.group(1)) <= MAX_EXPOSURE, res.stdout


def test_unit_has_the_promised_settings() -> None:
    text = UNIT.read_text()
    settings = {line.split("=", 1)[0] + "=" + line.split("=", 1)[1]
                for line in text.splitlines() if "=" in line and not line.startswith("#")}
    for expected in ("Type=notify", "NotifyAccess=main", "Restart=always",
                     "RestartPreventExitStatus=78", "StateDirectory=appliance",
                     "ConfigurationDirectory=appliance", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "User=appliance"):
        assert expected in settings, expected
    assert any(s.startswith("WatchdogSec=") for s in settings)
    assert any(s.startswith("StartLimitBurst=") for s in settings)


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_and_tmpfiles_apply(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "appliance.sysusers")],
                   check=True, capture_output=True, timeout=30)
    passwd = (tmp_path / "etc/passwd").read_text()
    assert re.search(r"^appliance:x:\d+:\d+:.*:/var/lib/appliance:/usr/sbin/nologin$", passwd, re.M)
    res = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create",
                          str(SYSTEMD / "appliance.tmpfiles")], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    data = tmp_path / "var/lib/appliance"
    assert data.is_dir() and oct(data.stat().st_mode & 0o777) == "0o750"
    uid = int(passwd.split("appliance:x:")[1].split(":")[0])
    assert data.stat().st_uid == uid


def test_udev_rule_names_the_card() -> None:
    rule = " ".join(line.rstrip("\\") for line in (SYSTEMD / "60-avionics-card.rules").read_text()
                    .splitlines() if not line.startswith("#"))
    assert 'SUBSYSTEM=="tty"' in rule
    assert re.search(r'ATTRS\{idVendor\}=="[0-9a-f]{4}"', rule)
    assert re.search(r'ATTRS\{idProduct\}=="[0-9a-f]{4}"', rule)
    assert 'SYMLINK+="avionics-card"' in rule and 'GROUP="appliance"' in rule
    assert "DeviceAllow=/dev/avionics-card rw" in UNIT.read_text()
    assert 'port = "/dev/avionics-card"' in (SYSTEMD / "appliance.toml").read_text()


def test_shipped_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.settings import load_settings

    monkeypatch.setenv("APPLIANCE_DATA_DIR", "/var/lib/appliance")  # as the unit sets it
    s = load_settings(SYSTEMD / "appliance.toml")
    assert s.serial.port == "/dev/avionics-card" and str(s.data_dir) == "/var/lib/appliance"


def test_resource_limits_match_the_hostile_tests() -> None:
    """LimitNOFILE/MemoryMax/TasksMax are in the unit, as the hostile tests assume (issue 13)."""
    from tests.hostile.helpers import LIMIT_NOFILE, MEMORY_MAX_MIB

    values = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    assert values["LimitNOFILE"] == str(LIMIT_NOFILE)
    assert values["MemoryMax"] == f"{MEMORY_MAX_MIB}M"
    assert int(values["TasksMax"]) >= 64


#: The cabin network's privileged helper, appliance-cabinnet.service (CAP_NET_ADMIN, CAP_NET_RAW,
#: CAP_NET_BIND_SERVICE ambient, AF_NETLINK and AF_PACKET, no user namespace, no private network):
#: measured 1.8. Until then the service carried those itself through its drop-in (2.0); the
#: drop-in now adds no capability, so the service stays at MAX_EXPOSURE with the cabin network on.
MAX_EXPOSURE_HELPER = 1.8


def _exposure(root: Path, unit: str) -> float:
    res = analyze("security", "--offline=true", f"--root={root}", "--no-pager", unit)
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    return float(m.group(1))


def test_cabinnet_drop_in_verifies_and_its_exposure(image_like_root: Path) -> None:
    d = image_like_root / "usr/lib/systemd/system/appliance.service.d"
    d.mkdir()
    shutil.copy(SYSTEMD / "cabinnet.conf", d / "cabinnet.conf")
    shutil.copy(SYSTEMD / "appliance-cabinnet.service",
                image_like_root / "usr/lib/systemd/system/appliance-cabinnet.service")
    for unit in ("appliance.service", "appliance-cabinnet.service"):
        res = analyze("verify", f"--root={image_like_root}", unit)
        assert res.returncode == 0 and "appliance" not in res.stderr, res.stdout + res.stderr
    service = _exposure(image_like_root, "appliance.service")
    helper = _exposure(image_like_root, "appliance-cabinnet.service")
    print(f"exposure with the cabin network: appliance.service {service}, "
          f"appliance-cabinnet.service {helper}")
    assert service <= MAX_EXPOSURE
    assert helper <= MAX_EXPOSURE_HELPER
    text = (SYSTEMD / "cabinnet.conf").read_text()
    assert "Capabilit" not in text.split("[Service]")[1] and "PrivateUsers" not in text
    # Restarted with the service (PartOf=), so it must not hit a start limit of its own when a bad
    # version on trial crash-loops the service (seen in test_update before this line).
    helper_unit = (SYSTEMD / "appliance-cabinnet.service").read_text()
    assert "PartOf=appliance.service" in helper_unit and "StartLimitIntervalSec=0" in helper_unit
