"""Two receiver processes behind one database, one aircraft's batches racing through both.

Eight client threads each loop: ask a receiver for the watermark, then send the next 40 records
of a stream from there to one of the two receivers (chosen at random), half of the time under
the batch id every thread uses for that chunk (a replay), else under a fresh id. So the same
records arrive concurrently through both processes, as they would from an aircraft retrying
across a load balancer. At the end each record is stored exactly once, in order, and the
watermark is the last seq. Runs on a real PostgreSQL server and on SQLite.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import zstandard
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
AC, TOKEN = "F-RACE", "race-token-0123456789abc"
STREAMS = {"orders": 1200, "usage": 800}
CHUNK = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(stream: str, start: int, end: int) -> bytes:
    doc = {"v": 1, "aircraft": AC, "batch_id": f"{AC}:{stream}:{start}", "sent": 0.0,
           "streams": [{"stream": stream, "records": [
               {"seq": q, "created": float(q), "payload": {"n": q, "stream": stream}}
               for q in range(start, end + 1)]}]}
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


def _request(url: str, body: bytes | None = None, batch_id: str = "") -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if body is not None:
        headers |= {"Content-Type": "application/json", "Content-Encoding": "zstd",
                    "Idempotency-Key": batch_id}
    req = urllib.request.Request(url, data=body, headers=headers,
                                 method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.load(r))


def _rebatch(body: bytes, batch_id: str) -> bytes:
    doc = json.loads(zstandard.ZstdDecompressor().decompress(body))
    doc["batch_id"] = batch_id
    return zstandard.ZstdCompressor().compress(json.dumps(doc).encode())


def _run_race(db_url: str, tmp: Path) -> None:
    cfg = tmp / "ground.toml"
    cfg.write_text(f'[aircraft]\n"{AC}" = "{TOKEN}"\n')
    ports = [_free_port(), _free_port()]
    logs = [(tmp / f"rx{i}.log").open("ab") for i in range(2)]
    env = {**os.environ, "GROUND_RECEIVER_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-m", "ground_receiver", "serve", "--config",
                               str(cfg), "--host", "127.0.0.1", "--port", str(p),
                               "--database-url", db_url], stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=REPO) for p, log in zip(ports, logs, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    answers: list[dict[str, object]] = []
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 30
        for u in urls:
            while True:
                try:
                    _request(u + "/v1/health")
                    break
                except (urllib.error.URLError, OSError):
                    assert time.monotonic() < deadline, "receivers did not start"
                    time.sleep(0.1)

        def client(seed: int) -> None:
            rng = random.Random(seed)
            stop_at = time.monotonic() + 90
            for _ in range(3000):  # bounded in count and time
                if time.monotonic() > stop_at:
                    errors.append(f"client {seed} ran out of time")
                    return
                wm = _request(rng.choice(urls) + "/v1/watermarks")["watermarks"]
                todo = [s for s, n in STREAMS.items() if wm.get(s, 0) < n]  # type: ignore[attr-defined]
                if not todo:
                    return
                stream = rng.choice(todo)
                start = int(wm.get(stream, 0)) + 1  # type: ignore[attr-defined]
                body = _body(stream, start, min(start + CHUNK - 1, STREAMS[stream]))
                bid = f"{AC}:{stream}:{start}"
                if rng.random() < 0.5:
                    bid = f"{bid}:{seed}:{rng.getrandbits(32)}"
                    body = _rebatch(body, bid)
                try:
                    answers.append(_request(rng.choice(urls) + "/v1/batches", body, bid))
                except urllib.error.HTTPError as e:
                    errors.append(f"{e.code} {e.read()[:200]!r}")
                    return

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:5]
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(5)
        for log in logs:
            log.close()
    engine = create_engine(db_url)
    with engine.connect() as c:
        rows = c.execute(text("SELECT stream, seq FROM records WHERE aircraft = :a ORDER BY id"),
                         {"a": AC}).all()
        wm = dict(c.execute(text("SELECT stream, seq FROM watermarks WHERE aircraft = :a"),
                            {"a": AC}).all())
        bad = c.execute(text("SELECT count(*) FROM conflicts")).scalar_one()
    engine.dispose()
    for stream, n in STREAMS.items():
        seqs = [q for s, q in rows if s == stream]
        assert seqs == list(range(1, n + 1)), f"{stream}: {len(seqs)} rows, not 1..{n} in order"
    assert wm == STREAMS and bad == 0
    dups = sum(int(a["duplicates"]) for a in answers)  # type: ignore[call-overload]
    replays = sum(1 for a in answers if a["duplicate"])
    print(f"\n{len(answers)} batches through 2 receivers: {dups} duplicate records skipped, "
          f"{replays} batch replays, {sum(len(a['errors']) for a in answers)} gap refusals")  # type: ignore[arg-type]
    assert dups > 0, "the clients never raced: the test proved nothing"


@pytest.mark.timeout(240)
def test_two_receivers_one_postgresql_no_duplicate(pg_server: str, tmp_path: Path) -> None:
    from ground_receiver.db import init_db, metadata

    engine = create_engine(pg_server)
    metadata.drop_all(engine)
    init_db(engine)
    engine.dispose()
    _run_race(pg_server, tmp_path)


@pytest.mark.timeout(240)
def test_two_receivers_one_sqlite_file_no_duplicate(tmp_path: Path) -> None:
    _run_race(f"sqlite:///{tmp_path}/ground.db", tmp_path)
