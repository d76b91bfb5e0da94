"""The whole AFR34ZG flight onto CAN (CANaerospace / ARINC 825 identifiers) through the real service.

Real parts: the real service (``appliance run``) and the card simulator (``card-sim play`` with
``--can-interface udp_multicast``: serial onto a pty and CAN onto the bus, both paced by one clock)
as subprocesses inside a private network namespace whose only route for 224.0.0.0/4 is its own
``lo`` (no vcan or AF_CAN in this kernel: shared/TESTING.md). Each process checks it is in the
namespace before it starts; the test reaches the service's HTTP API on the namespace's loopback
from a thread that has joined the namespace (and checks it did).

Truth as in ``test_recorded_flight.py``: airborne from 06:59:17, on ground from 07:58:43 UTC; each
transition journaled within 10 s, with avionics UTC, once. Played at x50 (about 100 s per flight):
marked ``system``.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .service import Service, start_card

pytestmark = [pytest.mark.e2e, pytest.mark.system]

SPEED = 50.0
GROUP = "239.74.163.9"  # only ever used inside the namespace
TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()
CLONE_NEWNET = 0x40000000
#: The serial test's faults (glitch, dropout, NCD, garbage), as CAN shows them.
CAN_FAULTS = [
    "bad-dlc=0.01", "unknown-id=0.02", "error-frame=0.01",  # garbage on the bus
    "wow-glitch=07:31:00/6",  # the LGCIU says "on ground" for 6 s at cruise (~250 kt CAS)
    "dropout=LGCIU_DISCRETES@07:29:00/30",  # air/ground gone for 30 s
    "ncd=CALIBRATED_AIRSPEED@07:30:50/20",  # airspeed No Computed Data for 20 s (over the glitch)
]
#: CAN failing mid-flight while serial is good: silent, then garbage, then lying about WOW.
CAN_FAILING = ["silent=07:20:00/120", "garbage=07:22:00/120", "wow-glitch=07:24:00/600"]
LIE_FROM = dt.datetime(2024, 7, 6, 7, 24, tzinfo=dt.UTC).timestamp()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _in_ns(ns: str, *cmd: str) -> list[str]:
    """``cmd`` inside ``ns``, after a check that it is there (exec: the PID is the real process)."""
    check = 'test "$(ip netns identify $$)" = "$0" || { echo "not in netns $0" >&2; exit 3; }'
    return ["ip", "netns", "exec", ns, "sh", "-c", f'{check}; exec "$@"', ns, *cmd]


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"appl-canf-{uuid.uuid4().hex[:8]}"
    add = _ip("netns", "add", name, check=False)
    if add.returncode != 0:
        pytest.skip(f"cannot create a network namespace (ip netns add: {add.stderr.strip()})")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "set", "lo", "multicast", "on")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "lo")
        yield name
    finally:
        _ip("netns", "del", name, check=False)


def in_netns(ns: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a thread that joined ``ns`` (checked), return its result or raise its error."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            if os.stat("/proc/thread-self/ns/net").st_ino != os.stat(f"/run/netns/{ns}").st_ino:
                raise RuntimeError(f"not in netns {ns}")
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    th = threading.Thread(target=run)
    th.start()
    th.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class NsService(Service):
    """The service inside ``ns``; its HTTP API reached from a thread in the namespace."""

    ns: str = ""

    def get(self, port: int, path: str, token: str | None = None) -> Any:
        return in_netns(self.ns, lambda: Service.get(self, port, path, token))


def _service(tmp_path: Path, ns: str, serial: bool) -> NsService:
    svc = NsService(tmp_path, card_speed=SPEED if serial else None, prefix=_in_ns(ns),
                    serial_enabled=serial, tail_config=f"""
[can]
enabled = true
interface = "udp_multicast"
channel = "{GROUP}"
time_rate = {SPEED}
time_source = "utc"
receive_buffer_bytes = 4194304
""")
    svc.ns = ns
    return svc


def _fly(tmp_path: Path, ns: str, flight_path: Path, serial: bool, can_faults: list[str],
         watch: Callable[[NsService], None] | None = None) -> tuple[NsService, list[dict], dict]:
    svc = _service(tmp_path, ns, serial)
    svc.start()
    try:
        extra = ["--can-interface", "udp_multicast", "--can-channel", GROUP]
        for f in can_faults:
            extra += ["--can-fault", f]
        link = svc.card_link if serial else None
        card = start_card(flight_path, link, SPEED, extra=extra, prefix=_in_ns(ns))
        try:
            while card.poll() is None:
                if watch is not None:
                    watch(svc)
                time.sleep(0.2)
            _, err = card.communicate(timeout=4800 / SPEED * 3 + 60)
        finally:
            if card.poll() is None:
                card.kill()
        assert card.returncode == 0, err.decode()
        deadline = time.monotonic() + 20
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = svc.admin("/admin/v1/journal?kind=mode")["rows"]
            if any(r["data"]["current"] == "GROUND" and r["data"]["previous"] == "FLIGHT"
                   for r in rows):
                break
            time.sleep(0.2)
        signals = svc.admin("/admin/v1/signals")
        assert svc.proc is not None and svc.proc.poll() is None, svc.log()
    finally:
        code = svc.stop()
    assert code == 0, f"service did not stop cleanly ({code}):\n{svc.log()}"
    return svc, rows, signals


def _check_transitions(rows: list[dict]) -> list[float]:
    changes = [(r["data"]["previous"], r["data"]["current"]) for r in rows]
    assert [c for c in changes if c[0] is not None] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    up = next(r for r in rows if r["data"]["current"] == "FLIGHT")
    down = next(r for r in rows if r["data"]["current"] == "GROUND" and r["data"]["previous"])
    errors = []
    for row, truth in ((up, TAKEOFF), (down, LANDING)):
        assert row["time_source"] == "avionics", rows
        assert abs(row["utc"] - truth) <= 10.0, (row["utc_iso"], truth)
        assert row["data"]["evidence"]["votes"], row
        errors.append(round(row["utc"] - truth, 2))
    print(f"transition error vs truth (s): takeoff {errors[0]:+}, landing {errors[1]:+}")
    return errors


def test_clean_flight_on_can_only(tmp_path: Path, netns: str, flight_path: Path) -> None:
    svc, rows, signals = _fly(tmp_path, netns, flight_path, serial=False, can_faults=[])
    print("CAN:", {k: v for k, v in signals["sources"]["can"].items() if v})
    print("\n".join(ln for ln in svc.log().splitlines() if "WARNING" in ln or "mode" in ln)[-3000:])
    _check_transitions(rows)
    can = signals["sources"]["can"]
    assert can["frames"] > 200_000 and can["decode_errors"] == 0 and can["bad_frames"] == 0, can
    names = {p["name"] for p in signals["parameters"] if p["source"].startswith("can/")}
    assert {"computed_airspeed", "pressure_altitude", "ground_speed", "latitude", "longitude",
            "utc_time", "utc_date", "air_ground", "wow_left", "wow_right"} <= names, names


def test_flight_on_can_with_the_serial_tests_faults(tmp_path: Path, netns: str,
                                                    flight_path: Path) -> None:
    _, rows, signals = _fly(tmp_path, netns, flight_path, serial=False, can_faults=CAN_FAULTS)
    _check_transitions(rows)
    can = signals["sources"]["can"]
    assert can["bad_frames"] > 100 and can["unknown_labels"] > 100, can
    assert can["no_computed_data"] > 0, can


def test_serial_and_can_together_with_can_failing_mid_flight(tmp_path: Path, netns: str,
                                                             flight_path: Path) -> None:
    seen: dict[str, Any] = {}

    def watch(svc: NsService) -> None:
        """Catch the lie while it lasts: BITE (status) and the signals page."""
        if "bite" in seen and "signals" in seen:
            return
        bite = svc.admin("/admin/v1/status")["bite"]["redundancy"]
        if bite["state"] == "amber" and "bite" not in seen:
            seen["bite"] = bite
        cur = svc.admin("/admin/v1/signals")["disagreements"]["current"]
        if "signals" not in seen and any(  # the lie (not the moment both switch at take-off)
                d["name"] == "air_ground" and LIE_FROM <= d["since_utc"] < LIE_FROM + 600
                for d in cur):
            seen["signals"] = cur

    _, rows, signals = _fly(tmp_path, netns, flight_path, serial=True, can_faults=CAN_FAILING,
                            watch=watch)
    _check_transitions(rows)
    assert signals["sources"]["card"]["frames"] > 300_000
    assert signals["sources"]["can"]["decode_errors"] + signals["sources"]["can"][
        "unknown_labels"] > 1000  # the garbage minutes
    assert "sources disagree" in seen["bite"]["reason"] and "air_ground" in seen["bite"]["reason"]
    lie = next(d for d in seen["signals"]
               if d["name"] == "air_ground" and d["since_utc"] >= LIE_FROM)
    assert any(k.startswith("wow_left@can/") and v is True for k, v in lie["values"].items()), lie
    assert any(k.startswith("wow_left@card") and v is False for k, v in lie["values"].items()), lie
    assert signals["disagreements"]["episodes"]["air_ground"] >= 1
    recent = signals["disagreements"]["recent"]
    lies = [d for d in recent if d["name"] == "air_ground" and d["duration_s"] > 300]
    assert lies, [(d["name"], d["duration_s"], d["values"]) for d in recent]
    assert abs(lies[0]["since_utc"] - LIE_FROM) < 10, lies[0]
    assert signals["disagreements"]["episodes"]["air_ground"] >= 1
    print("disagreement seen on BITE:", seen["bite"]["reason"])
