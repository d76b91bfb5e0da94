"""Intake over the real recorded flight (AFR34ZG CDG -> TLS): the mode comes from the chain.

Issue 5: intake in FLIGHT is refused; an upload interrupted by take-off resumes after landing.
The service is wired to an :class:`AvionicsChain` as the daemon does (``chain.mode``, the chain's
clock, ``chain.subscribe(intake.on_event)``) and the chain is fed the replayed ARINC frames.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.daemon.build import content_activator
from appliance.errors import PolicyError
from appliance.intake.bundle import METADATA, PAYLOAD
from appliance.intake.service import IntakeConfig, IntakeService
from appliance.modes.policy import Mode, PolicyTable
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import load
from firmware_bridge.simulator import generate

from .helpers import KEYS, TRUST, World, make_bundle


def utc(h: int, m: int, s: int = 0) -> float:
    return dt.datetime(2024, 7, 6, h, m, s, tzinfo=dt.UTC).timestamp()


TAKEOFF, LANDING = utc(6, 59, 17), utc(7, 58, 43)  # as the chain detects them (tests/modes)


class Replay:
    """The recorded flight fed to ``chain`` in segments, one 1/8 s tick at a time."""

    def __init__(self, flight: Path, chain: AvionicsChain) -> None:
        self.chain = chain
        self.decoder = FrameDecoder()
        self.ticks: Iterator[tuple[float, bytes]] = generate(load(flight))
        self.t = 0.0

    def until(self, stop: float) -> None:
        for t, chunk in self.ticks:
            self.chain.feed_frames(self.decoder.feed(chunk))
            self.t = t
            if t >= stop:
                return


def test_upload_cut_by_takeoff_resumes_after_landing(tmp_path: Path, flight_path: Path) -> None:
    w = World(tmp_path)
    chain = AvionicsChain(LabelTable.default())
    # As build_intake: the mode and the clock are the chain's.
    w.service = IntakeService(
        IntakeConfig(tmp_path / "intake", "F-TEST", chunk_bytes=65536, free_margin_bytes=0,
                     quiet_wait_s=0.3, quiet_poll_s=0.05),
        TRUST, w.writer, w.reader, lambda: chain.mode, PolicyTable.default(),
        chain.utc, {"content": content_activator(w.store)},
        quiet=lambda: None, free_space=lambda p: 1 << 40)
    chain.subscribe(w.service.on_event)  # as the daemon's _start_web
    seen: list[str] = []
    chain.subscribe(lambda ev: seen.append(ev.current) if ev.kind == "mode" else None)
    replay = Replay(flight_path, chain)
    b = make_bundle(tmp_path, 1, {"film": os.urandom(200_000).hex()}, KEYS[:2])
    env = json.loads((b / METADATA).read_bytes())
    data = (b / PAYLOAD).read_bytes()
    piece = 4096

    def mode() -> Mode:  # read afresh (the chain changes it under our feet)
        return chain.mode

    async def scenario() -> None:
        await w.ensure_started()
        svc = w.service
        # (1) Parked at CDG: open the upload and send its first part.
        replay.until(utc(6, 55))
        assert mode() is Mode.GROUND
        st = await svc.begin(env)
        first = len(data) // 4

        async def part(lo: int, hi: int) -> AsyncIterator[bytes]:
            for i in range(lo, hi, piece):
                yield data[i:min(i + piece, hi)]
        st = await svc.write(st["id"], 0, part(0, first))
        bid = st["id"]
        assert st["received"] == first and st["state"] == "receiving" and not st["paused"]

        # (2) The upload goes on while the aircraft taxis and takes off: each chunk arrives after
        # ten more seconds of flight; the chunk after the take-off is refused, the rest kept.
        async def during_takeoff() -> AsyncIterator[bytes]:
            for i in range(first, len(data), piece):
                replay.until(replay.t + 10)
                yield data[i:i + piece]
            pytest.fail("the take-off did not interrupt the upload")
        with pytest.raises(PolicyError, match="paused: the aircraft left the ground"):
            await svc.write(bid, first, during_takeoff())
        assert mode() is Mode.FLIGHT and seen == ["FLIGHT"]
        assert abs(replay.t - TAKEOFF) < 30
        st = svc.status(bid)
        kept = st["received"]
        assert st["paused"] and st["state"] == "receiving" and first < kept < len(data)
        assert (tmp_path / "intake" / "uploads" / f"{bid}.part").stat().st_size == kept

        replay.until(utc(7, 5))  # climbing out of CDG
        await asyncio.sleep(0.05)  # the listener's journal task
        assert mode() is Mode.FLIGHT
        with pytest.raises(PolicyError, match="upload is not allowed in FLIGHT"):
            await svc.write(bid, kept, part(kept, len(data)))
        with pytest.raises(PolicyError, match="hangar intake is not allowed in FLIGHT"):
            await svc.begin(env)
        with pytest.raises(PolicyError, match="staging is not allowed in FLIGHT"):
            await svc.finalize(bid)
        with pytest.raises(PolicyError, match="content activation is not allowed in FLIGHT"):
            await svc.activate(bid)
        assert svc.status(bid)["received"] == kept  # nothing lost, nothing added
        waiter = asyncio.create_task(svc.wait_ground())

        # (3) Through the landing at Toulouse: back to GROUND, the upload resumes where it stopped.
        replay.until(utc(8, 5))  # the recording ends at 08:02:47, parked at TLS
        await asyncio.wait_for(waiter, 1)
        assert mode() is Mode.GROUND and seen == ["FLIGHT", "GROUND"]
        st = await svc.begin(env)  # the hangar asks where to resume
        assert st["received"] == kept and not st["paused"]
        before = svc.bytes_stored
        st = await svc.write(bid, kept, part(kept, len(data)))
        assert st["state"] == "complete" and svc.bytes_stored - before == len(data) - kept
        assert (await svc.finalize(bid))["state"] == "staged"
        await svc.activate(bid)
        await asyncio.sleep(0.05)

    try:
        asyncio.run(scenario())
        assert "film" in w.served()
        rows = w.journal()
        actions = [r["data"]["action"] for r in rows]
        assert actions == ["begin", "uploads_paused", "uploads_resumed", "received", "staged",
                           "activated"], actions
        by = {r["data"]["action"]: r for r in rows}
        assert by["uploads_paused"]["data"]["mode"] == "FLIGHT"
        assert by["uploads_resumed"]["data"]["mode"] == "GROUND"
        # Stamped with the avionics' UTC of the transitions.
        assert by["uploads_paused"]["time_source"] == "avionics"
        assert abs(by["uploads_paused"]["utc"] - TAKEOFF) < 60
        assert abs(by["uploads_resumed"]["utc"] - LANDING) < 600
    finally:
        w.close()
