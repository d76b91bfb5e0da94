"""The cabin network with real parts: dnsmasq, nftables, busybox udhcpc, curl, the real service.

The server in its namespace (passenger bridge + maintenance veth + an uplink to a stand-in world),
phones in their own namespaces (see :mod:`tests.cabinnet.lab`). In order, on one service:

1. a new phone gets a lease with option 114; every OS's probe gets the portal; it reaches nothing
   else (the world's server sees no request); after accepting, every probe gets its OS's success
   answer, the world answers, DNS answers as for an open phone;
4. the RFC 8908 API over HTTPS validates against the test CA, with the RFC's JSON;
3. from a phone the admin port (and the hangar intake on it) is unreachable, from maintenance it
   answers; MAINTENANCE closes the portal at the gate, GROUND opens it again (landing resets);
2. a restart of the service and a "reboot" of the server (namespaces rebuilt, the kernel's table
   gone): the accepted phone stays open, the held one stays held.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .lab import CabinLab, lab_unavailable, run
from .netservice import HTTPS, TOKEN, NetService, WorldServer

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))]

APPLE = ("CaptiveNetworkSupport-443.40.1 wispr", "http://captive.apple.com/hotspot-detect.html")
ANDROID = ("Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A)",
           "http://connectivitycheck.gstatic.com/generate_204")
WINDOWS = ("Microsoft NCSI", "http://www.msftconnecttest.com/connecttest.txt")
PORTAL = "http://portal.cabin/portal/"
CHROMIUM = "/usr/bin/chromium"
OPENED_BY_CHROMIUM = [0]  # test 1b's phone 3 (if it ran) is open in test 2


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CabinLab, NetService, WorldServer]]:
    d = tmp_path_factory.mktemp("cabinnet")
    lab = CabinLab("t1", d)
    svc = world = None
    try:
        lab.setup()
        svc = NetService(lab, d)
        world = WorldServer(lab, d)
        svc.start_card()
        svc.start()
        for i in (1, 2, 3):
            lab.add_phone(i)
        yield lab, svc, world
    finally:
        if svc is not None:
            svc.stop()
            print(svc.log()[-3000:])
            svc.stop_card()
        if world is not None:
            world.stop()
        lab.cleanup()


def probe(lab: CabinLab, i: int, os_: tuple[str, str]) -> tuple[int, str, str]:
    """(status, redirect URL, body) of one OS's probe from phone i."""
    res = lab.curl(i, os_[1], "-A", os_[0])
    assert res.returncode == 0, res.stderr
    body, _, last = res.stdout.rpartition("\n")
    code, redirect, *_ = ([*last.split(" "), "", ""])
    return int(code), redirect, body


def dns_a(lab: CabinLab, i: int, name: str) -> str:
    """The A record phone i's resolver gives for ``name`` ("" if none)."""
    res = lab.in_ns(lab.phones[i], "busybox", "nslookup", "-type=a", name, lab.pax_addr,
                    route_to=lab.pax_addr)
    answers = res.stdout.split("Name:")[1:] if "Name:" in res.stdout else []
    for a in answers:
        for line in a.splitlines():
            if line.strip().startswith("Address"):
                return line.split(":", 1)[1].strip().split()[0]
    return ""


def accept(lab: CabinLab, i: int) -> dict[str, object]:
    res = lab.curl(i, "http://portal.cabin/api/v1/portal/accept", "-X", "POST")
    body, _, last = res.stdout.rpartition("\n")
    assert last.startswith("200 "), res.stdout + res.stderr
    out: dict[str, object] = json.loads(body)
    return out


def test_1_new_phone_is_held_then_opens_when_it_accepts(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, world = net
    lease = lab.dhcp(1)
    assert bytes.fromhex(lease["opt114"]).decode() == f"https://portal.cabin:{HTTPS}/api/captive"
    assert lease["router"] == lab.pax_addr and lease["dns"].split()[0] == lab.pax_addr
    # Held: every OS's probe is sent to the portal (none gets its "online" answer).
    for os_ in (APPLE, ANDROID, WINDOWS):
        code, redirect, body = probe(lab, 1, os_)
        assert (code, redirect) == (302, PORTAL), (os_, code, redirect, body)
    # Held DNS: every name is the portal; NCSI's DNS check has its address.
    assert dns_a(lab, 1, "anything.example.org") == lab.pax_addr
    assert dns_a(lab, 1, "dns.msftncsi.com") == "131.107.255.255"
    # Nothing else reachable: HTTP to the world lands on the portal, other ports are refused.
    code = lab.curl(1, f"http://{lab.world_addr}:80/").stdout.rpartition("\n")[2]
    assert code.startswith("302 " + PORTAL), code
    res = lab.curl(1, f"http://{lab.world_addr}:8000/", timeout=4)
    assert res.returncode != 0, res.stdout
    ping = lab.in_ns(lab.phones[1], "ping", "-c1", "-W1", lab.world_addr, route_to=lab.pax_addr)
    assert ping.returncode != 0
    assert world.hits() == 0
    st = svc.network()
    assert st["state"] == "green" and st["leases"] == 1 and st["held"] == 1 and st["open"] == 0, st
    # The portal page by name.
    page = lab.curl(1, PORTAL)
    assert page.stdout.rpartition("\n")[2].startswith("200 ") and "<html" in page.stdout.lower()

    assert accept(lab, 1)["captive"] is False
    code, _, body = probe(lab, 1, APPLE)
    assert code == 200 and "<BODY>Success</BODY>" in body
    code, _, body = probe(lab, 1, ANDROID)
    assert code == 204 and body == ""
    code, _, body = probe(lab, 1, WINDOWS)
    assert code == 200 and body == "Microsoft Connect Test"
    # The gate is open: the world answers; open DNS answers the portal, refuses the rest (no upstream).
    res = lab.curl(1, f"http://{lab.world_addr}:8000/")
    assert res.stdout.startswith("the world"), res.stdout + res.stderr
    assert world.hits() == 1
    assert dns_a(lab, 1, "portal.cabin") == lab.pax_addr
    assert dns_a(lab, 1, "anything.example.org") == ""
    st = svc.network()
    assert (st["held"], st["open"]) == (0, 1), st
    assert st["changes"].get("held") == 1 and st["changes"].get("open") == 1, st
    # Another phone, not accepted, is still held.
    lab.dhcp(2)
    assert probe(lab, 2, ANDROID)[:2] == (302, PORTAL)
    assert lab.curl(2, f"http://{lab.world_addr}:8000/", timeout=4).returncode != 0
    assert world.hits() == 1
    metrics = svc.admin_raw("/metrics").stdout
    assert 'appliance_gate_changes_total{event="open"} 1.0' in metrics, metrics[-2000:]


def test_4_captive_api_over_https_with_the_test_ca(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, _ = net
    url = f"https://portal.cabin:{HTTPS}/api/captive"
    docs = {}
    for i in (1, 2):  # open, held
        res = lab.curl(i, url, "--cacert", str(svc.ca))
        assert res.returncode == 0, res.stderr
        body, _, last = res.stdout.rpartition("\n")
        code, _, ctype = last.split(" ", 2)
        assert code == "200" and ctype.strip() == "application/captive+json", last
        docs[i] = json.loads(body)
    for doc in docs.values():  # RFC 8908 section 5
        assert isinstance(doc["captive"], bool)
        assert doc["user-portal-url"].startswith("https://portal.cabin:")
        assert doc["venue-info-url"].startswith("https://")
        assert set(doc) <= {"captive", "user-portal-url", "venue-info-url", "can-extend-session",
                            "seconds-remaining", "bytes-remaining"}
    assert docs[1]["captive"] is False and 0 < docs[1]["seconds-remaining"] <= 12 * 3600
    assert docs[2]["captive"] is True and "seconds-remaining" not in docs[2]
    # Over plain HTTP the API is not served (RFC 8908): a 308 to the HTTPS URL.
    res = lab.curl(2, "http://portal.cabin/api/captive")
    assert res.stdout.rpartition("\n")[2].startswith(f"308 {url} "), res.stdout
    # Without the CA the certificate does not validate; the portal over HTTPS validates too.
    assert lab.curl(2, url).returncode == 60
    res = lab.curl(2, f"https://portal.cabin:{HTTPS}/portal/", "--cacert", str(svc.ca))
    assert res.stdout.rpartition("\n")[2].startswith("200 ")


def test_3_admin_and_intake_only_from_maintenance_and_the_mode_at_the_gate(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, _ = net
    for target in (lab.mnt_addr, lab.pax_addr):
        for path in ("/admin/v1/status", "/admin/v1/intake/installed"):
            res = lab.curl(1, f"http://{target}:8081{path}", "-H",
                           f"Authorization: Bearer {TOKEN}", timeout=3)
            assert res.returncode in (7, 28), (target, path, res.returncode, res.stdout)
    assert svc.admin_raw("/admin/v1/status", token=False).stdout.find("401") >= 0 or \
        "detail" in svc.admin_raw("/admin/v1/status", token=False).stdout
    assert "mode" in svc.admin("/admin/v1/status")
    assert isinstance(svc.admin("/admin/v1/intake/installed"), (list, dict))
    # MAINTENANCE (on the ground: the card plays the flight from the gate): the portal is closed
    # at the gate, even for the open phone.
    _wait(lambda: svc.admin("/admin/v1/status")["air_ground"]["state"] == "ground", "ground", 30)
    res = svc.admin_raw("/admin/v1/maintenance", "-X", "POST", "-H",
                        "Content-Type: application/json", "-d",
                        '{"on": true, "reason": "cabinnet test"}')
    assert json.loads(res.stdout)["mode"] == "MAINTENANCE", res.stdout
    _wait(lambda: svc.network()["gate"] == "closed", "gate closed")
    for i in (1, 2):
        assert lab.curl(i, "http://portal.cabin/portal/", timeout=3).returncode != 0
    assert lab.curl(1, f"http://{lab.world_addr}:8000/", timeout=3).returncode != 0
    res = svc.admin_raw("/admin/v1/maintenance", "-X", "POST", "-H",
                        "Content-Type: application/json", "-d", '{"on": false, "reason": "done"}')
    assert json.loads(res.stdout)["mode"] == "GROUND", res.stdout
    _wait(lambda: svc.network()["gate"] == "portal", "gate portal")
    # Entering GROUND resets the gate (policy): phone 1 is held again and accepts again.
    st = svc.network()
    assert (st["open"], st["changes"].get("reset")) == (0, 1), st
    assert probe(lab, 1, APPLE)[:2] == (302, PORTAL)
    accept(lab, 1)
    assert probe(lab, 1, APPLE)[0] == 200


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no /usr/bin/chromium (Debian chromium)")
def test_1b_chromium_in_a_phone_opens_the_portal_by_name_and_accepts(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, _ = net
    lab.dhcp(3)
    assert probe(lab, 3, APPLE)[:2] == (302, PORTAL)
    out, shot = svc.workdir / "browser.json", svc.workdir / "portal.png"
    proc = lab.python_in(lab.phones[3], lab.pax_addr, "eth0",
                         ["-m", "tests.cabinnet.browser", "http://portal.cabin/", str(out), str(shot)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.decode(errors="replace")[-3000:]
    got = json.loads(out.read_text())
    assert got["url"] == PORTAL and got["title"] == "On board", got
    assert got["accept_status"] == 200 and got["accept"]["captive"] is False, got
    code, _, body = probe(lab, 3, APPLE)
    assert code == 200 and "Success" in body
    OPENED_BY_CHROMIUM[0] = 1
    assert shot.stat().st_size > 1000


def test_1c_a_dead_dnsmasq_is_restarted_and_the_service_stays_up(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, _ = net
    before = svc.network()["dnsmasq"]["main"]
    os.kill(before["pid"], signal.SIGKILL)
    _wait(lambda: svc.network()["dnsmasq"]["main"]["exits"] == before["exits"] + 1
          and svc.network()["dnsmasq"]["main"]["running"], "dnsmasq restarted")
    st = svc.network()
    assert st["state"] == "green" and st["dnsmasq"]["main"]["pid"] != before["pid"], st
    ip2 = next(c["ip"] for c in st["clients"] if c["mac"] == lab.mac(2))
    assert lab.dhcp(2)["ip"] == ip2  # DHCP answers again, the same address (the lease file kept)
    assert probe(lab, 2, ANDROID)[:2] == (302, PORTAL)


def test_2_restart_and_reboot_keep_open_open_and_held_held(
        net: tuple[CabinLab, NetService, WorldServer]) -> None:
    lab, svc, world = net
    hits = world.hits()

    def states() -> None:
        assert probe(lab, 1, ANDROID)[0] == 204
        assert lab.curl(1, f"http://{lab.world_addr}:8000/").stdout.startswith("the world")
        assert probe(lab, 2, ANDROID)[:2] == (302, PORTAL)
        assert lab.curl(2, f"http://{lab.world_addr}:8000/", timeout=3).returncode != 0

    # Service restart: the table stays in the kernel meanwhile; the journal rebuilds the state.
    svc.stop()
    # While the service (and its dnsmasq) is down the gate holds as it was (by address: no DNS).
    assert lab.curl(1, f"http://{lab.world_addr}:8000/").stdout.startswith("the world")
    assert lab.curl(2, f"http://{lab.world_addr}:8000/", timeout=3).returncode != 0
    hits += 1
    svc.start()
    st = svc.network()
    n3 = OPENED_BY_CHROMIUM[0]
    assert (st["held"], st["open"], st["restored"]) == (1, 1 + n3, 2 + n3), st
    states()
    hits += 1
    # Server reboot: namespaces rebuilt from nothing, the kernel's table gone; phones ask DHCP again.
    svc.stop()
    world.stop()
    lab.reboot_server()
    assert "appliance" not in run("ip", "netns", "exec", lab.server, "nft", "list", "tables").stdout
    new_world = WorldServer(lab, svc.workdir, port=8000)
    try:
        svc.start()
        for i in (1, 2):
            lab.dhcp(i)
        st = svc.network()
        assert (st["held"], st["open"]) == (1, 1 + OPENED_BY_CHROMIUM[0]), st
        states()
        assert new_world.hits() >= 1
    finally:
        new_world.stop()
    assert hits >= 2


def _wait(cond: object, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")

