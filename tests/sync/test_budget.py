"""Acceptance 4: the outbox over its disk budget drops in the stated order.

Every drop is counted, shows on the admin status, and is reported to the ground (a gap there,
and the watermark moves on).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from appliance.store.models import outbox
from appliance.sync import SyncService
from appliance.sync.budget import BudgetPolicy, drop_groups, enforce_budget
from appliance.sync.queue import OutboxReader
from appliance.sync.tables import sync_drop
from appliance.web.admin.sync import sync_router
from ground_receiver.db import gaps

from .helpers import Journal, chain, outbox_count, running_receiver, settings


def _fill(j: Journal) -> None:
    rng = random.Random(4)
    blob = lambda i: {"i": i, "blob": rng.randbytes(40).hex()}  # noqa: E731
    for stream, n in (("orders", 40), ("usage", 40), ("flight_track", 60), ("health", 200),
                      ("logs", 600)):
        j.fill(stream, n, blob)


def _sizes(j: Journal) -> dict[str, list[int]]:
    from appliance.sync.queue import row_bytes
    with j.reader.connect() as c:
        rows = c.execute(select(outbox.c.stream, row_bytes()).order_by(outbox.c.id)).all()
    out: dict[str, list[int]] = {}
    for s, b in rows:
        out.setdefault(s, []).append(int(b))
    return out


def test_drop_groups_order() -> None:
    pri = {"orders": 0, "usage": 1, "events": 2, "audit": 2, "flight_track": 3,
           "flight_health": 3, "health": 4, "logs": 5}
    assert drop_groups(pri, frozenset({"orders", "usage", "events", "audit"})) == [
        ["logs"], ["health"], ["flight_health", "flight_track"]]


def test_over_budget_drops_lowest_priority_oldest_first_and_counts(journal: Journal) -> None:
    _fill(journal)
    sizes = _sizes(journal)
    total = sum(map(sum, sizes.values()))
    # the budget forces out every log and the oldest 50 health rows, nothing else
    keep = total - sum(sizes["logs"]) - sum(sizes["health"][:50])
    policy = BudgetPolicy(budget_bytes=keep + 1, low_water=1.0)
    drops = journal.writer.submit(lambda c: enforce_budget(c, policy, {}, 1000.0)).result()
    assert [(d.stream, d.seq_lo, d.seq_hi, d.records) for d in drops] == [
        ("logs", 1, 600, 600), ("health", 1, 50, 50)]
    assert drops[0].bytes == sum(sizes["logs"])
    stats = OutboxReader(journal.reader).stats()
    assert stats["logs"].depth == 0 and stats["logs"].dropped_records == 600
    assert stats["health"].depth == 150 and stats["health"].dropped_records == 50
    assert stats["orders"].depth == 40 and stats["orders"].dropped_records == 0
    with journal.reader.connect() as c:
        first_health = c.execute(select(outbox.c.seq).where(outbox.c.stream == "health")
                                 .order_by(outbox.c.seq)).scalars().first()
    assert first_health == 51
    # within budget now: nothing more goes
    assert journal.writer.submit(lambda c: enforce_budget(c, policy, {}, 1001.0)).result() == []


def test_never_drop_streams_and_rows_in_flight_are_kept(journal: Journal) -> None:
    _fill(journal)
    policy = BudgetPolicy(budget_bytes=1000, low_water=1.0)  # impossible: drop what may be
    drops = journal.writer.submit(
        lambda c: enforce_budget(c, policy, {"logs": 100, "health": 10}, 5.0)).result()
    got = {d.stream: (d.seq_lo, d.seq_hi) for d in drops}
    assert got == {"logs": (101, 600), "health": (11, 200), "flight_track": (1, 60)}
    stats = OutboxReader(journal.reader).stats()
    assert stats["logs"].depth == 100 and stats["health"].depth == 10
    assert stats["orders"].depth == 40 and stats["usage"].depth == 40


def test_adjacent_drops_merge_into_one_reported_range(journal: Journal) -> None:
    journal.fill("logs", 100)
    sizes = _sizes(journal)["logs"]
    total = sum(sizes)
    for budget in (total - sum(sizes[:10]), total - sum(sizes[:30])):
        policy = BudgetPolicy(budget_bytes=budget, low_water=1.0)
        journal.writer.submit(lambda c, p=policy: enforce_budget(c, p, {}, 1.0)).result()
    with journal.reader.connect() as c:
        ranges = [(r.seq_lo, r.seq_hi, r.records) for r in c.execute(select(sync_drop))]
    assert ranges == [(1, 30, 30)]


def test_drops_show_on_admin_status_and_reach_the_ground(journal: Journal, tmp_path: Path) -> None:
    _fill(journal)
    sizes = _sizes(journal)
    total = sum(map(sum, sizes.values()))
    budget = int((total - sum(sizes["logs"]) - sum(sizes["health"][:50])) / 0.9) + 1

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            s = settings(tmp_path, rx.url, outbox_budget_bytes=budget, enabled=False)
            svc = SyncService(s, journal.writer, journal.reader, chain())
            await svc.start()
            try:
                app = FastAPI()
                app.include_router(sync_router(svc))
                drops = await svc.check_budget()
                assert [d.stream for d in drops] == ["logs", "health"]
                with TestClient(app) as client:
                    st = client.get("/admin/v1/sync").json()
                    assert client.post("/admin/v1/sync/now").status_code == 202
                assert st["streams"]["logs"]["drops"]["records"] == 600
                assert st["streams"]["health"]["drops"]["records"] == drops[1].records
                assert st["streams"]["orders"]["drops"]["records"] == 0
                assert st["totals"]["dropped_records"] == 600 + drops[1].records
                assert st["streams"]["health"]["depth"] == 200 - drops[1].records
                assert st["totals"]["bytes_queued"] <= budget
                assert [e["type"] for e in st["recent_events"]] == ["RecordsDropped"] * 2
                assert "lowest priority first" in st["totals"]["drop_order"]
            finally:
                await svc.stop()
            # now a link: the drops are declared, the ground records them and moves on
            s = settings(tmp_path, rx.url, outbox_budget_bytes=budget)
            svc = SyncService(s, journal.writer, journal.reader, chain())
            await svc.start()
            try:
                for _ in range(200):
                    if outbox_count(journal.reader) == 0:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await svc.stop()
            assert outbox_count(journal.reader) == 0
            with rx.engine.connect() as c:
                got = sorted((g.stream, g.seq_lo, g.seq_hi) for g in c.execute(select(gaps)))
            assert got == [("health", 1, drops[1].seq_hi), ("logs", 1, 600)]
            wm = rx.store.watermarks("F-SYNC")
            assert wm["logs"] == 600 and wm["health"] == 200
            seqs = sorted(q for s_, q, _ in rx.rows() if s_ == "health")
            assert seqs == list(range(drops[1].seq_hi + 1, 201))
            with journal.reader.connect() as c:
                assert c.execute(select(sync_drop)).first() is None

    asyncio.run(scenario())
