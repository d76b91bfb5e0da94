"""The whole AFR34ZG flight onto CAN (ARINC 825 29-bit identifiers) through the real service.

Real parts: the real service (``appliance run``) and the card simulator (``card-sim play`` with
``--can-interface udp_multicast``: serial onto a pty and CAN onto the bus, both paced by one clock)
as subprocesses inside a private network namespace whose only route for 224.0.0.0/4 is its own
``lo`` (no vcan or AF_CAN in this kernel: shared/TESTING.md). Each process checks it is in the
namespace before it starts; the test reaches the service's HTTP API on the namespace's loopback
from a thread that has joined the namespace (and checks it did).

Truth as in ``test_recorded_flight.py``: airborne from 06:59:17, on ground from 07:58:43 UTC; each
transition journaled within 10 s, with avionics UTC, once. Played at x50 (about 100 s per flight;
x100 is more than the simulator keeps up with on a loaded 2-core machine): marked ``system``. Two
flights: CAN only with the serial test's faults; serial and CAN together, each failing mid-flight
in turn (silent, then garbage, then lying about WOW) while the other stays good.
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
#: A source failing mid-flight while the other is good: silent, then garbage, then lying about WOW
#: (the same specs for the card simulator's serial and CAN faults).
FAILING = ["silent=07:20:00/120", "garbage=07:22:00/120", "wow-glitch=07:24:00/600"]
LIE_FROM = dt.datetime(2024, 7, 6, 7, 24, tzinfo=dt.UTC).timestamp()
#: The lie's disagreement starts at most this long (flight s) after the lie.
LIE_SEEN_WITHIN_S = 120.0


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
profile = "arinc825"
time_rate = {SPEED}
time_source = "utc"
receive_buffer_bytes = 4194304
""")
    svc.ns = ns
    return svc


def _fly(tmp_path: Path, ns: str, flight_path: Path, serial: bool, can_faults: list[str],
         watch: Callable[[NsService], None] | None = None, serial_faults: list[str] = (),  # type: ignore[assignment]
         ) -> tuple[NsService, list[dict], dict]:
    svc = _service(tmp_path, ns, serial)
    svc.start()
    try:
        extra = ["--can-interface", "udp_multicast", "--can-channel", GROUP,
                 "--can-profile", "arinc825"]
        for f in can_faults:
            extra += ["--can-fault", f]
        link = svc.card_link if serial else None
        card = start_card(flight_path, link, SPEED, list(serial_faults), extra=extra,
                          prefix=_in_ns(ns))
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
        signals["bite_at_end"] = svc.admin("/admin/v1/status")["bite"]  # for the checks
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


def test_flight_on_can_with_the_serial_tests_faults(tmp_path: Path, netns: str,
                                                    flight_path: Path) -> None:
    """CAN only (ARINC 825), with the serial test's faults: the same two transitions.

    One flight for both the clean path and the faulted one (CI time): the faults add bad and
    unknown frames and NODATA spells, never an undecodable payload, so every parameter must come
    through and ``decode_errors`` stay 0, as on a clean bus.
    """
    svc, rows, signals = _fly(tmp_path, netns, flight_path, serial=False, can_faults=CAN_FAULTS)
    print("CAN:", {k: v for k, v in signals["sources"]["can"].items() if v})
    print("\n".join(ln for ln in svc.log().splitlines() if "WARNING" in ln or "mode" in ln)[-3000:])
    _check_transitions(rows)
    can = signals["sources"]["can"]
    # ~240,000 sent; at load 24 on 2 cores the receive buffer dropped 16 % (202,257 seen)
    assert can["frames"] > 150_000 and can["decode_errors"] == 0, can
    assert can["bad_frames"] > 100 and can["unknown_labels"] > 100, can
    assert can["no_computed_data"] > 0, can
    names = {p["name"] for p in signals["parameters"] if p["source"].startswith("can/")}
    assert {"computed_airspeed", "pressure_altitude", "ground_speed", "latitude", "longitude",
            "utc_time", "utc_date", "air_ground", "wow_left", "wow_right"} <= names, names


class LieWatch:
    """Catches a source lying about WOW from ``lie_from`` (epoch s) while it lasts.

    Called while the flight plays: the signals page's current air/ground disagreement that started
    in the lie, and BITE's redundancy state at that moment.
    """

    def __init__(self, lie_from: float, seconds: float) -> None:
        self.lie_from, self.seconds = lie_from, seconds
        self.seen: dict[str, Any] = {}

    def _in_lie(self, d: dict) -> bool:
        return bool(d["name"] == "air_ground"
                    and self.lie_from <= d["since_utc"] < self.lie_from + self.seconds)

    def __call__(self, svc: NsService) -> None:
        if "bite" in self.seen:
            return
        cur = svc.admin("/admin/v1/signals")["disagreements"]["current"]
        if any(self._in_lie(d) for d in cur):  # the lie (not the moment both switch at take-off)
            self.seen.setdefault("signals", cur)
            bite = svc.admin("/admin/v1/status")["bite"]["redundancy"]
            if bite["state"] == "amber":
                self.seen["bite"] = bite

    def check(self, signals: dict, liar: str, honest: str) -> None:
        """The lie of source ``liar`` (WOW compressed) shows on BITE and the signals page.

        The recorded episodes (the signals page's ``recent``, BITE's redundancy ``recent`` at the
        end) must hold it; the live view while it lasted is checked when the watch caught it (at
        x50 on a loaded machine the votes of the source lagging behind go stale for moments, see
        below, and a lie may show only in pieces between two polls). ``honest``: printed.
        """
        recent = [d for d in signals["disagreements"]["recent"] if self._in_lie(d)]
        print("recent disagreements:", [(d["name"], d["since_utc"] - self.lie_from, d["duration_s"])
                                        for d in signals["disagreements"]["recent"]])
        assert recent, signals["disagreements"]
        assert all(any(k.startswith(f"wow_left@{liar}") and v is True
                       for k, v in d["values"].items())
                   and any(v is False for v in d["values"].values()) for d in recent), recent
        # soon after the lie starts: right after the failing source's silence and garbage, on a
        # loaded machine, its time base may take a minute of flight time to settle (x50)
        assert 0 <= recent[0]["since_utc"] - self.lie_from < LIE_SEEN_WITHIN_S, recent
        # the CAN votes go stale whenever CAN lags serial by more than the discretes' max age
        # (0.75 s) / 50 of wall time, which splits the episode: shown for 186 to 600 s of 600
        shown = sum(d["duration_s"] for d in recent)
        print(f"{liar} lie shown as a disagreement for {shown:.0f} s of 600")
        bite = signals["bite_at_end"]["redundancy"]
        assert any(self._in_lie(d) for d in bite["recent"]), bite
        assert bite["episodes"]["air_ground"] >= 1, bite
        honest_seen = any(k.startswith(f"wow_left@{honest}") and v is False
                          for d in recent for k, v in d["values"].items())
        print(f"{honest} voting against the lie in a recorded episode: {honest_seen}")
        seen = self.seen
        if "bite" in seen:
            assert "sources disagree" in seen["bite"]["reason"], seen["bite"]
            assert "air_ground" in seen["bite"]["reason"], seen["bite"]
            lie = next(d for d in seen["signals"] if self._in_lie(d))
            assert any(k.startswith(f"wow_left@{liar}") and v is True
                       for k, v in lie["values"].items()), lie
        print(f"{liar} lying, seen live on BITE:", seen.get("bite", {}).get("reason"))


@pytest.mark.parametrize("failing", ["can", "serial"])
def test_serial_and_can_together_with_one_failing_mid_flight(tmp_path: Path, netns: str,
                                                             flight_path: Path, failing: str) -> None:
    """One source fails (silent, garbage, WOW lie) while the other is good: the same transitions.

    The disagreement shows on BITE and the signals page while it lasts, and stays in the recent
    episodes afterwards.
    """
    watch = LieWatch(LIE_FROM, 600)
    can_faults, serial_faults = (FAILING, []) if failing == "can" else ([], FAILING)
    _, rows, signals = _fly(tmp_path, netns, flight_path, serial=True, can_faults=can_faults,
                            serial_faults=serial_faults, watch=watch)
    _check_transitions(rows)
    card, can = signals["sources"]["card"], signals["sources"]["can"]
    print("card:", {k: v for k, v in card.items() if v})
    assert card["frames"] > 300_000
    if failing == "can":
        assert can["decode_errors"] + can["unknown_labels"] > 1000, can  # the garbage minutes
        watch.check(signals, liar="can/", honest="card")
    else:
        assert can["decode_errors"] == 0, can
        assert card["garbage_bytes"] > 100_000, card  # the garbage minutes
        watch.check(signals, liar="card", honest="can/")
