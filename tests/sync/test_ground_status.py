"""The appliance tells the ground what the fleet view shows: BITE, software and content versions.

Before: the real uplink put only the backlog in each batch's ``status``; BITE and versions in the
fleet view came from the simulated fleet only. Here the daemon's own status source
(:func:`appliance.daemon.groundinfo.ground_info`, over a real :class:`Bite` with a subsystem
added amber, as the daemon adds its own) is handed to the sync service, the real uplink drains
a journal into a real receiver over loopback, and the receiver's fleet view must hold that BITE
(per subsystem), the appliance's version and the installed content version.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from appliance import __version__
from appliance.daemon.bite import Bite
from appliance.daemon.groundinfo import ground_info
from appliance.store.recovery import RecoveryReport
from appliance.store.writer import WriterStats
from appliance.sync import SyncService
from ground_receiver.fleet import fleet_rows

from .helpers import AIRCRAFT, Journal, chain, outbox_count, running_receiver, settings


def test_the_real_uplink_carries_bite_software_and_content_to_the_fleet_view(
        tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db")
    j.fill("orders", 20)
    c = chain()
    bite = Bite(c, tmp_path, RecoveryReport("green", "journal ok", 0.0), WriterStats())
    bite.add("cabin_network", lambda: {"state": "amber", "reason": "one access point down"})
    info = ground_info(bite, lambda: "content 7")

    async def scenario() -> None:
        async with running_receiver(f"sqlite:///{tmp_path}/ground.db") as rx:
            svc = SyncService(settings(tmp_path, rx.url), j.writer, j.reader, c,
                              ground_info=info)
            await svc.start()
            try:
                deadline = time.monotonic() + 20
                while outbox_count(j.reader) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            finally:
                await svc.stop()
            assert outbox_count(j.reader) == 0
            (row,) = [r for r in fleet_rows(rx.engine) if r["aircraft"] == AIRCRAFT]
            assert row["software"] == __version__
            assert row["content"] == "content 7"
            assert row["bite"]["cabin_network"] == "amber", row["bite"]
            assert row["bite"]["journal"] in ("green", "amber", "red")
            assert row["bite"]["overall"] in ("amber", "red"), row["bite"]
            assert "orders" in row["backlog"]

    try:
        asyncio.run(scenario())
    finally:
        j.close()
