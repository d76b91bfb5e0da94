"""Benchmark: drain 100,000 queued records over a 1 Mbit/s link (``make bench``).

The aircraft's sync process (:mod:`tests.sync.uplink_proc`, default sync settings) runs in one
network namespace, the ground receiver (SQLite) in another; a veth pair joins them with a
``tc tbf`` of 1 Mbit/s on each side's egress (no loss). The outbox is prefilled with 100,000
records of a realistic mix (orders, usage, events, flight track, health, logs). Printed:

- the drain time, from the process being ready to the receiver holding every record;
- the floor: compressed bytes on the wire (request bodies) / link rate; the ratio time / floor
  (goal: at most 1.1);
- bytes on the wire per record, against the record as plain JSON (key, stream, seq, created,
  payload), and the compression ratio.

Run as root (namespaces): ``python tests/bench/bench_sync.py [--records N] [--rate 1mbit]``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rate", default="1mbit", help="tc rate (bits/s with unit, e.g. 1mbit)")
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
        a_dir, r_dir = tmp / "aircraft", tmp / "ground"
        a_dir.mkdir()
        r_dir.mkdir()
        t = time.monotonic()
        plain = prefill(a_dir / "journal.db", args.records)
        n = outbox_depth(a_dir / "journal.db")
        print(f"prefilled {n} records in {time.monotonic() - t:.1f} s; mean plain JSON "
              f"{plain:.0f} B/record", flush=True)
        cfg_a = appliance_config(tmp / "a.toml", a_dir, f"http://{net.addr_r}:8443", [net.dev_a],
                                 batch_max_records=5000, batch_max_bytes=1_000_000,
                                 request_timeout_s=60.0, retry_max_s=5.0)
        rx_db = r_dir / "ground.db"
        cfg_r = receiver_config(tmp / "r.toml", rx_db, net.addr_r, 8443)
        rx = net.popen("r", ["-m", "ground_receiver", "serve", "--config", str(cfg_r)],
                       stdout=subprocess.DEVNULL, stderr=(tmp / "r.log").open("wb"))
        procs.append(rx)
        time.sleep(1.5)
        ac = net.popen("a", ["-m", "tests.sync.uplink_proc", "--config", str(cfg_a),
                             "--produced", str(tmp / "none.log")], stdout=subprocess.PIPE,
                       stderr=(tmp / "a.log").open("wb"))
        procs.append(ac)
        wait_ready(ac, "aircraft sync process")
        t0 = time.monotonic()
        deadline = t0 + 1800
        while receiver_count(rx_db) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        with ro(rx_db) as c:
            body, batches = c.execute("SELECT sum(body_bytes), count(*) FROM batches").fetchone()
            got = c.execute("SELECT count(*) FROM records WHERE aircraft = ?",
                            (AIRCRAFT,)).fetchone()[0]
        floor = body * 8 / rate_bps
        print()
        print("| records | link | batches | wire bytes | floor (s) | drain (s) | ratio | "
              "B/record wire | B/record JSON | compression |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(f"| {got:,} | {args.rate} tbf | {batches} | {body:,} | {floor:.1f} | {elapsed:.1f} "
              f"| **{elapsed / floor:.3f}x** | {body / got:.1f} | {plain:.1f} | "
              f"{plain * got / body:.1f}x |")
        qd = subprocess.run(["tc", "-s", "-n", net.a, "qdisc", "show", "dev", net.dev_a],
                            capture_output=True, text=True, check=False).stdout
        line = next((x for x in qd.splitlines() if "Sent" in x), "").strip()
        print(f"\naircraft-side tbf: {line}")
        ok = got == n and elapsed / floor <= 1.1
        print(f"\ngoal (drain <= 1.1 x floor): {'met' if ok else 'NOT met'}")
        return 0 if got == n else 1
    finally:
        for p in procs:
            kill(p)
        net.cleanup()


if __name__ == "__main__":
    sys.exit(main())
