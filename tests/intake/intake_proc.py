"""Hangar intake alone, as a process to cut: ``python -m tests.intake.intake_proc CFG``.

CFG (JSON): ``{"data": dir, "token": str, "roles": {kind: {keys, threshold}}, "chunk_bytes": n}``.
Like the daemon it recovers and migrates the journal in ``data``, prepares the content store,
builds the intake service with the real wiring (:func:`appliance.daemon.build.build_intake`),
starts it (its file recovery), serves the intake router under ``/admin/v1`` on a free loopback
port and prints ``READY port=N``. ``GET /probe`` (tests only) returns the raw rows the power-cut
test checks: ``intake_installed``, the ``content`` catalog rows, the catalog generation and the
uploads. SIGTERM stops it cleanly; the power-cut test SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from appliance.avionics.chain import AvionicsChain
from appliance.content.store import ContentStore
from appliance.content.tables import content
from appliance.daemon.build import build_intake
from appliance.modes.policy import Mode
from appliance.settings import AdminAuthSettings, Settings
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.recovery import recover
from appliance.store.writer import Writer
from appliance.web.admin.auth import AdminAuth
from firmware_bridge.labels import LabelTable


async def main(cfg: dict[str, Any]) -> int:
    data = Path(cfg["data"])
    db = data / "journal.db"
    report = recover(db, 10.0)
    engine = make_engine(db)
    upgrade(engine, db)
    writer = Writer(engine)
    writer.start()
    reader = make_engine(db, readonly=True)
    store = ContentStore(data / "content", writer, reader)
    store.prepare()
    chain = AvionicsChain(LabelTable.default(), initial_mode=Mode.GROUND)
    settings = Settings(data_dir=data, serial={"enabled": False},
                        intake={"roles": cfg["roles"], "chunk_bytes": cfg["chunk_bytes"],
                                "free_margin_bytes": 0, "quiet": "none"})
    auth = AdminAuth([], cfg["token"], AdminAuthSettings())
    router, service = build_intake(settings, chain, writer, reader, store, auth)
    chain.subscribe(service.on_event)
    await service.start()

    app = FastAPI()
    app.include_router(router, prefix="/admin/v1")

    @app.get("/probe")
    def probe() -> dict[str, Any]:
        with reader.connect() as conn:
            rows = [dict(r) for r in conn.execute(select(content).order_by(content.c.id)).mappings()]
        return {"installed": service.installed(), "content": rows,
                "generation": store.generation(), "uploads": service.list_uploads()}

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(f"READY port={sock.getsockname()[1]} recovery={report.state}", flush=True)
    await serving
    writer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()))))
