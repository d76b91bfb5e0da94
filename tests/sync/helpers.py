"""Shared helpers of the sync tests: a migrated journal, records, an in-loop receiver."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine, select

from appliance.avionics.chain import AvionicsChain
from appliance.modes.policy import Mode
from appliance.settings import Settings
from appliance.store.outbox import enqueue
from firmware_bridge.labels import LabelTable
from ground_receiver.app import create_app
from ground_receiver.db import init_db
from ground_receiver.db import make_engine as receiver_engine
from ground_receiver.db import records as rx_records
from ground_receiver.settings import ReceiverSettings
from ground_receiver.store import BatchStore
from tests.store_fixture import MigratedJournal

AIRCRAFT = "F-SYNC"
TOKEN = "sync-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Journal(MigratedJournal):
    """A migrated journal database with its writer and a read engine, and outbox filling."""

    def fill(self, stream: str, n: int, payload: Callable[[int], dict[str, Any]] | None = None,
             aircraft: str = AIRCRAFT) -> list[str]:
        """Enqueue ``n`` records on ``stream`` (1000 per commit); returns their keys."""
        keys: list[str] = []
        make = payload or (lambda i: {"i": i, "stream": stream, "text": f"record {i} of {stream}"})
        for lo in range(0, n, 1000):
            def write(conn: Any, lo: int = lo) -> list[str]:
                return [enqueue(conn, aircraft, stream, make(i)) for i in range(lo, min(n, lo + 1000))]
            keys += self.writer.submit(write).result()
        return keys


def settings(tmp: Path, url: str, **sync: Any) -> Settings:
    base: dict[str, Any] = {
        "enabled": True, "receiver_url": url, "token": TOKEN,
        "links": {"gatelink": {"interfaces": ["lo"]}}, "retry_initial_s": 0.05,
        "retry_max_s": 0.5, "retry_attempts": 3, "probe_interval_s": 1.0,
        "request_timeout_s": 5.0, "connect_timeout_s": 2.0, "budget_check_s": 3600,
        "status_refresh_s": 3600, "summaries": False}
    base.update(sync)
    return Settings(aircraft_id=AIRCRAFT, data_dir=tmp, serial={"enabled": False}, sync=base)


def chain(mode: Mode = Mode.GROUND) -> AvionicsChain:
    return AvionicsChain(LabelTable.default(), initial_mode=mode)


class Receiver:
    """The real receiver app served by uvicorn inside the test's event loop (loopback)."""

    def __init__(self, db_url: str, **overrides: Any) -> None:
        self.engine = receiver_engine(db_url)
        init_db(self.engine)
        self.settings = ReceiverSettings(database_url=db_url, aircraft={AIRCRAFT: TOKEN},
                                         **overrides)
        self.store = BatchStore(self.engine, self.settings.reorder_wait_s)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cfg = uvicorn.Config(create_app(self.settings, self.store), host="127.0.0.1",
                             port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(cfg)
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 5)

    def rows(self) -> list[tuple[str, int, Any]]:
        """(stream, seq, payload) in arrival order."""
        with self.engine.connect() as conn:
            return [(r.stream, int(r.seq), r.payload) for r in conn.execute(
                select(rx_records.c.stream, rx_records.c.seq, rx_records.c.payload)
                .order_by(rx_records.c.id))]


@contextlib.asynccontextmanager
async def running_receiver(db_url: str, **kw: Any) -> AsyncIterator[Receiver]:
    rx = Receiver(db_url, **kw)
    await rx.start()
    try:
        yield rx
    finally:
        await rx.stop()


def outbox_count(reader: Engine) -> int:
    from sqlalchemy import func

    from appliance.store.models import outbox
    with reader.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())
