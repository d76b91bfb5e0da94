"""Acceptance 1: a real network that comes and goes, and processes that die.

The aircraft's sync process (:mod:`tests.sync.uplink_proc`: the real SyncService, writer, orders)
runs in one network namespace, the ground receiver (``python -m ground_receiver serve``, SQLite)
in another, joined by a veth pair with a 1 Mbit/s tbf on each side and 5 % random loss on input
in each namespace (nftables ``numgen``). During the upload of ~16,000 prefilled records on five
streams plus orders placed while it runs, the link is cut and restored 10 times (device down, or
a silent drop-everything fade), the receiver is killed (SIGKILL) twice while a batch is on the
wire and restarted, and the aircraft process is killed once mid-upload and restarted. Then:
every record arrives, none twice, in order per stream; every acknowledged order arrives once.

The soak variant (``-m soak``, ``make test-sync-soak``) does 40 cuts, 6 receiver kills and 3
aircraft restarts over more data.
"""

from __future__ import annotations

import random
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from .faultrun import (
    appliance_config,
    check_ground_truth,
    kill,
    last_seqs,
    outbox_depth,
    read_status,
    receiver_config,
    receiver_count,
    wait_ready,
)
from .helpers import Journal
from .netns import NetPair, netns_unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.system,
              pytest.mark.skipif(netns_unavailable() is not None, reason=netns_unavailable() or "")]

PORT = 8443
PREFILL = {"usage": 6000, "events": 300, "flight_track": 1500, "health": 2500, "logs": 6000}


def _prefill(journal: Path, scale: float) -> dict[str, int]:
    j = Journal(journal)
    rng = random.Random(8)
    counts = {s: int(n * scale) for s, n in PREFILL.items()}
    try:
        for stream, n in counts.items():
            j.fill(stream, n, lambda i, s=stream: {"i": i, "stream": s,
                                                   "blob": rng.randbytes(150).hex()})
    finally:
        j.close()
    return counts


def _run(tmp: Path, *, cuts: int, rx_kills: int, ac_kills: int, scale: float, orders: int,
         seed: int) -> None:
    rng = random.Random(seed)
    net = NetPair(secrets.token_hex(2))
    procs: dict[str, subprocess.Popen[bytes] | None] = {"a": None, "r": None}
    a_dir, r_dir = tmp / "aircraft", tmp / "ground"
    a_dir.mkdir()
    r_dir.mkdir()
    produced = tmp / "orders.log"
    journal, rx_db = a_dir / "journal.db", r_dir / "ground.db"
    log_a, log_r = (tmp / "aircraft.log").open("ab"), (tmp / "ground.log").open("ab")
    try:
        net.setup(rate="1mbit", loss_pct=5)
        prefilled = _prefill(journal, scale)
        cfg_a = appliance_config(tmp / "aircraft.toml", a_dir, f"http://{net.addr_r}:{PORT}",
                                 [net.dev_a])
        cfg_r = receiver_config(tmp / "ground.toml", rx_db, net.addr_r, PORT)

        def start_receiver() -> None:
            procs["r"] = net.popen("r", ["-m", "ground_receiver", "serve", "--config", str(cfg_r)],
                                   stdout=log_r, stderr=subprocess.STDOUT)

        def start_aircraft() -> None:
            p = net.popen("a", ["-m", "tests.sync.uplink_proc", "--config", str(cfg_a),
                                "--produced", str(produced), "--orders", str(orders),
                                "--rate", "25", "--tag", f"s{seed}"],
                          stdout=subprocess.PIPE, stderr=log_a)
            procs["a"] = p
            wait_ready(p, "aircraft sync process")

        start_receiver()
        start_aircraft()

        def state() -> str:
            return str(read_status(produced).get("state"))

        def wait_sending(limit: float = 30.0) -> bool:
            """Wait (bounded) until a batch is on the wire; False if it never is."""
            deadline = time.monotonic() + limit
            while time.monotonic() < deadline:
                if state() == "sending" and receiver_count(rx_db) > 0:
                    return True
                time.sleep(0.05)
            return False

        # the plan: kills early (big backlog), each after a cut; the remaining cuts after them
        kills: list[str] = []
        r, a = rx_kills, ac_kills
        while r or a:
            if r:
                kills.append("rx")
                r -= 1
            if a:
                kills.append("ac")
                a -= 1
        plan = [e for k in kills for e in ("cut", k)]
        plan += ["cut"] * (cuts - plan.count("cut"))
        seen = {"cut": 0, "rx": 0, "ac": 0}
        mid_batch = []
        for ev in plan:
            assert wait_sending(60), f"no batch on the wire before {ev}: {read_status(produced)}"
            time.sleep(rng.uniform(0.2, 1.2))
            if ev == "cut":
                fade = seen["cut"] % 2 == 1
                net.fade(True) if fade else net.link_down()
                time.sleep(rng.uniform(0.8, 2.5))
                net.fade(False) if fade else net.link_up()
            elif ev == "rx":
                mid_batch.append(state())
                kill(procs["r"])
                time.sleep(rng.uniform(0.5, 1.5))
                start_receiver()
            else:
                mid_batch.append(state())
                kill(procs["a"])
                time.sleep(rng.uniform(0.2, 1.0))
                start_aircraft()
            seen[ev] += 1
            time.sleep(rng.uniform(1.0, 2.0))
        assert seen == {"cut": cuts, "rx": rx_kills, "ac": ac_kills}
        assert all(s == "sending" for s in mid_batch), mid_batch

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            done = produced.exists() and len(produced.read_text().split()) >= orders
            if done and outbox_depth(journal) == 0:
                break
            time.sleep(0.5)
        status = read_status(produced)
        assert outbox_depth(journal) == 0, f"outbox not drained: {status}"
        keys = produced.read_text().split()
        assert len(keys) == orders
        verdict = check_ground_truth(rx_db, last_seqs(journal), prefilled, keys)
        print(f"\nreceived per stream: {verdict.per_stream}; uplink: {status.get('uplink')}")
        assert verdict.ok, verdict.problems
        assert status["uplink"]["batch_failures"] >= 1
    finally:
        for p in procs.values():
            kill(p)
        net.cleanup()
        log_a.close()
        log_r.close()


@pytest.mark.timeout(420)
def test_every_record_once_in_order_over_a_lossy_cut_link(tmp_path: Path) -> None:
    t0 = time.monotonic()
    _run(tmp_path, cuts=10, rx_kills=2, ac_kills=1, scale=1.0, orders=1200, seed=1)
    print(f"acceptance 1 run: {time.monotonic() - t0:.1f} s")


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_many_cuts_and_kills(tmp_path: Path) -> None:
    _run(tmp_path, cuts=40, rx_kills=6, ac_kills=3, scale=3.0, orders=5000, seed=2)

