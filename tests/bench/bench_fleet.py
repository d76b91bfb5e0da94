"""Benchmark: a fleet of simulated aircraft uploading to M receivers over one PostgreSQL.

Issue 17, acceptance 1 (``make bench``): 1,000 aircraft (each with its own key, backlog, link
rate and outage; :mod:`tests.receiver.fleetgen`), 4 stateless receiver processes, one private
PostgreSQL server on this machine (partitioned schema, COPY per batch), all on loopback. Printed:

- fleet records/s (first request to last record stored), p99 batch latency (POST to answer),
  failed requests, and whether every record is stored exactly once;
- the floor: the same rows (same columns, hash and canonical JSON as the receiver makes them)
  loaded into the same ``records`` table with one COPY in one transaction, records/s;
- the ratio fleet / floor.

Run: ``python tests/bench/bench_fleet.py [--aircraft 1000] [--receivers 4] [--records 100]``.
Bounded: the fleet stops at ``--deadline`` seconds whatever happened.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, text  # noqa: E402

from ground_receiver.db import init_db  # noqa: E402
from ground_receiver.identity import KeyRing  # noqa: E402
from tests.receiver.conftest import _free_port, pg_unavailable, private_pg  # noqa: E402
from tests.receiver.fleetgen import (  # noqa: E402
    backlog,
    check_exactly_once,
    make_keys,
    run_fleet,
    run_fleet_processes,
)


def start_receivers(db_url: str, n: int, tmp: Path) -> tuple[list[str], list[subprocess.Popen[bytes]]]:
    """``n`` receiver processes on loopback; returns their URLs and processes."""
    ports = [_free_port() for _ in range(n)]
    env = {**os.environ, "GROUND_RECEIVER_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-m", "ground_receiver", "serve", "--host",
                               "127.0.0.1", "--port", str(p), "--database-url", db_url],
                              stdout=(tmp / f"rx{p}.log").open("wb"), stderr=subprocess.STDOUT,
                              env=env, cwd=REPO) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    deadline = time.monotonic() + 60
    for u in urls:
        while True:
            try:
                with urllib.request.urlopen(u + "/v1/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"receiver {u} did not start") from None
                time.sleep(0.2)
    return urls, procs


def profile(out: Path, procs: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    """py-spy (from the venv) on each receiver and on this process; collapsed stacks in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    targets = [(f"rx{i}", p.pid) for i, p in enumerate(procs)] + [("gen", os.getpid())]
    return [subprocess.Popen([spy, "record", "--format", "raw", "--rate", "50", "--nonblocking",
                              *(["--subprocesses"] if name == "gen" else []),
                              "--pid", str(pid), "-o", str(out / f"{name}.txt")],
                             stdout=subprocess.DEVNULL, stderr=(out / f"{name}.log").open("wb"))
            for name, pid in targets]


def copy_floor(db_url: str, aircraft: list[str], per_aircraft: int) -> tuple[int, float]:
    """COPY the same rows into the emptied ``records`` in one transaction: (rows, seconds)."""
    engine = create_engine(db_url)
    rows = []
    now = time.time()
    for ac in aircraft:
        for stream, recs in backlog(ac, per_aircraft).items():
            for r in recs:
                canon = json.dumps(json.loads(r.payload_json), sort_keys=True,
                                   separators=(",", ":"), ensure_ascii=False)
                rows.append((ac, stream, r.seq, f"{ac}:{stream}:{r.seq}", r.created, now,
                             "floor", hashlib.sha256(canon.encode()).hexdigest(), canon))
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE records"))
    raw = engine.raw_connection()
    try:
        t0 = time.monotonic()
        with raw.driver_connection.cursor() as cur, cur.copy(  # type: ignore[union-attr]
                "COPY records (aircraft, stream, seq, idempotency_key, created, received, "
                "batch_id, sha256, payload) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        raw.commit()
        elapsed = time.monotonic() - t0
    finally:
        raw.close()
        engine.dispose()
    return len(rows), elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--aircraft", type=int, default=1000)
    ap.add_argument("--receivers", type=int, default=4)
    ap.add_argument("--records", type=int, default=100, help="backlog per aircraft")
    ap.add_argument("--deadline", type=float, default=900.0)
    ap.add_argument("--ramp", type=float, default=0.0,
                    help="aircraft start spread uniformly over this many seconds (0: all at once)")
    ap.add_argument("--per-request", action="store_true",
                    help="a new receiver pick and connection for every request (no keep-alive)")
    ap.add_argument("--procs", type=int, default=2,
                    help="generator processes (aircraft split between them)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="directory: py-spy records each receiver and the generator "
                         "(collapsed stacks, rx*.txt and gen.txt)")
    args = ap.parse_args()
    why = pg_unavailable()
    if why:
        print(f"bench_fleet: skipped: {why}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    with private_pg(max_connections=16 * args.receivers + 20) as pg:
        engine = create_engine(pg.url)
        init_db(engine)
        t = time.monotonic()
        keys = make_keys(tmp, args.aircraft)
        ring = KeyRing(engine)
        for ac, key in keys.items():
            ring.register(ac, key.public_b64)
        print(f"{args.aircraft} aircraft keys made and registered in {time.monotonic() - t:.1f} s",
              flush=True)
        urls, procs = start_receivers(pg.url, args.receivers, tmp)
        spies = [] if args.profile is None else profile(args.profile, procs)
        try:
            kw = {"deadline_s": args.deadline, "ramp_s": args.ramp,
                  "sticky": not args.per_request}
            result = (asyncio.run(run_fleet(urls, keys, args.records, **kw)) if args.procs == 1
                      else run_fleet_processes(urls, tmp, list(keys), args.records, args.procs,
                                               **kw))
        finally:
            for spy in spies:
                spy.send_signal(2)  # py-spy writes its profile on SIGINT
            for spy in spies:
                spy.wait(60)
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        problems = check_exactly_once(engine, keys, args.records)
        with engine.connect() as c:
            stored = c.execute(text("SELECT count(*) FROM records")).scalar_one()
        engine.dispose()
        n_floor, t_floor = copy_floor(pg.url, list(keys), args.records)
    floor = n_floor / t_floor
    print()
    print(f"\nramp: aircraft start over {args.ramp:g} s; connections: "
          f"{'new per request' if args.per_request else 'kept per aircraft (L4 balancer)'}; "
          f"generator processes: {args.procs}")
    print("| aircraft | receivers | records | fleet (s) | fleet records/s | batches | p99 batch "
          "latency | failed requests | COPY floor records/s | fleet / floor | exactly once |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.aircraft:,} | {args.receivers} | {stored:,} | {result.elapsed_s:.1f} | "
          f"{result.records_per_s:,.0f} | {len(result.latencies_s):,} | {result.p99_s * 1000:.0f} ms "
          f"| {result.failures} | {floor:,.0f} | **{result.records_per_s / floor:.3f}** | "
          f"{'yes' if not problems and not result.unfinished else 'NO'} |")
    if result.failure_kinds:
        print("failed requests:", ", ".join(f"{k} x{n}" for k, n in
                                           sorted(result.failure_kinds.items(), key=lambda i: -i[1])[:5]))
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {f.read().split()[:3]} (2 cores)")
    for p in problems[:10]:
        print("problem:", p)
    if result.unfinished:
        print(f"unfinished at the deadline: {len(result.unfinished)} aircraft")
    return 0 if not problems and not result.unfinished else 1


if __name__ == "__main__":
    sys.exit(main())
