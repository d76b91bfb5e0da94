"""Play the simulator's byte stream onto a pty, paced to flight time × speed, as the card would.

A pty does not enforce a baud rate, so the player paces itself: chunk ``t`` is written when the wall
clock reaches ``(t - t_first) / speed``. Writes block when the reader is slow (like a full UART
FIFO); the player then catches up. An ``unplug`` closes the pty (the reader sees EIO/hang-up, like a
card that lost power) and re-creates it after a pause, re-pointing the stable link at the new pty.
"""

from __future__ import annotations

import logging
import os
import time
import tty
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PtyPort", "Unplug", "play"]

log = logging.getLogger(__name__)


class PtyPort:
    """A pty pair whose slave is reachable through a stable symlink ``link``.

    The slave fd is held open by the port so that writes never fail while no reader is attached.
    """

    def __init__(self, link: str | os.PathLike[str]) -> None:
        """Create the pty (raw mode) and point ``link`` at its slave device."""
        self.link = Path(link)
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, self.link)

    def write(self, data: bytes) -> None:
        """Write all of ``data`` to the master side (blocking while the pty buffer is full)."""
        view = memoryview(data)
        while view:
            n = os.write(self.master, view)
            view = view[n:]

    def close(self) -> None:
        """Close both sides; the reader sees end of line (EIO). The link is left dangling."""
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass(frozen=True)
class Unplug:
    """Close the pty at flight time ``at`` (epoch s) and reopen it ``for_s`` wall seconds later."""

    at: float
    for_s: float


def play(chunks: Iterable[tuple[float, bytes]], link: str | os.PathLike[str], speed: float = 60.0,
         unplugs: list[Unplug] | None = None, linger_s: float = 1.0) -> int:
    """Write every chunk to a new pty at ``link``, paced; return the number of bytes written.

    After the last chunk the pty stays open ``linger_s`` seconds so the reader can drain it.
    """
    port = PtyPort(link)
    pending = sorted(unplugs or [], key=lambda u: u.at)
    written = 0
    t_first: float | None = None
    wall0 = time.monotonic()
    batch: list[bytes] = []
    try:
        for t, data in chunks:
            if t_first is None:
                t_first = t
            if pending and t >= pending[0].at:
                u = pending.pop(0)
                port.write(b"".join(batch))
                written += sum(len(b) for b in batch)
                batch.clear()
                log.info("unplugging the card for %.1f s", u.for_s)
                port.close()
                time.sleep(u.for_s)
                port = PtyPort(link)
                wall0 = time.monotonic() - (t - t_first) / speed
            batch.append(data)
            due = wall0 + (t - t_first) / speed
            now = time.monotonic()
            if due - now > 0.005:
                port.write(b"".join(batch))
                written += sum(len(b) for b in batch)
                batch.clear()
                time.sleep(due - now)
        port.write(b"".join(batch))
        written += sum(len(b) for b in batch)
        time.sleep(linger_s)
    finally:
        port.close()
    return written
