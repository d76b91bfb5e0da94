"""Intake only on the ground: refused in FLIGHT; an upload cut by take-off resumes after landing."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.errors import PolicyError
from appliance.intake.bundle import METADATA, PAYLOAD
from appliance.modes.events import ModeChanged
from appliance.modes.policy import Mode

from .helpers import KEYS, World, chunks, make_bundle


def set_mode(w: World, mode: Mode) -> None:
    prev, w.mode = w.mode, mode
    w.service.on_event(ModeChanged(0.0, 0.0, "local", str(prev), str(mode), {"replay": True}))


def test_refused_in_flight_and_resumes_after_landing(tmp_path: Path) -> None:
    w = World(tmp_path)
    b = make_bundle(tmp_path, 1, {"film": os.urandom(200_000).hex()}, KEYS[:2])
    env = json.loads((b / METADATA).read_bytes())
    data = (b / PAYLOAD).read_bytes()

    async def scenario() -> None:
        await w.ensure_started()
        w.mode = Mode.FLIGHT
        w.service._mode_now()
        with pytest.raises(PolicyError, match="not allowed in FLIGHT"):
            await w.service.begin(env)
        set_mode(w, Mode.GROUND)
        st = await w.service.begin(env)

        async def takeoff_midway() -> AsyncIterator[bytes]:
            sent = 0
            async for c in chunks(data, 4096):
                if sent >= len(data) // 3:
                    set_mode(w, Mode.FLIGHT)  # take-off while the chunk is arriving
                yield c
                sent += len(c)
        with pytest.raises(PolicyError, match="paused"):
            await w.service.write(st["id"], 0, takeoff_midway())
        st = w.service.status(st["id"])
        assert st["paused"] and 0 < st["received"] < len(data)
        with pytest.raises(PolicyError, match="FLIGHT"):
            await w.service.write(st["id"], st["received"], chunks(data[st["received"]:]))
        with pytest.raises(PolicyError, match="FLIGHT"):
            await w.service.finalize(st["id"])
        # Landing: waiters wake, the upload resumes from the stored offset.
        waiter = asyncio.create_task(w.service.wait_ground())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        set_mode(w, Mode.GROUND)
        await asyncio.wait_for(waiter, 1)
        before = w.service.bytes_stored
        st = await w.service.write(st["id"], st["received"], chunks(data[st["received"]:]))
        assert st["state"] == "complete" and w.service.bytes_stored == len(data)
        assert w.service.bytes_stored - before < len(data)  # only the rest was sent
        await w.service.finalize(st["id"])
        set_mode(w, Mode.FLIGHT)
        with pytest.raises(PolicyError, match="content activation is not allowed in FLIGHT"):
            await w.service.activate(st["id"])
        set_mode(w, Mode.MAINTENANCE)
        await w.service.activate(st["id"])
        await asyncio.sleep(0.05)  # the pause/resume journal tasks

    try:
        asyncio.run(scenario())
        assert "film" in w.served()
        actions = [r["data"]["action"] for r in w.journal()]
        assert "uploads_paused" in actions and "uploads_resumed" in actions
        assert actions[-1] == "activated"
    finally:
        w.close()


def test_content_activation_waits_for_quiet(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.quiet_reason = "3 passengers playing"
    try:
        with pytest.raises(PolicyError, match="quiet cabin: 3 passengers playing"):
            asyncio.run(w.push(make_bundle(tmp_path, 1, {"a": "a"}, KEYS[:2])))
        assert w.served() == {}
        bid = w.service.list_uploads()[0]["id"]
        assert w.service.status(bid)["state"] == "staged"  # kept staged, activated later

        async def later() -> None:
            async def unquiet() -> None:
                await asyncio.sleep(0.1)
                w.quiet_reason = None
            t = asyncio.create_task(unquiet())
            await w.service.activate(bid)
            await t
        asyncio.run(later())
        assert "a" in w.served()
    finally:
        w.close()
