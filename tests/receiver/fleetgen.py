"""A fleet load generator (issue 17): N simulated aircraft uploading to M receivers, loopback only.

Each simulated aircraft is an asyncio task with its own Ed25519 key (registered on the ground),
its own backlog (records of several streams, in memory), its own link rate and its own outage.
It goes through the uplink's real code for everything but the journal: batches are built by
:func:`appliance.sync.batch.build_batch` (over an in-memory outbox with the journal reader's
``items`` contract) and sent, signed, by :class:`appliance.sync.client.ReceiverClient`; it
resumes from the receiver's watermarks after any failure, as the uplink does. Receivers are
behind a layer-4 load balancer: an aircraft's connection lands on a receiver picked at random
and is kept (HTTP keep-alive) for its requests; after a failed request the aircraft reconnects
and may land elsewhere (``sticky=False``: a new pick, and a new connection, for every request).
A link's rate is simulated by holding each body for ``len(body) * 8 / rate`` seconds before it
is sent. Aircraft do not all reach the gate the same second: with ``ramp_s`` each starts at a
moment drawn uniformly in ``[0, ramp_s)`` (0: all at once).

Bounded: every aircraft stops at ``deadline_s`` whatever happened; the requests go to the
receivers' loopback URLs only.

:func:`run_fleet` returns a :class:`FleetResult` (records/s, p99 batch latency);
:func:`check_exactly_once` reads the database and lists every record missing or stored twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from appliance.sync.batch import BatchLimits, build_batch
from appliance.sync.client import ReceiverClient
from appliance.sync.errors import ReceiverRejected, ReceiverUnavailable
from appliance.sync.identity import AircraftKey
from appliance.sync.queue import Record

STREAMS = (("orders", 0), ("usage", 1), ("events", 2), ("flight_track", 3), ("health", 4),
           ("logs", 5))
MIX = {"orders": 0.05, "usage": 0.2, "events": 0.01, "flight_track": 0.04, "health": 0.2,
       "logs": 0.5}


#: The simulated flight every aircraft is on (its track records name it; no health summary yet).
FLIGHT_START = "2024-07-06T05:00:00+00:00"

DEFAULT_LIMITS = BatchLimits(max_records=500, max_bytes=200_000, level=3)


def payload(stream: str, ac: str, seq: int) -> dict[str, Any]:
    """A plausible record of ``stream`` (deterministic: the COPY floor uses the same rows)."""
    rng = random.Random(f"{ac}:{stream}:{seq}")
    t = 1_720_245_000.0 + seq * 0.37
    if stream == "orders":
        return {"idempotency_key": f"ord-{ac}-{seq}", "seat": f"{rng.randint(1, 38)}C",
                "items": [{"sku": "COFFEE", "qty": rng.randint(1, 3)}], "utc": t}
    if stream == "usage":
        return {"title": f"tt{rng.randint(1000000, 9999999)}", "seat": f"{rng.randint(1, 38)}A",
                "started": t, "seconds": rng.randint(5, 7200), "kind": "movie"}
    if stream == "health":
        return {"subsystem": rng.choice(["journal", "card", "can", "wifi"]), "state": "green",
                "utc": t, "reason": f"check {rng.randint(1, 999)} passed"}
    if stream == "flight_track":
        return {"kind": "track", "flight_id": f"{ac}-{FLIGHT_START}",  # in flight since then
                "points": [[t, round(43 + rng.random(), 5),
                                             round(1 + rng.random(), 5), rng.randint(0, 39000)]]}
    return {"level": "INFO", "logger": "appliance.web", "msg": "portal session started",
            "utc": t, "n": rng.randint(0, 10**6)}


def backlog(ac: str, n: int) -> dict[str, list[Record]]:
    """``n`` records of the usual mix for aircraft ``ac`` (seq 1.. per stream)."""
    out: dict[str, list[Record]] = {}
    for stream, share in MIX.items():
        k = max(1, round(n * share))
        out[stream] = [Record(q, 1_720_245_000.0 + q, json.dumps(payload(stream, ac, q)))
                       for q in range(1, k + 1)]
    return out


class MemoryOutbox:
    """An aircraft's backlog with the journal reader's ``items`` contract (no holes, no drops)."""

    def __init__(self, rows: dict[str, list[Record]]) -> None:
        self.rows = rows

    def items(self, stream: str, after: int, max_records: int, max_bytes: int,
              ) -> tuple[list[Any], int | None]:
        recs = self.rows.get(stream, [])
        out: list[Any] = []
        size = 0
        for r in recs[after:after + max_records]:  # seq q is at index q - 1
            if out and size + len(r.payload_json) > max_bytes:
                break
            out.append(r)
            size += len(r.payload_json)
        return out, None


@dataclass
class FleetResult:
    """What a run measured."""

    aircraft: int
    records: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def p99_s(self) -> float:
        if len(self.latencies_s) < 2:
            return max(self.latencies_s, default=0.0)
        return statistics.quantiles(self.latencies_s, n=100)[98]


async def _aircraft(ac: str, key: AircraftKey, urls: Sequence[str], rows: dict[str, list[Record]],
                    rate_bps: float, outage: tuple[float, float], deadline: float,
                    result: FleetResult, limits: BatchLimits, rng: random.Random,
                    max_batches: int, start_s: float = 0.0, sticky: bool = True) -> None:
    if start_s:
        await asyncio.sleep(start_s)
    outbox = MemoryOutbox(rows)
    want = {s: len(r) for s, r in rows.items()}
    clients: dict[str, ReceiverClient] = {}
    url = rng.choice(urls)
    t_start = time.monotonic()
    out_at, out_for = outage
    cursors: dict[str, int] | None = None
    sent = failed = 0
    try:
        while time.monotonic() < deadline:
            if out_for and time.monotonic() - t_start >= out_at:
                await asyncio.sleep(out_for)  # the link is down: nothing goes out
                out_for = 0.0
                cursors = None
            if not sticky:
                url = rng.choice(urls)
            client = clients.get(url)
            if client is None:
                client = clients[url] = ReceiverClient(url, "", key=key, connect_timeout_s=10,
                                                       request_timeout_s=60)
            try:
                if cursors is None:
                    cursors = await client.watermarks()
                if all(cursors.get(s, 0) >= n for s, n in want.items()):
                    return
                status = {"backlog": {s: n - cursors.get(s, 0) for s, n in want.items()},
                          "bite": {"journal": "green", "card": "green",
                                   "wifi": "amber" if rng.random() < 0.1 else "green"},
                          "software": "1.4.2", "content": "2026-11"}
                batch = build_batch(outbox, ac, STREAMS, cursors, limits,  # type: ignore[arg-type]
                                    status=status)
                await asyncio.sleep(len(batch.body) * 8 / rate_bps)  # the link carries it
                t0 = time.monotonic()
                answer = await client.post(batch)
                result.latencies_s.append(time.monotonic() - t0)
                sent += 1
                if sent >= max_batches:
                    return  # the rest stays on board (a short gate visit)
                went = all(answer["watermarks"].get(s, 0) >= e for s, e in batch.end.items())
                cursors = answer["watermarks"] if went and not answer["errors"] else None
            except (ReceiverUnavailable, ReceiverRejected) as e:
                result.failures += 1
                kind = str(e).split(":")[0:3]
                result.failure_kinds[":".join(kind)[:80]] = \
                    result.failure_kinds.get(":".join(kind)[:80], 0) + 1
                cursors = None  # resume from the watermarks, as the uplink does
                await clients.pop(url).aclose()  # reconnect, maybe to another receiver
                url = rng.choice(urls)
                failed += 1  # full-jitter exponential backoff, as the uplink's
                await asyncio.sleep(rng.uniform(0, min(8.0, 0.2 * 2 ** min(failed, 6))))
                continue
            failed = 0
        result.unfinished.append(ac)
    finally:
        for c in clients.values():
            await c.aclose()


async def run_fleet(urls: Sequence[str], keys: dict[str, AircraftKey], records_per_aircraft: int,
                    *, seed: int = 17, deadline_s: float = 600.0,
                    rate_bps: tuple[float, float] = (2e6, 20e6), outage_share: float = 0.2,
                    during: Callable[[], Any] | None = None,
                    limits: BatchLimits = DEFAULT_LIMITS, max_batches: int = 10**9,
                    ramp_s: float = 0.0, sticky: bool = True) -> FleetResult:
    """Run every aircraft of ``keys`` until its backlog is on the ground (or the deadline).

    ``rate_bps``: each aircraft's link rate is drawn in this range; ``outage_share`` of them go
    down once for 0.5-2 s at a random moment. ``during``: an async callable run alongside (the
    faults of a test: kill a receiver, restart the database). ``max_batches``: an aircraft
    stops after sending that many (its backlog stays partly on board). ``ramp_s`` and
    ``sticky``: see the module doc.
    """
    rng = random.Random(seed)
    total = sum(sum(len(r) for r in backlog(ac, records_per_aircraft).values()) for ac in keys)
    result = FleetResult(len(keys), total, 0.0)
    deadline = time.monotonic() + deadline_s
    tasks = []
    t0 = time.monotonic()
    for ac, key in keys.items():
        outage = ((rng.uniform(0, 3), rng.uniform(0.5, 2.0)) if rng.random() < outage_share
                  else (0.0, 0.0))
        tasks.append(_aircraft(ac, key, urls, backlog(ac, records_per_aircraft),
                               rng.uniform(*rate_bps), outage, deadline, result, limits,
                               random.Random(rng.random()), max_batches,
                               rng.uniform(0, ramp_s) if ramp_s else 0.0, sticky))
    extra = [during()] if during is not None else []
    await asyncio.gather(*tasks, *extra)
    result.elapsed_s = time.monotonic() - t0
    return result


def _fleet_part(urls: list[str], key_dir: str, aircraft: list[str], records: int, seed: int,
                start_at: float, kw: dict[str, Any]) -> FleetResult:
    """One generator process: its aircraft (keys from ``key_dir``), from ``start_at`` (epoch s)."""
    keys = {ac: AircraftKey.load(ac, Path(key_dir) / f"{ac}.pem") for ac in aircraft}
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(run_fleet(urls, keys, records, seed=seed, **kw))


def run_fleet_processes(urls: Sequence[str], key_dir: Path, aircraft: Sequence[str],
                        records_per_aircraft: int, processes: int, **kw: Any) -> FleetResult:
    """:func:`run_fleet` with the aircraft split over ``processes`` generator processes.

    One Python process cannot drive a thousand HTTP clients without becoming the bottleneck
    itself; aircraft are separate machines anyway. ``kw``: :func:`run_fleet`'s options (no
    ``during``). The result merges the parts (``elapsed_s``: the longest part, all started
    together).
    """
    import concurrent.futures
    import multiprocessing

    parts = [list(aircraft[i::processes]) for i in range(processes)]
    start_at = time.time() + 2.0
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        futs = [pool.submit(_fleet_part, list(urls), str(key_dir), part, records_per_aircraft,
                            17 + i, start_at, kw) for i, part in enumerate(parts) if part]
        results = [f.result() for f in futs]
    out = FleetResult(sum(r.aircraft for r in results), sum(r.records for r in results),
                      max(r.elapsed_s for r in results))
    for r in results:
        out.latencies_s += r.latencies_s
        out.failures += r.failures
        out.unfinished += r.unfinished
        for k, n in r.failure_kinds.items():
            out.failure_kinds[k] = out.failure_kinds.get(k, 0) + n
    return out


def make_keys(tmp: Path, n: int, prefix: str = "F-S") -> dict[str, AircraftKey]:
    """``n`` aircraft ids with a fresh key each (files under ``tmp``)."""
    keys = {}
    for i in range(n):
        ac = f"{prefix}{i:04d}"
        AircraftKey.generate(tmp / f"{ac}.pem")
        keys[ac] = AircraftKey.load(ac, tmp / f"{ac}.pem")
    return keys


def check_exactly_once(engine: Engine, keys: dict[str, AircraftKey],
                       records_per_aircraft: int) -> list[str]:
    """Every problem found: a record missing, stored twice, out of its range, or a conflict."""
    problems = []
    with engine.connect() as c:
        got = {(a, s): (n, d, lo, hi) for a, s, n, d, lo, hi in c.execute(text(
            "SELECT aircraft, stream, count(*), count(DISTINCT seq), min(seq), max(seq) "
            "FROM records GROUP BY aircraft, stream"))}
        conflicts = c.execute(text("SELECT count(*) FROM conflicts")).scalar_one()
    if conflicts:
        problems.append(f"{conflicts} conflicts")
    for ac in keys:
        for stream, rows in backlog(ac, records_per_aircraft).items():
            n = len(rows)
            if got.get((ac, stream)) != (n, n, 1, n):
                problems.append(f"{ac} {stream}: want {n} once (1..{n}), got "
                                f"(count, distinct, min, max) = {got.get((ac, stream))}")
    return problems
