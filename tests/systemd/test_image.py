"""The built image (``make image``) boots under nspawn and serves passengers (``make test-image``).

Not part of the default suite: it needs the image built first (about 2 minutes). It runs only when
``APPLIANCE_TEST_IMAGE`` names the built root filesystem (``make test-image`` sets it).

The container boots the root filesystem as the aircraft does, without any override: read-only
root with /var a tmpfs (``--volatile=state``, the kernel's ``systemd.volatile=state``), a host
directory standing in for the data partition at /var/lib/appliance, default target
multi-user.target, the unit enabled from the image, the service from software slot A.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.nspawn import Container, unavailable, wait_for

ROOTFS = os.environ.get("APPLIANCE_TEST_IMAGE", "")
DISK = os.environ.get("APPLIANCE_TEST_DISK", "")

pytestmark = [
    pytest.mark.system,
    pytest.mark.image,
    pytest.mark.skipif(not ROOTFS, reason="make test-image (APPLIANCE_TEST_IMAGE=ROOTFS) only"),
    pytest.mark.skipif(unavailable() is not None, reason=f"nspawn: {unavailable()}"),
]


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, Path, float]]:
    root = Path(ROOTFS).resolve()
    assert (root / "opt/appliance/current/bin/appliance").exists(), f"no image at {root}"
    d = tmp_path_factory.mktemp("image")
    data = d / "data"
    data.mkdir()
    box = Container(root, f"appliance-image-{d.name[-6:]}", d / "console.log", volatile="state",
                    bind=[(data, "/var/lib/appliance")])
    t0 = time.monotonic()
    try:
        box.start(timeout=60)
        yield box, data, t0
    finally:
        box.stop()


def test_appliance_up_and_passenger_port_answers(booted: tuple[Container, Path, float]) -> None:
    box, data, t0 = booted
    try:
        wait_for("appliance.service active", lambda: box.run(
            "systemctl", "is-active", "appliance.service", check=False).stdout.strip() == "active",
            60, every=0.25)
    except TimeoutError:
        pytest.fail(box.run("journalctl", "--no-pager", "-b", "-u", "appliance.service",
                            check=False).stdout[-6000:])
    flight = wait_for("the passenger port", lambda: box.http(8080, "/api/v1/flight"), 20)
    up_s = time.monotonic() - t0
    body = json.loads(flight)
    assert body["mode"] == "GROUND"
    print(f"\nimage: boot to passenger port answering in {up_s:.1f} s")
    # The journal is on the data partition, owned by the service's user.
    assert (data / "journal.db").exists()
    st = box.show("appliance.service", "User", "MainPID", "StatusText", "ExecMainStartTimestamp",
                  "FragmentPath", "UnitFileState")
    assert st["User"] == "appliance" and st["UnitFileState"] == "enabled", st
    assert st["FragmentPath"].endswith("/lib/systemd/system/appliance.service"), st  # from /usr
    assert st["StatusText"].startswith("mode GROUND"), st
    uid = box.run("stat", "-c", "%U", "/var/lib/appliance/journal.db").stdout.strip()
    assert uid == "appliance"


def test_read_only_root_and_slots(booted: tuple[Container, Path, float]) -> None:
    box, _, _ = booted
    assert box.run("touch", "/etc/probe", check=False).returncode != 0  # read-only root
    assert box.run("touch", "/var/probe", check=False).returncode == 0  # /var is a tmpfs
    assert box.run("readlink", "/opt/appliance/current").stdout.strip() == "slots/a"
    assert "appliance 0.1" in box.run("cat", "/opt/appliance/slots/a/SLOT").stdout
    assert box.run("test", "-d", "/opt/appliance/slots/b", check=False).returncode == 0


def test_units_verify_inside_the_image(booted: tuple[Container, Path, float]) -> None:
    box, _, _ = booted
    res = box.run("systemd-analyze", "verify", "appliance.service", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    failed = box.run("systemctl", "list-units", "--failed", "--no-legend", "--plain").stdout
    assert failed.strip() == "", failed


@pytest.mark.skipif(not DISK, reason="APPLIANCE_TEST_DISK names the disk image")
def test_disk_image_partitions() -> None:
    import subprocess

    table = json.loads(subprocess.run(["sfdisk", "--json", DISK], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    names = [p.get("name") for p in table["partitions"]]
    assert names == ["esp", "root", "appliance-sw", "appliance-data"], names
    for p in table["partitions"][1:]:  # each ext4 filesystem is clean
        res = subprocess.run(["e2fsck", "-fn", f"{DISK}?offset={p['start'] * 512}"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
    esp = table["partitions"][0]
    res = subprocess.run(["mdir", "-i", f"{DISK}@@{esp['start'] * 512}", "-/", "::/"],
                         capture_output=True, text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    assert res.returncode == 0, res.stderr
    assert "BOOTX64" in res.stdout.upper() and "vmlinuz" in res.stdout, res.stdout


def test_cabin_network_a_phone_gets_the_portal(tmp_path: Path) -> None:
    """Issue 15: the image booted in a cabin of namespaces; a phone gets the portal.

    The container's network namespace is the lab's server namespace (passenger bridge pax0,
    maintenance mnt0); a phone namespace on the bridge gets a lease from the image's dnsmasq, its
    probe the portal, and not the admin port.
    """
    from tests.cabinnet.lab import CabinLab, lab_unavailable

    if lab_unavailable():
        pytest.skip(str(lab_unavailable()))
    root = Path(ROOTFS).resolve()
    lab = CabinLab("i", tmp_path)
    lab.pax_addr = "10.40.0.1"  # the image's [cabinnet] default, set by its networkd
    data = tmp_path / "data"
    data.mkdir()
    box = Container(root, f"appliance-cabin-{os.getpid()}", tmp_path / "console.log",
                    volatile="state", bind=[(data, "/var/lib/appliance")])
    box.cmd.remove("--private-network")
    # Its network is the lab's server namespace; nspawn keeps CAP_NET_ADMIN only for a private
    # network, which this is (a namespace the test made), so it is granted explicitly.
    box.cmd[1:1] = [f"--network-namespace-path=/run/netns/{lab.server}", "--capability=CAP_NET_ADMIN"]
    try:
        lab.setup()
        # The image's networkd gives pax0 and mnt0 their addresses: the lab's go.
        for dev in ("pax0", "mnt0"):
            subprocess.run(["ip", "-n", lab.server, "addr", "flush", "dev", dev], check=True)
        box.start(timeout=90)
        wait_for("appliance.service active", lambda: box.run(
            "systemctl", "is-active", "appliance.service", check=False).stdout.strip() == "active",
            90, every=0.5)
        wait_for("dnsmasq in the image", lambda: "dnsmasq" in box.run(
            "ps", "-eo", "comm", check=False).stdout, 30, every=0.5)
        lab.add_phone(1)
        lease = lab.dhcp(1, timeout=60)
        assert lease["router"] == "10.40.0.1", lease
        res = lab.curl(1, "http://connectivitycheck.gstatic.com/generate_204", "-A", "Dalvik/2.1.0")
        assert res.stdout.rpartition("\n")[2].startswith("302 http://portal.cabin/portal/"), res
        page = lab.curl(1, "http://portal.cabin/portal/")
        assert page.stdout.rpartition("\n")[2].startswith("200 "), page
        assert lab.curl(1, "http://10.40.0.1:8081/admin/v1/status", timeout=3).returncode in (7, 28)
        tables = box.run("nft", "list", "tables").stdout
        assert "inet appliance" in tables, tables
        # Issue 14: the service holds no capability; the cabin network's helper unit holds them.
        st = box.show("appliance.service", "User", "AmbientCapabilities")
        assert st["User"] == "appliance" and "cap_net" not in st["AmbientCapabilities"], st
        helper = box.show("appliance-cabinnet.service", "ActiveState", "AmbientCapabilities")
        assert helper["ActiveState"] == "active", helper
        assert "cap_net_admin" in helper["AmbientCapabilities"], helper
    except BaseException:
        print(box.run("journalctl", "--no-pager", "-b", "-u", "appliance.service",
                      check=False).stdout[-6000:])
        raise
    finally:
        box.stop()
        lab.cleanup()
