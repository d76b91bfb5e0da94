"""Start the real service and the card simulator as subprocesses, on loopback and a pty."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN = "e2e-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A running `appliance run` with its config, ports and log file."""

    workdir: Path
    passenger_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_config: str = ""
    #: The speed of the card simulator that plays onto the pty (its card clock runs this many
    #: times faster than host time): ``serial.max_card_time_rate``. None: the default (a real card).
    card_speed: float | None = None
    #: Prepended to the service's command line (e.g. ``ip netns exec NS ...``).
    prefix: list[str] = field(default_factory=list)
    serial_enabled: bool = True
    #: TOML appended after the [serial] section (other sections, e.g. [can]).
    tail_config: str = ""

    @property
    def card_link(self) -> Path:
        return self.workdir / "card"

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    def write_config(self) -> Path:
        cfg = self.workdir / "appliance.toml"
        # A loaded test machine may read the first frames late: 2 s of slack for the time base.
        card_time = ("" if self.card_speed is None else
                     f"max_card_time_rate = {self.card_speed}\ncard_time_slack_s = 2.0\n")
        cfg.write_text(f"""
aircraft_id = "F-E2E"
data_dir = "{self.workdir / 'data'}"
admin_token = "{TOKEN}"
{self.extra_config}
[passenger]
host = "127.0.0.1"
port = {self.passenger_port}
[admin]
host = "127.0.0.1"
port = {self.admin_port}
[serial]
enabled = {str(self.serial_enabled).lower()}
port = "{self.card_link}"
reconnect_s = 0.2
{card_time}
{self.tail_config}""")
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        cfg = self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "appliance.cli", "run", "--config", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited {self.proc.returncode}:\n{self.log()}")
            try:
                self.admin("/admin/v1/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        raise TimeoutError(f"service not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, port: int, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def admin(self, path: str) -> Any:
        return self.get(self.admin_port, path, TOKEN)

    def passenger(self, path: str) -> Any:
        return self.get(self.passenger_port, path)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def start_card(recording: Path, link: Path | None, speed: float, faults: list[str] = (),  # type: ignore[assignment]
               unplugs: list[str] = (), extra: list[str] = (),  # type: ignore[assignment]
               prefix: list[str] = ()) -> subprocess.Popen[bytes]:  # type: ignore[assignment]
    """Start the card simulator playing ``recording`` onto a pty at ``link``.

    ``extra``: more arguments (e.g. ``--can-interface``); ``prefix``: prepended to the command.
    ``link`` None: no pty (CAN only, with ``--can-interface`` in ``extra``).
    """
    cmd = [*prefix, sys.executable, "-m", "firmware_bridge.cli", "play", str(recording),
           *(["--link", str(link)] if link is not None else []), "--speed", str(speed), *extra]
    for f in faults:
        cmd += ["--fault", f]
    for u in unplugs:
        cmd += ["--unplug", u]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


#: Debian's Chromium, as the portal's browser tests drive it (Playwright).
CHROMIUM = "/usr/bin/chromium"
#: Root, no GPU, and none of Chromium's own traffic (this machine's network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def launch_chromium(playwright: Any, autoplay: bool = False) -> Any:
    """Debian's Chromium, headless, through ``playwright`` (``autoplay``: media may start alone)."""
    args = CHROMIUM_ARGS + (["--autoplay-policy=no-user-gesture-required"] if autoplay else [])
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args)
