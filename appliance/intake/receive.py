"""Receiving one PUT of payload bytes into a part file: idle timeout, disk space, pauses.

:func:`receive` reads ``body`` piece by piece and writes it at ``offset`` of the open part file
``fd`` (``pwrite`` in a worker thread, every ``flush_bytes`` and at the end), then fsyncs. It stops
early, keeping every byte written so far, when:

- no piece arrives for ``idle_timeout_s`` seconds (a stalled connection holds nothing for long:
  :class:`~appliance.errors.UploadStalled`);
- the free space, less the journal's reserve, cannot take the next flush, or the disk says it is
  full (:class:`~appliance.errors.InsufficientStorage`, checked before each write);
- the aircraft leaves the ground (``ground`` cleared: :class:`~appliance.errors.PolicyError`);
- the bytes would go past the signed payload ``length`` (:class:`~appliance.errors.BundleRefused`).

It never raises those itself: it returns why it stopped, and :class:`Progress` says where the
durable bytes end, so the caller commits ``received`` first and raises after. A dropped connection
(``body`` ends early) is not an error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ..errors import (
    ApplianceError,
    BundleRefused,
    InsufficientStorage,
    PolicyError,
    UploadStalled,
)
from .space import out_of_space

__all__ = ["FLUSH_BYTES", "Progress", "receive"]

#: Bytes gathered in memory before a ``pwrite``.
FLUSH_BYTES = 1 << 20


@dataclass(slots=True)
class Progress:
    """Where the bytes written so far end (``end``, an offset); moved by :func:`receive`.

    After :func:`receive` returned or raised, the bytes up to ``end`` are fsynced (if the fsync
    failed, ``end`` is put back to where receiving started: nothing new is trusted).
    """

    end: int


async def receive(body: AsyncIterator[bytes], fd: int, progress: Progress, length: int, *,
                  ground: asyncio.Event, idle_timeout_s: float,
                  room: Callable[[int], None], flush_bytes: int = FLUSH_BYTES) -> ApplianceError | None:
    """Write ``body`` at ``progress.end`` of ``fd``, up to ``length`` bytes in the file (see the module).

    ``room(n)`` raises InsufficientStorage unless ``n`` more bytes fit (blocking: run in a thread).
    Returns why receiving stopped early (None: the body ended). OSError other than a full disk and
    cancellation propagate, with ``progress`` still telling what is durable.
    """
    start = progress.end
    buf = bytearray()
    stopped: ApplianceError | None = None

    async def flush() -> None:
        await asyncio.to_thread(room, len(buf))
        data = bytes(buf)
        buf.clear()
        progress.end += await asyncio.to_thread(os.pwrite, fd, data, progress.end)

    pieces = aiter(body)
    try:
        while True:
            try:
                piece = await asyncio.wait_for(anext(pieces), idle_timeout_s)
            except StopAsyncIteration:
                break
            except TimeoutError:
                stopped = UploadStalled(f"no bytes for {idle_timeout_s:g} s: the upload was dropped "
                                        f"at {progress.end + len(buf)} bytes; resume from there")
                break
            if not ground.is_set():
                stopped = PolicyError("paused: the aircraft left the ground (FLIGHT)")
                break
            if progress.end + len(buf) + len(piece) > length:
                stopped = BundleRefused(f"more bytes than the signed payload length {length}: "
                                        "not this bundle's payload")
                break
            buf += piece
            if len(buf) >= flush_bytes:
                await flush()
        if buf:
            await flush()
    except InsufficientStorage as e:
        stopped = e
    except OSError as e:
        if not out_of_space(e):
            raise
        stopped = InsufficientStorage(f"the disk filled up while receiving ({e.strerror}); "
                                      f"{progress.end} bytes are kept, resume from there")
    finally:
        try:
            await asyncio.to_thread(os.fsync, fd)
        except OSError as e:
            progress.end = start
            if not out_of_space(e):
                raise
            stopped = InsufficientStorage(f"the disk filled up while receiving ({e.strerror}); "
                                          f"resume from {start}")
    return stopped
