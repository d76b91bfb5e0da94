"""The bus source base class: one public lifecycle and health check, backends implement the rest.

As python-can's ``BusABC`` (the public ``recv()`` owns timeouts and filtering, backends implement
only ``_recv_internal``), :class:`Source` owns what every source does the same way:
``start()``/``stop()`` from the event loop, the silence check and the logging of bad-input bursts
(:meth:`check`, called by the daemon's health tick), marking the source's parameters lost, and
its status. A backend implements :meth:`_start_internal` and :meth:`_stop_internal`, calls
:meth:`_received` whenever bytes or frames arrive (that re-arms the silence timer) and keeps its
counters in ``stats``.

Backends: :class:`~appliance.avionics.serial_source.SerialCardReader` (the interface card on a
serial line; its simulated twin is the card simulator on a pty) and
:class:`~appliance.avionics.can_source.CanReader` (python-can; its twin is the ``virtual`` or
``udp_multicast`` interface fed by the CAN simulator).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .params import SourceStats

__all__ = ["BAD_COUNTERS", "Source"]

log = logging.getLogger(__name__)
BAD_COUNTERS = ("crc_errors", "bad_length", "garbage_bytes", "parity_errors", "unknown_labels",
                "decode_errors", "bad_frames", "out_of_range", "card_time_jumps")
#: A bad-input burst has ended after this many seconds without new bad input.
BURST_QUIET_S = 5.0


class Source(abc.ABC):
    """One avionics input: lifecycle, silence and bad-input checks, status (see the module doc)."""

    def __init__(self, name: str, stats: SourceStats,
                 on_lost: Callable[[str], None] | None = None) -> None:
        """``name`` is the parameters' ``source``; ``on_lost(name)`` marks their values lost."""
        self.name = name
        self.stats = stats
        self.on_lost = on_lost
        self.last_rx = 0.0  #: monotonic time of the last input received
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self._silent = False
        self._burst: dict[str, int] | None = None
        self._burst_quiet_since = 0.0
        self._seen: dict[str, int] = dict.fromkeys(BAD_COUNTERS, 0)

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Start reading; call from the running loop (every callback runs on it)."""
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self.last_rx = time.monotonic()
        self._start_internal()

    def stop(self) -> None:
        """Stop reading and retrying; the source is disconnected afterwards."""
        self._stopped = True
        self._stop_internal()
        self.stats.connected = False

    def check(self, now: float, lost_after_s: float) -> None:
        """Periodic check from the daemon (``now`` is monotonic seconds).

        Silence beyond ``lost_after_s`` while connected marks the source's data lost (once until
        data returns); bad-input counters are logged once when a burst starts and once when it
        ends.
        """
        if self.stats.connected and not self._silent and now - self.last_rx > lost_after_s:
            log.warning("%s: no data for %.1f s", self.name, now - self.last_rx)
            self._silent = True
            self._mark_lost()
        cur = {k: getattr(self.stats, k) for k in BAD_COUNTERS}
        grew = {k: cur[k] - self._seen[k] for k in cur if cur[k] > self._seen[k]}
        if grew:
            if self._burst is None:
                jump = (f" (card time {self.stats.card_time_ahead_s:.1f} s ahead of host time: "
                        "frames rejected)" if "card_time_jumps" in grew else "")
                log.warning("%s: bad input: %s%s", self.name,
                            ", ".join(f"{k} +{v}" for k, v in grew.items()), jump)
                self._burst = dict.fromkeys(BAD_COUNTERS, 0)
            for k, v in grew.items():
                self._burst[k] += v
            self._burst_quiet_since = now
            self._seen = cur
        elif self._burst is not None and now - self._burst_quiet_since > BURST_QUIET_S:
            log.warning("%s: bad input burst ended: %s", self.name,
                        ", ".join(f"{k} {v}" for k, v in self._burst.items() if v))
            self._burst = None

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """What the status page shows of this source (its address and main counters)."""

    # ------------------------------------------------------------------ for backends
    @abc.abstractmethod
    def _start_internal(self) -> None:
        """Open the device and begin delivering input (non-blocking, on the loop)."""

    @abc.abstractmethod
    def _stop_internal(self) -> None:
        """Close the device; no callback may deliver input afterwards."""

    def _received(self) -> None:
        """Input arrived now: re-arm the silence timer."""
        self.last_rx = time.monotonic()
        self._silent = False

    def _mark_lost(self) -> None:
        if self.on_lost is not None:
            self.on_lost(self.name)
