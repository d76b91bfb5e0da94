"""The serial reader on a real pty: frames, garbage, the card unplugged and back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from appliance.avionics.params import SourceStats
from appliance.avionics.serial_source import SerialCardReader
from firmware_bridge.frame import RawFrame, encode_word
from firmware_bridge.labels import LabelTable
from firmware_bridge.player import PtyPort

ALT = LabelTable.default().by_name["pressure_altitude"]


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def test_reader_survives_garbage_and_unplug(tmp_path: Path) -> None:
    link = tmp_path / "card"

    async def main() -> None:
        frames: list[RawFrame] = []
        lost: list[str] = []
        stats = SourceStats()
        reader = SerialCardReader(str(link), frames.extend, stats, reconnect_s=0.05,
                                  on_lost=lost.append)
        reader.start()  # the card is not there yet: keeps retrying
        await asyncio.sleep(0.1)
        assert not stats.connected
        port = PtyPort(link)
        await wait_for(lambda: stats.connected)
        port.write(os.urandom(300) + b"\xa5\x5a\x01" + encode_word(1, 1000, ALT.encode(500.0)))
        await wait_for(lambda: len(frames) == 1)
        assert stats.garbage_bytes >= 300
        port.close()  # unplugged
        await wait_for(lambda: stats.disconnects == 1)
        assert lost == ["card"] and not stats.connected
        port = PtyPort(link)  # plugged back in
        await wait_for(lambda: stats.connects == 2)
        port.write(encode_word(1, 2000, ALT.encode(600.0)))
        await wait_for(lambda: len(frames) == 2)
        assert frames[-1][2] == 2000  # t_us
        reader.check(asyncio.get_running_loop().time() + 1e6, lost_after_s=2.0)
        assert lost == ["card", "card"]  # silence reported once
        reader.stop()
        port.close()

    asyncio.run(main())
