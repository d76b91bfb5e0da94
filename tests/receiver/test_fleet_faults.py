"""Fleet faults (issue 17, acceptance 2): receivers killed and PostgreSQL restarted mid-run.

Before: the receiver had never seen more than one aircraft. Here 30 simulated aircraft (the
uplink's batch builder and client, each with its own key, backlog, link rate and outage) upload
through two stateless receiver processes over one real PostgreSQL (partitioned schema, COPY).
During the run one receiver is killed (SIGKILL) and started again, and then PostgreSQL itself is
restarted (fast shutdown: every connection cut). At the end every record of every aircraft is
stored exactly once and nothing is in ``conflicts``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from appliance.sync.batch import BatchLimits
from ground_receiver.db import init_db, metadata
from ground_receiver.identity import KeyRing

from .conftest import PG_SERVERS, _free_port
from .fleetgen import check_exactly_once, make_keys, run_fleet

REPO = Path(__file__).resolve().parents[2]


class Receivers:
    """Receiver processes on loopback ports over one database (start, kill, restart)."""

    def __init__(self, db_url: str, n: int, tmp: Path) -> None:
        self.db_url, self.tmp = db_url, tmp
        self.ports = [_free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n

    def start(self, i: int) -> None:
        env = {**os.environ, "GROUND_RECEIVER_LOG_LEVEL": "WARNING",
               "GROUND_RECEIVER_REORDER_WAIT_S": "1.0"}
        log = (self.tmp / f"rx{i}.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "ground_receiver", "serve", "--host", "127.0.0.1", "--port",
             str(self.ports[i]), "--database-url", self.db_url], stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.urls[i] + "/v1/health", timeout=2):
                    return
            except OSError:
                assert time.monotonic() < deadline, f"receiver {i} did not start"
                time.sleep(0.1)

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop_all(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


@pytest.fixture
def receivers(pg_server: str, tmp_path: Path) -> Iterator[Receivers]:
    engine = create_engine(pg_server)
    metadata.drop_all(engine)
    init_db(engine)
    engine.dispose()
    rx = Receivers(pg_server, 2, tmp_path)
    try:
        for i in range(2):
            rx.start(i)
        yield rx
    finally:
        rx.stop_all()


@pytest.mark.timeout(300)
def test_receiver_killed_and_postgresql_restarted_nothing_lost_nothing_twice(
        receivers: Receivers, pg_server: str, tmp_path: Path) -> None:
    n_aircraft, per_aircraft = 30, 300
    keys = make_keys(tmp_path, n_aircraft)
    engine = create_engine(pg_server)
    ring = KeyRing(engine)
    for ac, key in keys.items():
        ring.register(ac, key.public_b64)
    faults: list[str] = []

    async def faults_during_run() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(receivers.kill, 0)
        faults.append("receiver 0 killed")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(receivers.start, 0)
        faults.append("receiver 0 restarted")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(PG_SERVERS[pg_server].restart)
        faults.append("postgresql restarted")

    result = asyncio.run(run_fleet(receivers.urls, keys, per_aircraft, deadline_s=180,
                                   rate_bps=(1e6, 4e6), during=faults_during_run,
                                   limits=BatchLimits(max_records=60, max_bytes=50_000, level=3)))
    engine.dispose()
    engine = create_engine(pg_server)
    problems = check_exactly_once(engine, keys, per_aircraft)
    engine.dispose()
    print(f"\n{result.records} records of {n_aircraft} aircraft in {result.elapsed_s:.1f} s, "
          f"{len(result.latencies_s)} batches, {result.failures} failed requests; {faults}")
    assert faults == ["receiver 0 killed", "receiver 0 restarted", "postgresql restarted"]
    assert not result.unfinished, result.unfinished[:5]
    assert not problems, problems[:10]
    assert result.failures > 0, "no request failed: the faults proved nothing"
    # many batches each (5 planned; a batch whose answer was lost is retried whole and counted
    # once, and the retry may carry the next one too): faults hit mid-run
    assert len(result.latencies_s) >= 4 * n_aircraft
