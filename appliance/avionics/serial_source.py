"""The serial card reader: pyserial for port setup, the fd read non-blocking on the event loop.

Opened with pyserial (raw, baud rate), then the file descriptor is watched with
``loop.add_reader`` (as moonraker's async serial does): no thread, no blocking read. When the card
disappears (EIO, hang-up, the device node gone) the reader closes, marks the source lost and tries
again every ``reconnect_s`` seconds; the frame decoder drops its partial frame on reopen.
Bad input is counted in :class:`~appliance.avionics.params.SourceStats` and logged once per burst
(:meth:`SerialCardReader.check`).

With a :class:`~appliance.avionics.cardtime.CardTimeCheck`, every frame's card time is checked
against the host's monotonic time of the read that delivered it: frames whose card time runs ahead
of what the host clock allows are dropped before decoding (``card_time_jumps``; they never reach
the chain, so never its persistence), and the check re-anchors when the port is reopened.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import serial

from firmware_bridge.frame import FrameDecoder, RawFrame

from .cardtime import CardTimeCheck, Verdict
from .params import SourceStats
from .source import BAD_COUNTERS, Source

__all__ = ["BAD_COUNTERS", "SerialCardReader"]

log = logging.getLogger(__name__)

class SerialCardReader(Source):
    """Reads the card's byte stream from ``port`` and hands complete frames to ``on_frames``."""

    def __init__(self, port: str, on_frames: Callable[[list[RawFrame]], None], stats: SourceStats,
                 *, baudrate: int = 921600, reconnect_s: float = 0.5, name: str = "card",
                 on_lost: Callable[[str], None] | None = None,
                 card_time: CardTimeCheck | None = None) -> None:
        """Nothing is opened until :meth:`start`; ``card_time`` (None: no check) screens frames."""
        super().__init__(name, stats, on_lost)
        self.card_time = card_time
        self.port = port
        self.baudrate = baudrate
        self.reconnect_s = reconnect_s
        self.on_frames = on_frames
        self.decoder = FrameDecoder()
        self._ser: serial.Serial | None = None
        self._fd: int | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._open_error: str | None = None

    def status(self) -> dict[str, Any]:
        """Port, connected, frames, bad words, CRC errors and card-time jumps (frames rejected)."""
        st = self.stats
        return {"port": self.port, "connected": st.connected, "frames": st.frames,
                "bad_words": st.bad_words, "crc_errors": st.crc_errors,
                "card_time_jumps": st.card_time_jumps}

    def _start_internal(self) -> None:
        """Try to open the port now and keep trying until it opens."""
        self._open()

    def _open(self) -> None:
        self._retry = None
        if self._stopped:
            return
        assert self._loop is not None
        try:
            ser = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            msg = str(e)
            if msg != self._open_error:
                log.warning("%s: cannot open %s (%s); retrying every %.1f s", self.name, self.port,
                            msg, self.reconnect_s)
                self._open_error = msg
            self._retry = self._loop.call_later(self.reconnect_s, self._open)
            return
        self._open_error = None
        self._ser = ser
        self._fd = ser.fileno()
        os.set_blocking(self._fd, False)
        self.decoder.reset()
        if self.card_time is not None:
            self.card_time.reset()
        self.stats.connected = True
        self.stats.connects += 1
        self._received()
        self._loop.add_reader(self._fd, self._on_readable)
        log.info("%s: reading %s", self.name, self.port)

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            self._lost(f"read failed: {e}")
            return
        if not data:
            self._lost("end of file")
            return
        self._received()
        dec = self.decoder
        frames = dec.feed_raw(data)
        st, ds = self.stats, dec.stats
        st.bytes_in, st.frames = ds.bytes_in, ds.frames
        st.crc_errors, st.bad_length, st.garbage_bytes = ds.crc_errors, ds.bad_length, ds.garbage_bytes
        if frames and self.card_time is not None:
            frames = self._screen(frames, self.last_rx)
        if frames:
            self.on_frames(frames)

    def _screen(self, frames: list[RawFrame], host: float) -> list[RawFrame]:
        """The frames whose card time the host's receive time ``host`` (monotonic s) allows."""
        check = self.card_time
        assert check is not None
        st = self.stats
        kept: list[RawFrame] = []
        for f in frames:
            verdict = check.check(f[2] * 1e-6, host)  # t_us
            if verdict is Verdict.JUMP:
                st.card_time_jumps += 1
                st.card_time_ahead_s = round(check.ahead_s, 6)
                continue
            if verdict is Verdict.RESYNC:
                st.card_time_resyncs += 1
                log.warning("%s: card time kept running %.1f s ahead for %.1f s of host time: "
                            "re-anchored on it", self.name, st.card_time_ahead_s,
                            check.config.resync_s)
            elif verdict is Verdict.RESET:
                st.card_time_resets += 1
            kept.append(f)
        st.card_time_rejecting = check.rejecting
        return kept

    def _close(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)
        if self._ser is not None:
            try:
                self._ser.close()
            except (OSError, serial.SerialException):
                pass
        self._ser = None
        self._fd = None

    def _lost(self, why: str) -> None:
        self._close()
        self.stats.connected = False
        self.stats.disconnects += 1
        log.warning("%s: lost %s (%s); reconnecting", self.name, self.port, why)
        self._mark_lost()
        if not self._stopped and self._loop is not None:
            self._retry = self._loop.call_later(self.reconnect_s, self._open)

    def _stop_internal(self) -> None:
        """Close the port and stop retrying."""
        if self._retry is not None:
            self._retry.cancel()
        self._close()
