"""Hangar conditions (issue 13): a stalled body, a full disk, colliding paths; unit level.

The same cases run against the real service in ``tests/hostile`` (the stalled PUT with a resuming
push, disk full at finalize on a tmpfs, the colliding manifest).
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import InsufficientStorage, IntakeError, UploadStalled
from appliance.intake import archive
from appliance.intake.bundle import METADATA, PAYLOAD, colliding_paths, floor_clock

from .helpers import KEYS, World, chunks, make_bundle, run


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    object.__setattr__(w.service.cfg, "idle_timeout_s", 0.3)
    yield w
    w.close()


def _bundle(w: World, size: int = 200_000) -> tuple[Path, bytes]:
    b = make_bundle(w.tmp, 1, {"book": "x" * size}, KEYS[:2])
    return b, (b / PAYLOAD).read_bytes()


async def _begin(w: World, b: Path) -> dict[str, Any]:
    await w.ensure_started()
    return await w.service.begin(json.loads((b / METADATA).read_bytes()))


async def _stalls_after(data: bytes) -> AsyncIterator[bytes]:
    yield data
    await asyncio.sleep(3600)  # the connection stays open, nothing more comes


def test_a_stalled_body_is_dropped_keeping_its_bytes_and_a_resume_finishes(world: World) -> None:
    b, data = _bundle(world)
    half = len(data) // 2

    async def go() -> dict[str, Any]:
        st = await _begin(world, b)
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(UploadStalled, match=r"no bytes for 0\.3 s"):
            await world.service.write(st["id"], 0, _stalls_after(data[:half]))
        assert asyncio.get_running_loop().time() - t0 < 2.0
        st = await world.service.get_status(st["id"])
        assert st["received"] == half and st["state"] == "receiving"  # durable, free again
        st = await world.service.write(st["id"], half, chunks(data[half:]))
        return await world.service.finalize(st["id"])

    assert run(go())["state"] == "staged"


def test_a_second_connection_waits_at_most_the_idle_timeout(world: World) -> None:
    b, data = _bundle(world)

    async def go() -> None:
        st = await _begin(world, b)
        first = asyncio.create_task(world.service.write(st["id"], 0, _stalls_after(data[:100])))
        await asyncio.sleep(0.05)
        # Either the holder was dropped in time (wrong offset now) or the wait was bounded: both
        # answer within about the idle timeout, never hang.
        with pytest.raises(IntakeError, match=r"another connection|resume offset"):
            await asyncio.wait_for(world.service.write(st["id"], 0, chunks(data)), 2.0)
        with pytest.raises(UploadStalled):
            await first

    run(go())


def test_a_chunk_that_does_not_fit_beside_the_reserve_is_refused_before_writing(
        world: World) -> None:
    b, data = _bundle(world)

    async def go() -> None:
        st = await _begin(world, b)
        world.free = world.service.cfg.journal_reserve_bytes + 100  # something else filled the disk
        with pytest.raises(InsufficientStorage, match="journal's reserve"):
            await world.service.write(st["id"], 0, chunks(data))
        assert (await world.service.get_status(st["id"]))["received"] == 0
        world.free = 1 << 40
        st = await world.service.write(st["id"], 0, chunks(data))
        assert st["state"] == "complete"

    run(go())


def test_finalize_without_room_to_unpack_is_refused_and_leaves_nothing(world: World) -> None:
    b, data = _bundle(world)

    async def go() -> None:
        st = await _begin(world, b)
        await world.service.write(st["id"], 0, chunks(data))
        world.free = world.service.cfg.journal_reserve_bytes + 1000
        with pytest.raises(InsufficientStorage, match="unpacking"):
            await world.service.finalize(st["id"])
        assert (await world.service.get_status(st["id"]))["state"] == "complete"  # retry later
        assert not list((world.tmp / "intake" / "unpack").iterdir())
        world.free = 1 << 40
        assert (await world.service.finalize(st["id"]))["state"] == "staged"

    run(go())


def test_disk_full_while_unpacking_removes_the_partial_unpacking(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    b, data = _bundle(world)
    real = archive._write_checked

    def full(*a: Any, **kw: Any) -> None:
        real(*a, **kw)
        raise OSError(errno.ENOSPC, "No space left on device")

    async def go() -> None:
        st = await _begin(world, b)
        await world.service.write(st["id"], 0, chunks(data))
        monkeypatch.setattr(archive, "_write_checked", full)
        with pytest.raises(InsufficientStorage, match="filled up while unpacking"):
            await world.service.finalize(st["id"])
        assert not list((world.tmp / "intake" / "unpack").iterdir())
        assert not list((world.tmp / "intake" / "staged").iterdir())
        assert (await world.service.get_status(st["id"]))["state"] == "complete"
        monkeypatch.setattr(archive, "_write_checked", real)
        assert (await world.service.finalize(st["id"]))["state"] == "staged"

    run(go())


@pytest.mark.parametrize("paths,collision", [
    (["a/b", "a/c", "d"], None),
    (["x", "x/y"], "'x' is both a file and a directory"),
    (["p/q/r", "p/q"], "'p/q' is both a file and a directory"),
    (["Book/a", "book/a"], "equal but for case"),
    (["x.html", "x"], None),
])
def test_colliding_paths(paths: list[str], collision: str | None) -> None:
    reason = colliding_paths(paths)
    assert (reason is None) if collision is None else (collision in (reason or "")), reason


@pytest.mark.parametrize("floor,wall,now,name", [
    (None, 100.0, 100.0, "local clock"),
    (50.0, 100.0, 100.0, "local clock"),
    (150.0, 100.0, 150.0, "time floor"),
])
def test_floor_clock_never_below_the_floor(floor: float | None, wall: float, now: float,
                                           name: str) -> None:
    got, got_name = floor_clock(floor, wall)
    assert got == now and got_name.startswith(name)
