"""Acceptance 3: power cuts during jobs — jobs resume or are marked stale, none takes effect twice.

Six simulator processes (0.15 s per command, 1.5 s reboots) and the manager as its own process
(:mod:`tests.cabin.manager_proc`) with the journal on PowerFS when FUSE is available (a cut then
also throws away whatever was not fsynced), else on a plain directory (a SIGKILL only). Rounds:
FLIGHT, GROUND, FLIGHT, each cut while a job is in the middle of its work (the moment a device
logs a commit awaiting confirmation, or a reboot, by the current manager: ``CUT_AT``), then a
last FLIGHT round runs until every device keeps the FLIGHT configuration and no job is left.
Each round submits an admin reboot job of its own and the earlier rounds' ones again (same
idempotency keys).

Checks: no job is left queued or running; jobs cut while running were resumed (``resumed`` > 0)
or staled (superseded by the next round's mode); each reboot key is one job and one reboot on its
device; on every device each tag was confirmed at most once and rebooted at most once; never two
commands or two jobs at once (the devices' logs); the database passes its integrity check.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ..faults.driver import fuse_unavailable
from ..faults.powerfs import PowerFS
from .helpers import FLIGHT, GROUND, GROUND_FLAGS, PASSWORD, REPO, SimProc, check_log, runs, subnet

DEVICES = 6
MODES = ["FLIGHT", "GROUND", "FLIGHT", "FLIGHT"]  # a cut ends every round but the last
#: Admin reboot jobs: round r adds one (so every round has work) and submits the earlier ones again.
REBOOTS = [[f"ap{r}", f"pc-reboot-ap{r}"] for r in range(len(MODES))]


class Manager:
    """The manager process, its stdout read by a thread."""

    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.cabin.manager_proc", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for(self, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                if self.lines.get(timeout=0.1).startswith(word):
                    return
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read()[-3000:] if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"manager: no {word} within {timeout} s {err}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


#: Where each cut lands: the n-th (1-based) such effect a device logs in the round.
CUT_AT = [("commit", 1), ("reboot", 1), ("commit", 2)]


def wait_mid_job(sims: list[SimProc], since: float, effect: str, nth: int,
                 timeout: float = 15.0) -> str:
    """Block until devices logged the ``nth`` ``effect`` made after ``since`` (monotonic s).

    ``effect``: a commit awaiting confirmation, or a reboot; after ``since``: by this manager.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = sorted((r["t"], s.name, r["tag"]) for s in sims for r in s.records()
                      if r.get("effect") == effect and r["t"] > since
                      and r["why"] in ("pending confirmation", "requested"))
        if len(seen) >= nth:
            return f"{seen[nth - 1][1]} {effect} {seen[nth - 1][2]}"
        time.sleep(0.02)
    raise AssertionError(f"no {effect} #{nth} in the round")


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_power_cuts_during_jobs(tmp_path: Path) -> None:
    net = subnet()
    sims = [SimProc(f"ap{i}", f"{net}.{i + 1}", tmp_path, *GROUND_FLAGS, "--latency", "0.15",
                    "--boot-s", "1.5", "--seed", str(i)) for i in range(DEVICES)]
    why_not = fuse_unavailable()
    fs = None if why_not else PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "fsstate")
    data = tmp_path / ("mnt" if fs else "data")
    data.mkdir(exist_ok=True)
    settings = {
        "enabled": True, "desired": {"GROUND": GROUND, "FLIGHT": FLIGHT},
        "access_points": [{"name": s.name, "url": s.url, "password": PASSWORD} for s in sims],
        "poll_interval_s": 0.5, "unreachable_after": 2, "request_timeout_s": 3.0,
        "confirm_timeout_s": 3.0, "retry_attempts": 10, "retry_initial_s": 0.1, "retry_max_s": 1.0,
        "reboot_wait_s": 10.0, "reconcile_backoff_s": 0.5, "reconcile_backoff_max_s": 2.0}
    rng = random.Random(20261121)
    manager: Manager | None = None
    cuts: list[str] = []
    status: dict[str, int | None] = {}
    try:
        for s in sims:
            s.spawn()
        for s in sims:
            s.wait_ready()
        if fs is not None:
            fs.mount()
        for rnd, mode in enumerate(MODES):
            cfg = tmp_path / f"manager{rnd}.json"
            cfg.write_text(json.dumps({"db": str(data / "journal.db"), "mode": mode,
                                       "settings": settings, "reboots": REBOOTS[:rnd + 1]}))
            t_round = time.monotonic()
            manager = Manager(cfg)
            manager.wait_for("READY", 30)
            if rnd < len(MODES) - 1:
                cuts.append(f"{mode}: {wait_mid_job(sims, t_round, *CUT_AT[rnd])}")
                if fs is not None:
                    fs.power_off()  # the storage first: nothing acknowledged after this counts
                manager.kill()
                if fs is not None:
                    fs.cut(rng)
            else:
                manager.wait_for("IDLE", 40)
                manager.terminate()
    finally:
        if manager is not None:
            manager.kill()
        status = {s.name: s.kill() for s in sims}
        if fs is not None:
            fs.unmount()
    assert set(status.values()) == {0}, f"a simulator's own assertion failed (status 3): {status}"
    print(f"\ncuts ({'PowerFS' if fs else 'SIGKILL only: ' + str(why_not)}): {cuts}")

    db = (tmp_path / "backing" if fs else data) / "journal.db"
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        jobs = con.execute("SELECT id, device, kind, idempotency_key, state, resumed, detail "
                           "FROM wap_job ORDER BY id").fetchall()
    finally:
        con.close()
    states = {j[4] for j in jobs}
    assert states <= {"done", "stale", "failed"}, jobs
    resumed = [j for j in jobs if j[5] > 0]
    superseded = [j for j in jobs if j[4] == "stale" and "superseded" in (j[6] or "")]
    print(f"{len(jobs)} jobs: {len(resumed)} resumed after a cut, {len(superseded)} superseded")
    assert resumed, "no cut interrupted a running job"
    for device, key in REBOOTS:
        rows = [j for j in jobs if j[3] == key]
        assert len(rows) == 1 and rows[0][4] == "done", rows
        proof = check_log(next(s for s in sims if s.name == device).records())
        assert proof["effects"][key] == {"reboot": 1}, proof["effects"][key]
    for s in sims:
        st = s.state()
        assert st is not None and st["pending"] is None and runs(st["config"], FLIGHT), st
        proof = check_log(s.records())
        assert proof["overlaps"] == 0, s.name
        assert proof["job_overlaps"] == [], (s.name, proof["job_overlaps"])
        for tag, eff in proof["effects"].items():
            assert eff.get("confirm", 0) <= 1 and eff.get("reboot", 0) <= 1, (s.name, tag, eff)
