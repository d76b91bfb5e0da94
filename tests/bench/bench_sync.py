"""Benchmark: drain 100,000 queued records over a 1 Mbit/s link (``make bench``).

The aircraft's sync process (:mod:`tests.sync.uplink_proc`, default sync settings) runs in one
network namespace, the ground receiver (SQLite) in another; a veth pair joins them with a
``tc tbf`` of 1 Mbit/s on each side's egress (no loss). The outbox is prefilled with 100,000
records of a realistic mix (orders, usage, events, flight track, health, logs). Printed:

- the drain time, from the process being ready to the receiver holding every record, for the
  uplink as before (sockets not paced) and with the link's rate configured (``rate_bps``:
  sockets paced just under it), ``--runs`` drains each (default 3) and their median;
- the floor: compressed bytes on the wire (request bodies) / link rate; the ratio time / floor
  (goal: at most 1.1);
- bytes on the wire per record, against the record as plain JSON (key, stream, seq, created,
  payload), and the compression ratio.

Run as root (namespaces): ``python tests/bench/bench_sync.py [--records N] [--rate 1mbit]``.

Measured 2026-12-02 (2 cores shared, load average 8-17): floor 17.4 s (2.18 MB in 21 batches),
median drain 1.43x not paced, 1.50x paced; the goal of 1.1x is not met here. Why: the receiver
needs ~110-130 ms of CPU per 5,000-record batch (decode and schema check ~35 ms, canonical
JSON, hash and SQLite insert ~80 ms, then a durable commit) against 0.83 s of wire time per
batch; at that load it gets a fraction of a core and answers in 0.5-1.3 s, so the link waits
between batches and after the last one. Fewer statements per batch (one insert for all
streams, one watermark upsert) did not change the CPU per batch measurably (within +-15 %).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.sync.faultrun import (  # noqa: E402
    appliance_config,
    kill,
    outbox_depth,
    receiver_config,
    receiver_count,
    ro,
    wait_ready,
)
from tests.sync.helpers import AIRCRAFT, Journal  # noqa: E402
from tests.sync.netns import NetPair, netns_unavailable  # noqa: E402

MIX = {"orders": 0.05, "usage": 0.2, "events": 0.01, "flight_track": 0.04, "health": 0.2,
       "logs": 0.5}
SKUS = ("COFFEE", "TEA", "WATER", "SANDWICH", "CROISSANT", "WINE", "SNACK_BOX")
LOG_LINES = ("portal session started", "media segment served from cache",
             "captive portal check answered", "DHCP lease renewed", "catalog refreshed",
             "HLS playlist requested", "admin login refused", "bus frame CRC error counted")


def payload(stream: str, i: int, rng: random.Random) -> dict[str, object]:
    """A plausible record of ``stream``."""
    t = 1_720_245_000.0 + i * 0.37
    if stream == "orders":
        return {"idempotency_key": f"ord-{rng.getrandbits(64):016x}",
                "seat": f"{rng.randint(1, 38)}{'ABCDEF'[rng.randint(0, 5)]}",
                "items": [{"sku": rng.choice(SKUS), "qty": rng.randint(1, 3)}
                          for _ in range(rng.randint(1, 3))], "utc": t, "time_source": "avionics"}
    if stream == "usage":
        return {"title": f"tt{rng.randint(1000000, 9999999)}", "seat": f"{rng.randint(1, 38)}C",
                "started": t, "seconds": rng.randint(5, 7200), "bytes": rng.randint(10**5, 10**9),
                "kind": rng.choice(["movie", "series", "audio", "magazine"])}
    if stream == "events":
        return {"kind": "phase", "previous": "CLIMB", "current": "CRUISE", "utc": t,
                "evidence": {"altitude_ft": rng.randint(30000, 39000)}}
    if stream == "flight_track":
        return {"kind": "track", "points": [[round(t + 30 * k, 1), round(43 + rng.random(), 5),
                                             round(1 + rng.random(), 5), rng.randint(0, 39000),
                                             round(rng.uniform(0, 480), 1),
                                             round(rng.uniform(0, 360), 1)] for k in range(3)]}
    if stream == "health":
        return {"subsystem": rng.choice(["journal", "card", "can", "wifi", "disk"]),
                "state": rng.choice(["green", "green", "green", "amber"]), "utc": t,
                "reason": f"check {rng.randint(1, 999)} passed in {rng.randint(1, 80)} ms"}
    return {"level": rng.choice(["INFO", "INFO", "WARNING"]), "logger": "appliance.web",
            "msg": rng.choice(LOG_LINES), "client": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.7",
            "utc": t}


def prefill(journal: Path, n: int) -> float:
    """Queue ``n`` records; returns the mean size of a record as plain JSON (bytes)."""
    rng = random.Random(20240706)
    j = Journal(journal)
    total = 0
    try:
        for stream, share in MIX.items():
            count = int(n * share)
            made: list[dict[str, object]] = []

            def make(i: int, s: str = stream, made: list[dict[str, object]] = made,
                     ) -> dict[str, object]:
                p = payload(s, i, rng)
                made.append(p)
                return p
            keys = j.fill(stream, count, make)
            total += sum(len(json.dumps({"key": k, "stream": stream, "seq": q + 1,
                                         "created": 1_720_245_000.123, "payload": p}))
                         for q, (k, p) in enumerate(zip(keys, made, strict=True)))
    finally:
        j.close()
    return total / sum(int(n * s) for s in MIX.values())


def _drain(d: Path, template: Path, net: NetPair, procs: list[subprocess.Popen[bytes]], n: int,
           rate_bps: float, link: dict[str, object], depth: int = 2,
           ) -> tuple[dict[str, float], int]:
    """One drain of a copy of the prefilled journal into a fresh receiver database."""
    a_dir, r_dir = d / "aircraft", d / "ground"
    a_dir.mkdir(parents=True)
    r_dir.mkdir()
    with sqlite3.connect(template) as src, sqlite3.connect(a_dir / "journal.db") as dst:
        src.backup(dst)
    cfg_a = appliance_config(d / "a.toml", a_dir, f"http://{net.addr_r}:8443", [net.dev_a],
                             batch_max_records=5000, batch_max_bytes=1_000_000,
                             request_timeout_s=60.0, retry_max_s=5.0, link=link,
                             pipeline_depth=depth)
    rx_db = r_dir / "ground.db"
    cfg_r = receiver_config(d / "r.toml", rx_db, net.addr_r, 8443)
    rx = net.popen("r", ["-m", "ground_receiver", "serve", "--config", str(cfg_r)],
                   stdout=subprocess.DEVNULL, stderr=(d / "r.log").open("wb"))
    procs.append(rx)
    time.sleep(1.5)
    ac = net.popen("a", ["-m", "tests.sync.uplink_proc", "--config", str(cfg_a),
                         "--produced", str(d / "none.log")], stdout=subprocess.PIPE,
                   stderr=(d / "a.log").open("wb"))
    procs.append(ac)
    try:
        wait_ready(ac, "aircraft sync process")
        t0 = time.monotonic()
        deadline = t0 + 1800
        while receiver_count(rx_db) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
    finally:
        kill(ac)
        kill(rx)
    with ro(rx_db) as c:
        body, batches = c.execute("SELECT sum(body_bytes), count(*) FROM batches").fetchone()
        got = c.execute("SELECT count(*) FROM records WHERE aircraft = ?",
                        (AIRCRAFT,)).fetchone()[0]
    floor = body * 8 / rate_bps
    return {"body": body, "batches": batches, "floor": floor, "elapsed": elapsed,
            "ratio": elapsed / floor}, int(got)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rate", default="1mbit", help="tc rate (bits/s with unit, e.g. 1mbit)")
    ap.add_argument("--runs", type=int, default=3, help="drains per configuration (median)")
    ap.add_argument("--depth", type=int, default=2, help="sync pipeline_depth (batches on the wire)")
    args = ap.parse_args()
    why = netns_unavailable()
    if why:
        print(f"bench_sync: skipped: {why}")
        return 0
    rate_bps = float(args.rate.lower().replace("mbit", "e6").replace("kbit", "e3"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    net = NetPair(secrets.token_hex(2))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        net.setup(rate=args.rate, loss_pct=0)
        template = tmp / "template.db"
        t = time.monotonic()
        plain = prefill(template, args.records)
        n = outbox_depth(template)
        print(f"prefilled {n} records in {time.monotonic() - t:.1f} s; mean plain JSON "
              f"{plain:.0f} B/record", flush=True)
        results: dict[str, list[float]] = {}
        print()
        print("| sockets | run | records | link | batches | wire bytes | floor (s) | drain (s) | "
              "ratio | B/record wire | B/record JSON | compression |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        ok_all = True
        for label, link in (("not paced (before)", {}), ("paced to the link", {"rate_bps": int(rate_bps)})):
            for run in range(1, args.runs + 1):
                row, got = _drain(tmp / f"{len(results)}-{run}", template, net, procs, n,
                                  rate_bps, link, args.depth)
                ok_all = ok_all and got == n
                results.setdefault(label, []).append(row["ratio"])
                print(f"| {label} | {run} | {got:,} | {args.rate} tbf | {row['batches']} | "
                      f"{row['body']:,} | {row['floor']:.1f} | {row['elapsed']:.1f} | "
                      f"{row['ratio']:.3f}x | {row['body'] / got:.1f} | {plain:.1f} | "
                      f"{plain * got / row['body']:.1f}x |", flush=True)
        print()
        for label, ratios in results.items():
            print(f"{label}: median ratio **{statistics.median(ratios):.3f}x** of {len(ratios)}")
        best = statistics.median(results["paced to the link"])
        with open("/proc/loadavg") as f:
            load = f.read().split()[:3]
        print(f"\ngoal (drain <= 1.1 x floor, paced, median): {'met' if best <= 1.1 else 'NOT met'}"
              f" (load average {load} on {os.cpu_count()} cores)")
        return 0 if ok_all else 1
    finally:
        for p in procs:
            kill(p)
        net.cleanup()


if __name__ == "__main__":
    sys.exit(main())
