"""Acceptance 2: power cuts during upload lose no acknowledged record and duplicate none.

Both ends keep their data on PowerFS (:mod:`tests.faults.powerfs`): the aircraft's journal
(the sync process, :mod:`tests.sync.uplink_proc`, placing orders and uploading) and the ground
receiver's SQLite database, each on its own mount. Cuts alternate between the two ends, at
random moments while batches flow on loopback: the filesystem dies first (everything not
fsynced may vanish, a write may be torn), then the process is killed; the filesystem is rewritten
to a survivor state, remounted, and the process restarted.

Checked after every ground-side cut: the receiver's watermark of each stream is still at least
what the aircraft recorded as acknowledged (an acknowledged batch survived). At the end: every
prefilled record and every acknowledged order (``Orders.place`` returned) is at the ground
exactly once, each stream complete and in order, no gap, no conflict.

Skipped when /dev/fuse, fusermount3, pyfuse3 or trio is unavailable.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.faults.powerfs import PowerFS

from .faultrun import (
    appliance_config,
    check_ground_truth,
    kill,
    last_seqs,
    outbox_depth,
    read_status,
    receiver_config,
    receiver_count,
    ro,
    wait_ready,
)
from .helpers import AIRCRAFT, Journal

REPO = Path(__file__).resolve().parents[2]


def _fuse_unavailable() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (Debian package fuse3)"
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as e:
        return f"pyfuse3/trio not importable ({e})"
    return None


pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(_fuse_unavailable() is not None, reason=_fuse_unavailable() or "")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/health", timeout=2):
            return True
    except OSError:
        return False


def _acked(journal: Path) -> dict[str, int]:
    try:
        with ro(journal) as c:
            return dict(c.execute("SELECT stream, acked_seq FROM sync_stream"))
    except Exception:  # noqa: BLE001 - the file may be mid-recovery; nothing to compare then
        return {}


def _rx_watermarks(db: Path) -> dict[str, int]:
    with ro(db) as c:
        return dict(c.execute("SELECT stream, seq FROM watermarks WHERE aircraft = ?", (AIRCRAFT,)))


def _run(tmp: Path, cuts: int, orders: int, seed: int) -> None:
    rng = random.Random(seed)
    fs_a = PowerFS(tmp / "a-back", tmp / "a-mnt", tmp / "a-state")
    fs_r = PowerFS(tmp / "r-back", tmp / "r-mnt", tmp / "r-state")
    procs: dict[str, subprocess.Popen[bytes] | None] = {"a": None, "r": None}
    produced = tmp / "orders.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logs = {k: (tmp / f"{k}.log").open("ab") for k in ("a", "r")}
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    try:
        fs_a.mount()
        fs_r.mount()
        data = fs_a.mountpoint / "data"
        data.mkdir()  # as an installer does: the entry is durable once its parent is fsynced
        fd = os.open(fs_a.mountpoint, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        journal, rx_db = data / "journal.db", fs_r.mountpoint / "ground.db"
        j = Journal(journal)
        prefilled = {"usage": 1500, "logs": 1500}
        try:
            for stream, n in prefilled.items():
                j.fill(stream, n, lambda i, s=stream: {"i": i, "stream": s, "pad": "x" * 200})
        finally:
            j.close()
        cfg_a = appliance_config(tmp / "a.toml", data, url, ["lo"], batch_max_records=150,
                                 request_timeout_s=5.0, retry_max_s=1.0)
        cfg_r = receiver_config(tmp / "r.toml", rx_db, "127.0.0.1", port)

        def start(side: str) -> None:
            if side == "r":
                procs["r"] = subprocess.Popen(
                    [sys.executable, "-m", "ground_receiver", "serve", "--config", str(cfg_r)],
                    stdout=logs["r"], stderr=subprocess.STDOUT, cwd=REPO, env=env)
                deadline = time.monotonic() + 30
                while not _up(url):
                    assert procs["r"].poll() is None and time.monotonic() < deadline, "receiver"
                    time.sleep(0.05)
            else:
                p = subprocess.Popen(
                    [sys.executable, "-m", "tests.sync.uplink_proc", "--config", str(cfg_a),
                     "--produced", str(produced), "--orders", str(orders), "--rate", "150",
                     "--tag", f"p{seed}"], stdout=subprocess.PIPE, stderr=logs["a"], cwd=REPO,
                    env=env)
                procs["a"] = p
                wait_ready(p, "aircraft sync process", 60)

        start("r")
        start("a")
        checked = 0
        for i in range(cuts):
            before = receiver_count(rx_db)
            deadline = time.monotonic() + 30
            while receiver_count(rx_db) == before and time.monotonic() < deadline:
                time.sleep(0.05)  # batches are flowing
            time.sleep(rng.uniform(0.05, 0.8))
            side, fs = ("a", fs_a) if i % 2 == 0 else ("r", fs_r)
            fs.power_off()  # the storage dies first ...
            kill(procs[side])  # ... then the process on it
            fs.cut(rng)
            start(side)
            if side == "r":
                acked, wm = _acked(journal), _rx_watermarks(rx_db)
                lost = {s: (a, wm.get(s, 0)) for s, a in acked.items() if wm.get(s, 0) < a}
                assert not lost, f"cut {i + 1}: acknowledged watermarks went back: {lost}"
                checked += 1
        assert checked == cuts // 2
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            done = produced.exists() and len(produced.read_text().split()) >= orders
            if done and outbox_depth(journal) == 0:
                break
            time.sleep(0.3)
        assert outbox_depth(journal) == 0, f"not drained: {read_status(produced)}"
        keys = produced.read_text().split()
        verdict = check_ground_truth(rx_db, last_seqs(journal), prefilled, keys)
        print(f"\n{cuts} power cuts; received per stream {verdict.per_stream}")
        assert verdict.ok, verdict.problems
    finally:
        for p in procs.values():
            kill(p)
        for fs in (fs_a, fs_r):
            fs.power_off()
        for f in logs.values():
            f.close()


@pytest.mark.timeout(400)
def test_power_cuts_during_upload_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    _run(tmp_path, cuts=8, orders=1500, seed=11)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_soak_power_cuts(tmp_path: Path) -> None:
    _run(tmp_path, cuts=60, orders=8000, seed=12)
