"""The soak (``make test-soak``, not in CI): phones, a hostile client and a recorded flight, for minutes.

The real service (``appliance run``, fake systemd watchdog with ``WatchdogSec=10s``, the unit's
``LimitNOFILE``) reads the card simulator playing the whole AFR34ZG flight onto a pty, slowed so that
it spans the soak. Meanwhile, on loopback:

- ``--phones`` simulated phones (300), each from its own source address 127.0.X.Y, browse as a
  passenger does: flight info, the catalog, the captive API, a media range now and then, and place
  an order every minute or two (a fresh idempotency key, items from the menu, its own seat);
  every acknowledged order (201, or 200 for a retry) is remembered;
- one hostile client cycles through the attacks of issue 13: an 8 MiB JSON array and 100 MiB
  streamed bodies, NaN and lone surrogates, 40 parallel wrong logins, an order flood, an unknown
  SKU, 200 slow-header connections.

At the end the service is stopped (SIGTERM) and judged: every acknowledged order is in the journal
(0 lost), the mode changed exactly GROUND -> FLIGHT -> GROUND near the recording's truth (0 false
mode changes), no watchdog gap reached ``WatchdogSec`` (0 misses), the process never restarted
(one PID, alive to the end). It prints p50/p99 of the flight API as the phones saw it and the
peak RSS. Exit status 0 only if every check holds.

    python -m tests.soak.soak --minutes 10 [--phones 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from firmware_bridge.recording import load
from tests.e2e.service import start_card
from tests.hostile.helpers import (
    LIMIT_NOFILE,
    MEMORY_MAX_MIB,
    WATCHDOG_USEC,
    HostileService,
    SlowClients,
    raw_request,
    repeated,
)

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "var/cache/AFR34ZG_CDG-TLS_2024-07-06.jsonl"
TAKEOFF = "06:59:2"  # the recording's truth: take-off 06:59:17-21, landing 07:58:43-47 UTC
MENU = ("COFFEE", "TEA", "WATER")
#: The hostile client's addresses (127.0.200.x): its lockouts must not hit the phones or the monitor.
HOSTILE = "127.0.200.3"


@dataclass
class Tally:
    """What the phones and the hostile client saw."""

    flight_ms: list[float] = field(default_factory=list)
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)
    attacks: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def phone_address(i: int) -> str:
    """Phone ``i``'s source address: 127.0.X.Y (never .0 or .255)."""
    return f"127.0.{10 + i // 250}.{1 + i % 250}"


async def phone(i: int, port: int, until: float, tally: Tally) -> None:
    """One passenger's phone until ``until`` (monotonic)."""
    rng = random.Random(i)
    seat = f"{1 + i % 40}{'ABCDEF'[i // 40 % 6]}"
    transport = httpx.AsyncHTTPTransport(local_address=phone_address(i), retries=0)
    next_order = time.monotonic() + rng.uniform(5, 90)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", transport=transport,
                                 timeout=20.0) as client:
        await asyncio.sleep(rng.uniform(0, 5))
        while time.monotonic() < until:
            try:
                t0 = time.perf_counter()
                r = await client.get("/api/v1/flight")
                tally.flight_ms.append((time.perf_counter() - t0) * 1000)
                tally.requests += 1
                if r.status_code != 200:
                    tally.error(f"flight {r.status_code}")
                if rng.random() < 0.3:
                    await client.get(rng.choice(("/api/v1/catalog", "/api/captive",
                                                 "/api/v1/survey")))
                    tally.requests += 1
                if time.monotonic() >= next_order:
                    next_order = time.monotonic() + rng.uniform(60, 120)
                    key = f"soak-{i}-{uuid.uuid4().hex[:12]}"
                    order = {"idempotency_key": key, "seat": seat,
                             "items": [{"sku": rng.choice(MENU), "qty": rng.randint(1, 3)}]}
                    r = await client.post("/api/v1/orders", json=order)
                    tally.requests += 1
                    if r.status_code in (200, 201):
                        tally.acked.add(key)
                    else:
                        tally.refused[r.status_code] = tally.refused.get(r.status_code, 0) + 1
            except httpx.HTTPError as e:
                tally.error(type(e).__name__)
            await asyncio.sleep(rng.uniform(2.0, 5.0))


def hostile(svc: HostileService, until: float, tally: Tally) -> None:
    """The hostile client (a thread): issue 13's attacks in a cycle until ``until``."""
    p, a = svc.passenger_port, svc.admin_port
    nan_order = b'{"idempotency_key":"hostile-nan-1","seat":"1A","items":[{"sku":"TEA","qty":NaN}]}'
    surrogate = b'{"user":"\\ud800","password":"x"}'
    big_array = b"[" + b"{}," * ((8 << 20) // 3) + b"{}]"

    def flood() -> None:
        for n in range(200):
            body = json.dumps({"idempotency_key": f"flood-{uuid.uuid4().hex}", "seat": "9Z",
                               "items": [{"sku": "TEA", "qty": 1}]}).encode()
            raw_request(p, "POST", "/api/v1/orders", body, source="127.0.200.1", timeout=10)
            if n % 50 == 0 and time.monotonic() > until:
                return

    def parallel_logins() -> None:
        body = b'{"user":"maint","password":"wrong-password"}'
        threads = [threading.Thread(target=raw_request, args=(a, "POST", "/admin/v1/login", body),
                                    kwargs={"source": "127.0.200.2", "timeout": 30})
                   for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def slow_headers() -> None:
        slow = SlowClients(p, 200, sources=20)
        try:
            for _ in range(15):
                slow.step()
                time.sleep(1.0)
        finally:
            slow.close()

    attacks = {
        "8MiB_array": lambda: raw_request(p, "POST", "/api/v1/orders", big_array, source=HOSTILE,
                                          timeout=30),
        "100MiB_login": lambda: raw_request(a, "POST", "/admin/v1/login",
                                            repeated(100 << 20, b"a"), chunked=True,
                                            source=HOSTILE, timeout=60),
        "nan": lambda: raw_request(p, "POST", "/api/v1/orders", nan_order, source=HOSTILE,
                                   timeout=10),
        "surrogate": lambda: raw_request(a, "POST", "/admin/v1/login", surrogate, source=HOSTILE,
                                         timeout=10),
        "parallel_logins": parallel_logins,
        "flood": flood,
        "unknown_sku": lambda: raw_request(
            p, "POST", "/api/v1/orders",
            b'{"idempotency_key":"hostile-sku-1","seat":"2B","items":[{"sku":"CAVIAR","qty":1}]}',
            source=HOSTILE, timeout=10),
        "slow_headers": slow_headers,
    }
    while time.monotonic() < until:
        for name, attack in attacks.items():
            if time.monotonic() >= until:
                return
            try:
                attack()
            except OSError:
                pass  # a refused or cut connection is the expected answer to several of these
            tally.attacks[name] = tally.attacks.get(name, 0) + 1
            time.sleep(2.0)


async def run_phones(n: int, port: int, until: float, tally: Tally) -> None:
    await asyncio.gather(*(phone(i, port, until, tally) for i in range(n)))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else values[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--phones", type=int, default=300)
    args = ap.parse_args()
    soak_s = args.minutes * 60
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    traj = load(RECORDING)
    speed = (traj.end - traj.start) / (soak_s * 0.85)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    svc = HostileService(work, serial=True, nofile=LIMIT_NOFILE, card_speed=speed,
                         extra_config="log_level = \"WARNING\"\n")
    svc.start()
    card = start_card(RECORDING, svc.card_link, speed)
    try:
        return soak(args, svc, card, soak_s, speed, work)
    finally:  # whatever happened: no service or simulator left behind
        card.kill()
        svc.close()


def soak(args: argparse.Namespace, svc: HostileService, card: subprocess.Popen[bytes],
         soak_s: float, speed: float, work: Path) -> int:
    """Run the phones and the hostile client for ``soak_s``, then judge (see the module doc)."""
    pid = svc.pid
    tally = Tally()
    t0 = time.monotonic()
    until = t0 + soak_s
    print(f"soak: {args.minutes:g} min, {args.phones} phones, flight at x{speed:.1f}, "
          f"service pid {pid}, data {work}", flush=True)
    bad = threading.Thread(target=hostile, args=(svc, until, tally), daemon=True)
    bad.start()
    peak_rss = 0.0

    async def watch() -> None:
        nonlocal peak_rss
        while time.monotonic() < until:
            await asyncio.sleep(10)
            if svc.alive():
                peak_rss = max(peak_rss, svc.peak_rss_mib())
            try:
                m = svc.admin("/admin/v1/status")["mode"] if svc.alive() else "DEAD"
            except OSError as e:  # urllib's HTTPError is an OSError
                m = f"status: {e}"[:40]
            print(f"  t={time.monotonic() - t0:5.0f} s  mode {m:7}  requests {tally.requests}  "
                  f"acked orders {len(tally.acked)}  attacks {sum(tally.attacks.values())}  "
                  f"peak RSS {peak_rss:.0f} MiB", flush=True)

    async def both() -> None:
        await asyncio.gather(run_phones(args.phones, svc.passenger_port, until, tally), watch())

    asyncio.run(both())
    bad.join(120)
    alive = svc.alive() and svc.pid == pid
    peak_rss = max(peak_rss, svc.peak_rss_mib() if svc.alive() else 0.0)
    assert svc.notify is not None
    gap = svc.notify.max_watchdog_gap(t0, time.monotonic())
    card.terminate()
    card.wait(10)
    rc = svc.stop(30)
    db = sqlite3.connect(work / "data" / "journal.db")
    stored = {k for (k,) in db.execute("SELECT idempotency_key FROM orders")}
    modes = [json.loads(d) for (d,) in db.execute(
        "SELECT data FROM journal WHERE kind = 'mode' ORDER BY id")]
    utcs = [u for (u,) in db.execute("SELECT utc FROM journal WHERE kind = 'mode' ORDER BY id")]
    lost = tally.acked - stored
    changes = [(m.get("previous"), m.get("current")) for m in modes if m.get("previous")]
    takeoff_utc = time.strftime("%H:%M:%S", time.gmtime(utcs[1])) if len(utcs) > 1 else "-"
    expected = [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    checks = {
        "0 acknowledged orders lost": not lost,
        "0 false mode changes": changes == expected and takeoff_utc.startswith(TAKEOFF[:7]),
        f"0 watchdog misses (max gap {gap:.2f} s < {WATCHDOG_USEC / 1e6:.0f} s)":
            gap < WATCHDOG_USEC / 1e6,
        "never restarted (one PID, alive to the end, clean stop)": alive and rc == 0,
        f"peak RSS under the unit's MemoryMax ({MEMORY_MAX_MIB} MiB)": peak_rss < MEMORY_MAX_MIB,
    }
    print(f"\nflight API as the phones saw it: n={len(tally.flight_ms)}, "
          f"p50 {pct(tally.flight_ms, 0.5):.1f} ms, p99 {pct(tally.flight_ms, 0.99):.1f} ms, "
          f"max {max(tally.flight_ms, default=float('nan')):.1f} ms")
    print(f"requests {tally.requests}; client errors {tally.errors}; orders acknowledged "
          f"{len(tally.acked)}, refused by status {tally.refused}; attacks run {tally.attacks}")
    print(f"mode changes {changes} (take-off at {takeoff_utc} UTC); peak RSS {peak_rss:.0f} MiB")
    for what, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    if lost:
        print(f"  lost: {sorted(lost)[:10]}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
