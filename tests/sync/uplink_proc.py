"""The appliance's sync as its own process, for the fault tests (link cuts, kills, power cuts).

``python -m tests.sync.uplink_proc --config CFG --produced FILE [--orders N --rate R]``

Builds what the daemon builds for sync — migrations, the single writer, a read engine, the
avionics chain (no bus source: its mode stays the journal's), :class:`~appliance.content.orders.Orders`
and :class:`~appliance.sync.SyncService` — and, as the load, places ``N`` passenger orders at
``R`` per second through the real :meth:`Orders.place` (order row and outbox record in one
durable transaction). Each order acknowledged (the commit returned) is appended to ``FILE`` as
its idempotency key; after a restart the feeder continues after the last key in the file (a key
placed again is recognised by the orders table). The sync status is written to
``<FILE>.status.json`` every 0.5 s. SIGTERM stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

from appliance.avionics.chain import AvionicsChain
from appliance.content.orders import Orders
from appliance.modes.policy import Mode
from appliance.settings import load_settings
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.sync import SyncService
from firmware_bridge.labels import LabelTable


async def run(args: argparse.Namespace) -> int:
    s = load_settings(args.config)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(s.journal_path, synchronous=s.journal_synchronous)
    await asyncio.to_thread(upgrade, engine, s.journal_path)
    writer = Writer(engine)
    writer.start()
    reader = make_engine(s.journal_path, readonly=True)
    chain = AvionicsChain(LabelTable.default(), initial_mode=Mode(args.mode))
    orders = Orders(writer, reader, s.aircraft_id, lambda: (time.time(), "local"))
    sync = SyncService(s, writer, reader, chain)
    await sync.start()
    produced = Path(args.produced)
    done = produced.read_text().split() if produced.exists() else []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)

    async def feed() -> None:
        with produced.open("a") as out:
            for i in range(len(done), args.orders):
                key = f"order-{args.tag}-{i:06d}"
                await orders.place(key, f"{1 + i % 30}C", [{"sku": "COFFEE", "qty": 1 + i % 3}])
                out.write(key + "\n")
                out.flush()
                await asyncio.sleep(1.0 / args.rate)

    async def report() -> None:
        tmp = produced.with_suffix(".status.tmp")
        while True:
            tmp.write_text(json.dumps(sync.status(), default=str))
            os.replace(tmp, produced.with_suffix(".status.json"))
            await sync.refresh()
            await asyncio.sleep(0.5)

    tasks = [asyncio.create_task(feed()), asyncio.create_task(report())]
    await stop.wait()
    for t in tasks:
        t.cancel()
    await sync.stop()
    await asyncio.to_thread(writer.stop, 10.0)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--produced", required=True)
    ap.add_argument("--orders", type=int, default=0)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--tag", default="t")
    ap.add_argument("--mode", default="GROUND")
    args = ap.parse_args()
    logging.basicConfig(level=os.environ.get("UPLINK_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
