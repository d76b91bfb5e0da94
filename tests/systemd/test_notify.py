"""The notify protocol as a supervisor sees it, with a fake ``$NOTIFY_SOCKET`` bound by the test.

The real service runs as a subprocess (loopback ports, no serial card) with ``WATCHDOG_USEC`` set as
systemd would; the test receives every datagram with its arrival time.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.daemon import TICK_S, watchdog_period
from tests.e2e.service import TOKEN, Service

WATCHDOG_USEC = 2_000_000


@pytest.mark.parametrize(("env", "pid", "expected"), [
    ({}, 10, None),
    ({"WATCHDOG_USEC": "2000000"}, 10, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "10"}, 10, 1.0),
    ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "11"}, 10, None),  # someone else's watchdog
    ({"WATCHDOG_USEC": "0"}, 10, None),
    ({"WATCHDOG_USEC": "soon"}, 10, None),
    ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "x"}, 10, None),
])
def test_watchdog_period_follows_sd_watchdog_enabled(env: dict[str, str], pid: int,
                                                    expected: float | None) -> None:
    assert watchdog_period(env, pid) == expected


def _answers(url: str, token: str | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Supervisor:
    """The fake systemd: a datagram socket, and what arrived on it when."""

    path: Path
    admin_url: str
    passenger_url: str
    t0: float = field(default_factory=time.monotonic)
    messages: list[tuple[float, str]] = field(default_factory=list)
    #: At the moment READY=1 arrived: did the admin and passenger ports answer?
    ports_at_ready: tuple[bool, bool] | None = None

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            now = time.monotonic() - self.t0
            for line in data.decode().splitlines():
                self.messages.append((now, line))
                if line == "READY=1":
                    self.ports_at_ready = (_answers(self.admin_url + "/admin/v1/status", TOKEN),
                                           _answers(self.passenger_url + "/api/v1/flight"))

    def times(self, message: str) -> list[float]:
        return [t for t, m in self.messages if m == message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_ready_watchdog_status_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = Service(tmp_path)
    cfg = svc.write_config()
    sup = Supervisor(tmp_path / "notify.sock", f"http://127.0.0.1:{svc.admin_port}",
                     f"http://127.0.0.1:{svc.passenger_port}")
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "LISTEN_FDS")}
    env.update(NOTIFY_SOCKET=str(sup.path), WATCHDOG_USEC=str(WATCHDOG_USEC),
               APPLIANCE_SERIAL__ENABLED="false", PYTHONUNBUFFERED="1")
    with open(svc.log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while not sup.times("READY=1"):
            assert proc.poll() is None, svc.log()
            assert time.monotonic() < deadline, f"no READY=1 in 30 s:\n{svc.log()}"
            time.sleep(0.05)
        ready = sup.times("READY=1")[0]
        time.sleep(5.2)  # about five watchdog periods of 1 s
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sup.close()

    msgs = [m for _, m in sup.messages]
    assert code == 0, svc.log()
    # READY=1 once, after the web servers answer, before any WATCHDOG=1 or STATUS=.
    assert msgs.count("READY=1") == 1
    assert sup.ports_at_ready == (True, True)
    assert msgs[0] == "READY=1", msgs[:5]
    # WATCHDOG=1 every half WATCHDOG_USEC (1 s), not every tick.
    pings = [t for t in sup.times("WATCHDOG=1") if t > ready]
    assert 5 <= len(pings) <= 7, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    period = WATCHDOG_USEC / 2e6
    assert all(period - TICK_S / 2 <= g <= period + 0.4 for g in gaps), gaps
    assert pings[0] - ready < TICK_S + 0.3
    # STATUS= says mode, air/ground, phase, journal health and the pending events.
    status = [m for m in msgs if m.startswith("STATUS=")]
    assert status, msgs
    assert status[0].startswith("STATUS=mode GROUND, "), status
    assert re.search(r"phase \w+; BITE (green|amber|red)\b.*; \d+ events pending", status[0]), status
    assert "journal red" not in status[0]  # healthy: BITE names only what is not green
    # STOPPING=1 last, and nothing after it but status chatter.
    assert "STOPPING=1" in msgs
    assert "WATCHDOG=1" not in msgs[msgs.index("STOPPING=1"):]


def test_watchdog_of_another_process_is_ignored(tmp_path: Path) -> None:
    """WATCHDOG_PID naming someone else: the service keeps its own 0.5 s tick cadence."""
    svc = Service(tmp_path)
    cfg = svc.write_config()
    sup = Supervisor(tmp_path / "notify.sock", f"http://127.0.0.1:{svc.admin_port}",
                     f"http://127.0.0.1:{svc.passenger_port}")
    env = {**os.environ, "NOTIFY_SOCKET": str(sup.path), "WATCHDOG_USEC": "20000000",
           "WATCHDOG_PID": "1", "APPLIANCE_SERIAL__ENABLED": "false"}
    with open(svc.log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while not sup.times("READY=1"):
            assert proc.poll() is None and time.monotonic() < deadline, svc.log()
            time.sleep(0.05)
        time.sleep(2.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sup.close()
    assert len(sup.times("WATCHDOG=1")) >= 4  # every 0.5 s tick, not every 10 s
