"""Shared helpers of the cabin network tests: a journal, fast settings, simulator processes, logs."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from appliance.cabin.manager import CabinNetwork, Device
from appliance.cabin.setup import desired_specs
from appliance.cabin.store import JobStore
from appliance.modes.policy import Mode
from appliance.settings import CabinNetworkSettings
from tests.store_fixture import MigratedJournal

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "ap-secret"
GROUND = {"radio_on": True, "channel": 36, "tx_power_dbm": 12, "ssids": {"CREW": True, "PAX": False}}
FLIGHT = {"radio_on": True, "channel": 44, "tx_power_dbm": 17, "ssids": {"CREW": True, "PAX": True}}
#: Simulator flags that start a device in the GROUND configuration.
GROUND_FLAGS = ["--channel", "36", "--tx-power", "12", "--ssid", "CREW", "--ssid", "PAX:off"]


Journal = MigratedJournal


def fast_settings(**over: Any) -> CabinNetworkSettings:
    """Settings with test timings (s) and the GROUND/FLIGHT configurations above."""
    base: dict[str, Any] = {
        "enabled": True, "desired": {"GROUND": GROUND, "FLIGHT": FLIGHT},
        "poll_interval_s": 0.5, "unreachable_after": 2, "connect_timeout_s": 1.0,
        "request_timeout_s": 2.0, "confirm_timeout_s": 4.0, "retry_attempts": 8,
        "retry_initial_s": 0.1, "retry_max_s": 1.0, "job_deadline_s": 40.0, "reboot_wait_s": 10.0,
        "reconcile_backoff_s": 0.5, "reconcile_backoff_max_s": 2.0, "converge_grace_s": 30.0}
    base.update(over)
    return CabinNetworkSettings(**base)


def service(cfg: CabinNetworkSettings, devices: list[Device], j: Journal,
            mode: Mode = Mode.GROUND) -> CabinNetwork:
    """A CabinNetwork over ``devices`` writing to ``j``."""
    return CabinNetwork(cfg, devices, JobStore(j.writer, j.reader, "F-WAP"), desired_specs(cfg), mode)


def subnet() -> str:
    """A loopback /24 of our own for this test ("127.0.X"): random, and port 8080 free on it."""
    for _ in range(50):
        net = f"127.0.{random.randint(10, 250)}"
        try:
            for host in (f"{net}.1", f"{net}.20"):
                with socket.socket() as s:
                    s.bind((host, 8080))
        except OSError:
            continue
        return net
    raise RuntimeError("no free loopback /24 found")


class SimProc:
    """One simulator process on its own loopback address (``host``), port 8080 by default."""

    def __init__(self, name: str, host: str, tmp: Path, *args: str, port: int = 8080) -> None:
        self.name, self.host, self.port = name, host, port
        self.log = tmp / f"{name}.jsonl"
        self.state_file = tmp / f"{name}.json"
        self.args = ["--name", name, "--host", host, "--port", str(port), "--password", PASSWORD,
                     "--log", str(self.log), "--state", str(self.state_file), *args]
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def spawn(self) -> None:
        """Start the process (do not wait for it)."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "appliance.cabin.simulator", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=REPO)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for its READY line; raises RuntimeError if it exits or stays silent."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(0.1):
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    self.port = int(line.split()[2])
                    return
                if not line:
                    break
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise RuntimeError(f"simulator {self.name} on {self.host} not ready: {err}")

    def kill(self) -> int | None:
        """SIGTERM, then SIGKILL, by its real PID; returns the exit status (None if never started).

        Status 3: the simulator saw a command arrive while another was being processed.
        """
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(3)
        return p.returncode

    def state(self) -> dict[str, Any] | None:
        """The device's state file (None before it exists)."""
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return None

    def records(self) -> list[dict[str, Any]]:
        """Every complete log record."""
        out = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def runs(config: dict[str, Any], spec: dict[str, Any]) -> bool:
    """True if a device configuration (API shape) has every field of ``spec`` (settings shape)."""
    ssids = {s["name"]: s["enabled"] for s in config["ssids"]}
    return all(config[k] == v for k, v in spec.items() if k != "ssids") and all(
        ssids.get(n) == e for n, e in spec.get("ssids", {}).items())


def check_log(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What a device's own log proves: overlapping commands, per-job intervals, effects per tag.

    Returns ``{"overlaps": n, "job_overlaps": [(job_a, job_b)], "effects": {tag: {effect: n}}}``.
    """
    requests = [r for r in records if "t0" in r]
    overlaps = sum(1 for r in requests if r.get("overlap"))
    spans: dict[str, list[float]] = {}
    for r in requests:
        if r["by"] in ("poll", "-") or r["outcome"] in ("lost_request", "down", "cut_off"):
            continue
        s = spans.setdefault(r["by"], [r["t0"], r["t1"]])
        s[0], s[1] = min(s[0], r["t0"]), max(s[1], r["t1"])
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    job_overlaps = [(a[0], b[0]) for a, b in itertools.pairwise(ordered)
                    if b[1][0] < a[1][1]]
    effects: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        if "effect" in r and r.get("tag"):
            effects[r["tag"]][r["effect"]] += 1
    return {"overlaps": overlaps, "job_overlaps": job_overlaps,
            "effects": {k: dict(v) for k, v in effects.items()}}
