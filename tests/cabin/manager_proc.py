"""The cabin network manager alone, as a process to cut: ``python -m tests.cabin.manager_proc CFG``.

CFG (JSON): ``{"db": path, "mode": "GROUND"|"FLIGHT", "settings": {cabin_network...},
"reboots": [[device, key], ...]}``. It recovers and migrates the journal like the daemon, builds
the service with the real wiring, starts it in ``mode``, submits the reboot jobs (idempotent keys:
after a restart the same job comes back, not a new one), prints ``READY`` and then, every 0.2 s,
``IDLE`` once every device is in the mode's configuration and no job is queued or running.
SIGTERM stops it cleanly; the power-cut test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from appliance.avionics.chain import AvionicsChain
from appliance.daemon.build import build_cabin_network
from appliance.modes.policy import Mode
from appliance.settings import AdminAuthSettings, Settings
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.recovery import recover
from appliance.store.writer import Writer
from appliance.web.admin.auth import AdminAuth
from firmware_bridge.labels import LabelTable


async def main(cfg: dict) -> int:  # type: ignore[type-arg]
    db = Path(cfg["db"])
    report = recover(db, 10.0)
    engine = make_engine(db)
    upgrade(engine, db)
    writer = Writer(engine)
    writer.start()
    reader = make_engine(db, readonly=True)
    chain = AvionicsChain(LabelTable.default(), initial_mode=Mode(cfg["mode"]))
    settings = Settings(data_dir=db.parent, serial={"enabled": False},
                        cabin_network=cfg["settings"])
    _, svc = build_cabin_network(settings, chain, writer, reader,
                                 AdminAuth([], None, AdminAuthSettings()))
    await svc.start()
    for device, key in cfg.get("reboots", []):
        await svc.submit(device, "reboot", None, "power-cut-test", key)
    print(f"READY recovery={report.state}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        st = svc.status()
        if st["converged"] == st["devices"] and not svc.active_jobs():
            print("IDLE", flush=True)
        await asyncio.sleep(0.2)
    await svc.stop()
    writer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
