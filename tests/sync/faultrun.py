"""Pieces shared by the sync fault runs: configs, processes, the ground truth check."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .helpers import AIRCRAFT, TOKEN

REPO = Path(__file__).resolve().parents[2]


def appliance_config(path: Path, data_dir: Path, url: str, interfaces: list[str],
                     link: dict[str, Any] | None = None, **sync: Any) -> Path:
    """Write the uplink process's TOML config; returns its path. ``link``: more gatelink keys."""
    opts = {"batch_max_records": 1500, "batch_max_bytes": 300_000, "retry_initial_s": 0.2,
            "retry_max_s": 2.0, "retry_attempts": 4, "request_timeout_s": 6.0,
            "connect_timeout_s": 3.0, "probe_interval_s": 2.0, "status_refresh_s": 1.0,
            "summaries": False, **sync}
    lines = [f'aircraft_id = "{AIRCRAFT}"', f'data_dir = "{data_dir}"', "[serial]",
             "enabled = false", "[sync]", "enabled = true", f'receiver_url = "{url}"',
             f'token = "{TOKEN}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    lines += ["[sync.links.gatelink]", f"interfaces = {json.dumps(interfaces)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in (link or {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def receiver_config(path: Path, db: Path, host: str, port: int) -> Path:
    """Write the receiver's TOML config; returns its path."""
    path.write_text(f'database_url = "sqlite:///{db}"\nhost = "{host}"\nport = {port}\n'
                    f'log_level = "WARNING"\n[aircraft]\n"{AIRCRAFT}" = "{TOKEN}"\n')
    return path


def kill(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Signal the process by its own PID and reap it (bounded)."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def wait_ready(proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    """Wait for the line READY on the process's stdout (bounded)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == b"READY":
            return
        if not line and proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode} before READY")
    raise TimeoutError(f"{what} not READY in {timeout} s")


def wait_http(port_check: Any, timeout: float = 30.0) -> None:
    """Poll ``port_check()`` until it returns True (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_check():
            return
        time.sleep(0.1)
    raise TimeoutError("receiver did not come up")


def read_status(produced: Path) -> dict[str, Any]:
    """The uplink process's last status, or {}."""
    try:
        return dict(json.loads(produced.with_suffix(".status.json").read_text()))
    except (OSError, ValueError):
        return {}


def ro(path: Path) -> sqlite3.Connection:
    """A read-only connection (never writes, never creates)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA query_only=ON")
    return conn


def outbox_depth(journal: Path) -> int:
    """Rows in the appliance's outbox (0 if the file is not there yet)."""
    if not journal.exists():
        return -1
    with ro(journal) as c:
        return int(c.execute("SELECT count(*) FROM outbox").fetchone()[0])


def receiver_count(db: Path) -> int:
    """Records held by the receiver."""
    if not db.exists():
        return 0
    try:
        with ro(db) as c:
            return int(c.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@dataclass
class Verdict:
    """What the receiver holds, checked against what the aircraft produced."""

    per_stream: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_ground_truth(rx_db: Path, last_seq: dict[str, int], prefilled: dict[str, int],
                       orders: list[str]) -> Verdict:
    """Every seq 1..last of every stream exactly once, in order; prefills and orders all there.

    ``last_seq``: the aircraft's last sequence number per stream; ``prefilled``: records put on
    each stream before the run with payload ``{"i": seq - 1, ...}``; ``orders``: acknowledged
    order keys (each must arrive exactly once).
    """
    v = Verdict()
    with ro(rx_db) as c:
        rows = c.execute("SELECT stream, seq, payload FROM records WHERE aircraft = ? ORDER BY id",
                         (AIRCRAFT,)).fetchall()
        gaps = c.execute("SELECT count(*) FROM gaps").fetchone()[0]
        conflicts = c.execute("SELECT count(*) FROM conflicts").fetchone()[0]
        wm = dict(c.execute("SELECT stream, seq FROM watermarks WHERE aircraft = ?", (AIRCRAFT,)))
    if gaps:
        v.problems.append(f"{gaps} gaps recorded (nothing was dropped)")
    if conflicts:
        v.problems.append(f"{conflicts} conflicting duplicates")
    seqs: dict[str, list[int]] = {}
    order_keys: Counter[str] = Counter()
    for stream, seq, payload in rows:
        seqs.setdefault(stream, []).append(seq)
        p = json.loads(payload)
        if stream in prefilled and seq <= prefilled[stream] and p.get("i") != seq - 1:
            v.problems.append(f"{stream} seq {seq} holds the payload of i={p.get('i')}")
        if stream == "orders":
            order_keys[p["idempotency_key"]] += 1
    for stream, last in last_seq.items():
        got = seqs.get(stream, [])
        v.per_stream[stream] = len(got)
        if got != list(range(1, last + 1)):
            dup = [s for s, n in Counter(got).items() if n > 1]
            missing = sorted(set(range(1, last + 1)) - set(got))
            v.problems.append(f"{stream}: {len(got)} records for seq 1..{last}; missing "
                              f"{missing[:5]}, duplicated {dup[:5]}, in order {got == sorted(got)}")
        if wm.get(stream, 0) != last:
            v.problems.append(f"{stream}: watermark {wm.get(stream)} != {last}")
    lost = [k for k in orders if order_keys[k] == 0]
    twice = [k for k, n in order_keys.items() if n > 1]
    if lost:
        v.problems.append(f"{len(lost)} acknowledged orders never arrived, e.g. {lost[:3]}")
    if twice:
        v.problems.append(f"{len(twice)} orders arrived twice, e.g. {twice[:3]}")
    return v


def last_seqs(journal: Path) -> dict[str, int]:
    """The aircraft's last sequence number per stream."""
    with ro(journal) as c:
        return dict(c.execute("SELECT stream, last_seq FROM stream_seq"))


def python_cmd(*args: str) -> list[str]:
    """``python ARGS`` with this interpreter."""
    return [sys.executable, *args]
