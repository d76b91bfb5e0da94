"""Acceptance 3: in flight over satcom, only the priority streams go, within the hourly budget.

The aircraft is in FLIGHT (the chain's mode), both links' interface is ``lo`` and the receiver is
on loopback; the policy table closes gatelink in flight and gives satcom ``priority``. The
clock the sync sees is driven by the test, an hour at a time, so a multi-hour flight takes a few
seconds: in every flight hour the bytes carried (requests and answers, headers included) stay
within ``bytes_per_flight_hour``, only orders and usage reach the ground, and logs and health
wait in the outbox until the aircraft is on the ground with gatelink.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from appliance.modes.events import ModeChanged, TimeSource
from appliance.modes.policy import Mode, PolicyTable
from appliance.sync import SyncService
from appliance.sync.policy import FlightHourBudget, allowed_streams, link_scope

from .helpers import Journal, chain, outbox_count, running_receiver, settings

BUDGET = 30_000  # bytes per flight hour


def test_policy_scopes_from_the_table() -> None:
    table = PolicyTable.default()
    assert link_scope(table, Mode.FLIGHT, "satcom") == "priority"
    assert link_scope(table, Mode.FLIGHT, "gatelink") == "none"
    assert link_scope(table, Mode.GROUND, "gatelink") == "all"
    assert link_scope(table, Mode.GROUND, "nosuchlink") == "none"
    assert allowed_streams("priority", ["orders", "logs", "usage"], ["usage", "orders"]) == [
        "orders", "usage"]


def test_flight_hour_budget_windows() -> None:
    b = FlightHourBudget(1000)
    b.take_off(10_000.0)
    assert b.remaining(10_000.0) == 1000
    b.charge(700, 10_100.0)
    assert b.remaining(13_599.0) == 300
    assert b.remaining(13_600.0) == 1000  # second flight hour
    assert b.next_window_in(13_700.0) == 3500.0
    b.charge(1500, 13_700.0)
    assert b.remaining(13_800.0) == 0
    b.landed(20_000.0)
    assert b.remaining(20_000.0) == 1000


def test_flight_over_satcom_sends_only_priority_streams_within_budget(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    rng = random.Random(3)
    for stream, n in (("orders", 150), ("usage", 150), ("logs", 400), ("health", 100)):
        j.fill(stream, n, lambda i: {"i": i, "blob": rng.randbytes(200).hex()})  # ~incompressible
    now = [1_800_000_000.0]

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            s = settings(tmp_path, rx.url, priority_streams=["orders", "usage"], links={
                "gatelink": {"interfaces": ["lo"]},
                "satcom": {"interfaces": ["lo"], "bytes_per_flight_hour": BUDGET}})
            ch = chain(Mode.FLIGHT)
            svc = SyncService(s, j.writer, j.reader, ch, clock=lambda: now[0])
            await svc.start()
            # take-off: the first flight hour starts now
            ch.events.send(ModeChanged(0.0, now[0], TimeSource.LOCAL, Mode.GROUND, Mode.FLIGHT, {}))
            budget = svc.uplink.budgets["satcom"]
            used_per_hour = []
            links_seen = set()
            try:
                for _hour in range(40):
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline:
                        links_seen.add(svc.uplink.active_link)
                        if svc.uplink.state in ("over_budget", "idle"):
                            break
                        await asyncio.sleep(0.02)
                    used_per_hour.append(budget.used)
                    if svc.uplink.state == "idle":
                        break
                    now[0] += 3600.0  # the next flight hour
                    svc.uplink.nudge()
                    await asyncio.sleep(0.05)
                got = {st for st, _, _ in rx.rows()}
                assert got == {"orders", "usage"}, got
                counts = {st: sum(1 for r in rx.rows() if r[0] == st) for st in got}
                assert counts == {"orders": 150, "usage": 150}
                assert max(used_per_hour) <= BUDGET, used_per_hour
                assert len(used_per_hour) >= 3, f"the budget never held anything back: {used_per_hour}"
                assert links_seen <= {"satcom", None}, links_seen
                assert outbox_count(j.reader) == 500  # logs and health wait for the ground
                total = sum(c.wire_bytes for c in svc.uplink.clients.values())
                assert total <= BUDGET * len(used_per_hour)
                print(f"\nsatcom: {len(used_per_hour)} flight hours, bytes per hour {used_per_hour}")
                # landing: gatelink opens and the rest goes
                ch.events.send(ModeChanged(0.0, now[0], TimeSource.LOCAL, Mode.FLIGHT, Mode.GROUND,
                                           {}))
                ch.mode = Mode.GROUND
                deadline = time.monotonic() + 20
                while outbox_count(j.reader) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert outbox_count(j.reader) == 0
                assert svc.uplink.active_link == "gatelink"
            finally:
                await svc.stop()
                j.close()

    asyncio.run(scenario())


def test_in_flight_summaries_ride_satcom_by_default_within_budget(tmp_path: Path) -> None:
    """Issue 17: the track and health summaries reach the ground in flight, not at the gate.

    Default settings (priority streams and satcom budget as shipped); one flight hour of
    summaries as the agents write them (a track record per 20 points, a health summary), plus
    orders, raw health checks and logs. Before: the summaries waited for the gate.
    """
    from appliance.settings import SyncSettings

    defaults = SyncSettings()
    j = Journal(tmp_path / "journal.db")
    rng = random.Random(5)
    j.fill("orders", 30)
    j.fill("flight_track", 6, lambda i: {"kind": "track", "points": [
        [1_800_000_000.0 + 30 * k, round(43 + rng.random(), 5), round(1 + rng.random(), 5),
         rng.randint(30000, 39000), 450.0, 180.0] for k in range(20)]})
    j.fill("flight_health", 6, lambda i: {"kind": "health", "subsystems": {
        s: {"state": "green", "changes": 0} for s in ("journal", "card", "can", "wifi", "disk")}})
    j.fill("logs", 100)
    j.fill("health", 50)
    now = [1_800_000_000.0]

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            s = settings(tmp_path, rx.url, links={
                "gatelink": {"interfaces": ["lo"]},
                "satcom": {"interfaces": ["lo"],
                           "bytes_per_flight_hour": defaults.links["satcom"].bytes_per_flight_hour}})
            assert s.sync.priority_streams == defaults.priority_streams  # as shipped
            ch = chain(Mode.FLIGHT)
            svc = SyncService(s, j.writer, j.reader, ch, clock=lambda: now[0])
            await svc.start()
            ch.events.send(ModeChanged(0.0, now[0], TimeSource.LOCAL, Mode.GROUND, Mode.FLIGHT, {}))
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and svc.uplink.state != "idle":
                    await asyncio.sleep(0.05)
                got = {st: sum(1 for r in rx.rows() if r[0] == st) for st, _, _ in rx.rows()}
                assert got.get("flight_track") == 6 and got.get("flight_health") == 6, got
                assert "logs" not in got and "health" not in got, got
                budget = svc.uplink.budgets["satcom"]
                assert 0 < budget.used <= budget.per_hour
                print(f"\nsatcom in flight: {got}, {budget.used:,} of {budget.per_hour:,} B/h")
            finally:
                await svc.stop()
                j.close()

    asyncio.run(scenario())
