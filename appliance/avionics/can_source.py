"""The CAN reader: python-can for the bus, cantools for the frames, callbacks on the event loop.

:func:`open_bus` opens the bus named by :class:`~appliance.settings.CanSettings`. :class:`CanReader`
watches it with python-can's ``Notifier(loop=...)``: a bus with a file descriptor (SocketCAN,
``udp_multicast``) is watched with ``loop.add_reader``, others (``virtual``) by the Notifier's
receive thread, which hands every message to the loop with ``call_soon_threadsafe``. Either way the
listener, the decoding and ``on_params`` run on the loop thread.

Frames are decoded with cantools from a DBC chosen by ``profile`` (:data:`PROFILES`): the ARINC 825
29-bit identifiers of ``firmware_bridge/arinc825.dbc`` (``"arinc825"``, the service's default), the
CANaerospace 11-bit identifiers of ``firmware_bridge/canaerospace.dbc`` (``"canaerospace"``), the
integration's own ``firmware_bridge/airground.dbc`` (``"integration"``), or all three (``"any"``,
the reader's default). ARINC 825 and CANaerospace frames have the same payload (the parameters and
their validity: :mod:`appliance.avionics.canaerospace`); an ARINC 825 frame is looked up with its
redundancy channel (RCI), FSB, LCL and PVT bits cleared (:func:`firmware_bridge.arinc825.canonical_id`),
and a channel other than A is part of the source's name (``can/rciB/node2``), so redundant channels
are separate sources of one parameter. All give the chain's parameter names, the same as the
serial card's, so CAN feeds the same vote, plausibility and phase machines:

===================== =========================== ==== ==========================================
parameter             from (airground.dbc)        unit validity
===================== =========================== ==== ==========================================
air_ground            LGCIU_AIR_GROUND.AIR_GROUND bool FAULT when LGCIU_FAULT; True = on ground
wow_left              LGCIU_AIR_GROUND.WOW_LEFT   bool FAULT when LGCIU_FAULT; True = compressed
wow_right             LGCIU_AIR_GROUND.WOW_RIGHT  bool FAULT when LGCIU_FAULT; True = compressed
computed_airspeed     ADC_DATA.CAS_KT             kt   NO_COMPUTED_DATA when CAS_VALID = 0
pressure_altitude     ADC_DATA.ALTITUDE_FT        ft   NO_COMPUTED_DATA when ALTITUDE_VALID = 0
ground_speed          ADC_DATA.GROUND_SPEED_KT    kt   NO_COMPUTED_DATA when GROUND_SPEED_VALID = 0
===================== =========================== ==== ==========================================

A valid numeric value outside its plausible range (the same limits as the ARINC label table) is
flagged OUT_OF_RANGE. Each parameter's ``t`` is the message timestamp (python-can's
``msg.timestamp``, seconds: the receive time on hardware and ``udp_multicast``, the sender's value on
``virtual`` with ``preserve_timestamps``), scaled by ``time_rate`` from the first frame on (a
simulator playing at xN onto a bus stamped with receive time needs N; a real bus 1); or, with
``time_source="utc"``, the avionics UTC carried on the bus (CANaerospace UTC and date) plus the
scaled time since the latest UTC frame, so that a simulator played fast on a loaded machine
keeps avionics time (its jitter stays within one UTC period). Bad input never
raises; it is counted in
:class:`~appliance.avionics.params.SourceStats`: error and remote frames and frames with the wrong
DLC in ``bad_frames``, identifiers the DBC does not define in ``unknown_labels``, undecodable
payloads (and CANaerospace frames of the wrong data type) in ``decode_errors``. A bus that fails
(python-can raises in the receive path) is reported
through ``Listener.on_error``: ``stats.connected`` goes False and ``stats.disconnects`` counts it.
The reader does not reopen the bus (it was given one); the daemon decides what to do.

Time base: ``t`` is not the serial card's clock (microseconds since the card powered up). With the
serial card and CAN in one :class:`~appliance.avionics.chain.AvionicsChain`, the daemon puts each
source on the chain's time base (:mod:`appliance.avionics.timebase`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import can
import cantools
from cantools.database.can import Database
from cantools.database.can import Message as DbcMessage

from firmware_bridge.arinc825 import RCI_LETTERS, canonical_id
from firmware_bridge.labels import LabelTable

from ..errors import SourceError
from ..settings import CanSettings
from .canaerospace import DATA_TYPE as CANAS_DATA_TYPE
from .canaerospace import MESSAGES as CANAS_MESSAGES
from .canaerospace import BadFrame, decode_canaerospace
from .params import Parameter, SourceStats, Validity
from .source import Source

__all__ = ["CAN_PARAMETERS", "PROFILES", "CanReader", "NO_BITRATE_INTERFACES", "default_dbc",
           "open_bus"]

log = logging.getLogger(__name__)

#: python-can interfaces whose bitrate is not set through python-can (or that have none).
NO_BITRATE_INTERFACES = frozenset({"virtual", "udp_multicast", "socketcan"})
#: Parameter names produced from the integration layout (airground.dbc), with their unit.
CAN_PARAMETERS = {
    "air_ground": "bool",
    "wow_left": "bool",
    "wow_right": "bool",
    "computed_airspeed": "kt",
    "pressure_altitude": "ft",
    "ground_speed": "kt",
}
_LGCIU = "LGCIU_AIR_GROUND"
_ADC = "ADC_DATA"
#: ADC signal -> (parameter, validity signal, plausible min, max); limits as in labels.toml.
_ADC_SIGNALS = (
    ("CAS_KT", "computed_airspeed", "CAS_VALID", 0.0, 600.0),
    ("ALTITUDE_FT", "pressure_altitude", "ALTITUDE_VALID", -2000.0, 60000.0),
    ("GROUND_SPEED_KT", "ground_speed", "GROUND_SPEED_VALID", 0.0, 800.0),
)
_LGCIU_SIGNALS = (("AIR_GROUND", "air_ground"), ("WOW_LEFT", "wow_left"),
                  ("WOW_RIGHT", "wow_right"))
_BUS_ERRORS = (can.CanError, OSError, ValueError)
#: time_source "utc": the longest a message is placed after its latest UTC frame (s; UTC is 1 Hz).
UTC_PERIOD_S = 1.0
#: time_source "utc": the most the time moves per message below UTC_JUMP_S (s; the 8 Hz period).
SLEW_S = 0.125
#: A UTC frame further than this (s) from the time expected is not used...
UTC_JUMP_S = 5.0
#: ...unless this many in a row agree with each other.
UTC_RESYNC_FRAMES = 5
#: Turns one decoded frame (signal -> number) at time t (s) from source into parameters.
_Handler = Callable[[dict[str, float], float, str], list[Parameter]]
#: The shipped databases of each profile (``"any"``: all of them).
PROFILES = {"arinc825": ("arinc825.dbc",), "canaerospace": ("canaerospace.dbc",),
            "integration": ("airground.dbc",),
            "any": ("arinc825.dbc", "canaerospace.dbc", "airground.dbc")}
Profile = Literal["arinc825", "canaerospace", "integration", "any"]


def default_dbc() -> str:
    """The text of ``airground.dbc`` (the integration layout) shipped in ``firmware_bridge``."""
    return importlib.resources.files("firmware_bridge").joinpath("airground.dbc").read_text()


def _load_dbc(dbc_path: Path | None, profile: str = "any") -> list[DbcMessage]:
    """The messages of ``dbc_path``, or of the shipped databases of ``profile``."""
    if dbc_path is None and profile not in PROFILES:
        raise SourceError(f"unknown CAN profile {profile!r} (expected one of {', '.join(PROFILES)})")
    files = () if dbc_path is not None else PROFILES[profile]
    where = str(dbc_path) if dbc_path is not None else " + ".join(
        f"firmware_bridge/{f}" for f in files)
    messages: list[DbcMessage] = []
    try:
        texts = ([dbc_path.read_text()] if dbc_path is not None else
                 [importlib.resources.files("firmware_bridge").joinpath(f).read_text()
                  for f in files])
        for text in texts:
            db = cantools.database.load_string(text, database_format="dbc")
            if not isinstance(db, Database):
                raise SourceError(f"{where} is not a CAN database")
            messages += db.messages
    except (OSError, ValueError, cantools.database.errors.Error) as e:
        raise SourceError(f"cannot load CAN database {where}: {e}") from e
    names = {m.name for m in messages}
    if not names & CANAS_MESSAGES:  # an integration-layout database needs both of its messages
        missing = {_LGCIU, _ADC} - names
        if missing:
            raise SourceError(f"CAN database {where} lacks {', '.join(sorted(missing))}")
    return messages


def open_bus(settings: CanSettings) -> can.BusABC:
    """Open the bus ``settings.interface`` / ``settings.channel`` with python-can.

    ``settings.bitrate`` (bit/s) is passed only to interfaces that set it through python-can (not to
    ``virtual``, ``udp_multicast`` or ``socketcan``, whose bitrate is set with ``ip link``).
    ``settings.receive_buffer_bytes`` sets the socket's receive buffer where the bus has a socket.
    Raises SourceError naming the interface and channel if the bus cannot be opened (unknown
    interface, missing driver or dependency, bad channel, device absent).
    """
    kwargs: dict[str, Any] = {"interface": settings.interface, "channel": settings.channel}
    if settings.interface not in NO_BITRATE_INTERFACES:
        kwargs["bitrate"] = settings.bitrate
    try:
        bus = can.Bus(**kwargs)
    except (can.CanError, OSError, ValueError, TypeError, ImportError) as e:
        raise SourceError(f"cannot open CAN bus {settings.interface!r} channel "
                          f"{settings.channel!r}: {e}") from e
    if settings.receive_buffer_bytes is not None:
        _set_receive_buffer(bus, settings.receive_buffer_bytes)
    return bus


def _set_receive_buffer(bus: can.BusABC, size: int) -> None:
    """Set SO_RCVBUF on the bus's socket, if it has one (logged, never fatal)."""
    try:
        fd = bus.fileno()
    except (NotImplementedError, AttributeError, OSError):
        return
    if not isinstance(fd, int) or fd < 0:
        return
    try:
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        finally:
            sock.close()
        log.info("CAN bus %s: receive buffer %d bytes", bus.channel_info, got)
    except OSError as e:
        log.warning("CAN bus %s: cannot set the receive buffer: %s", bus.channel_info, e)


class _LoopNotifier(can.Notifier):
    """A ``can.Notifier`` whose file-descriptor path reports receive errors like its thread path.

    With a loop and a bus that has a file descriptor, python-can 4.x calls ``bus.recv(0)`` from
    ``loop.add_reader`` and lets an exception escape into the loop's exception handler, leaving the
    reader registered (a failed socket stays readable: the loop would spin on the error). Here the
    descriptor is unregistered and the listeners' ``on_error`` is called, as the thread path does.
    """

    def _on_message_available(self, bus: can.BusABC) -> None:
        try:
            msg = bus.recv(0)
        except _BUS_ERRORS as exc:
            self.exception = exc
            if self._loop is not None:
                for reader in self._readers:
                    if isinstance(reader, int):
                        self._loop.remove_reader(reader)
            self._on_error(exc)
            return
        if msg is not None:
            self._on_message_received(msg)


class _Listener(can.Listener):
    """Forwards messages and errors to the reader (python-can calls these on the loop thread)."""

    def __init__(self, reader: CanReader) -> None:
        self.reader = reader

    def on_message_received(self, msg: can.Message) -> None:
        """Decode one message (never raises on bad input)."""
        self.reader._on_message(msg)

    def on_error(self, exc: Exception) -> None:
        """The bus failed: mark the source lost."""
        self.reader._on_error(exc)


class CanReader(Source):
    """Reads ``bus``, decodes its frames and hands each frame's parameters to ``on_params``.

    ``on_params`` gets a list of :class:`Parameter` (1 to 5 per valid frame) on the loop thread, in
    arrival order; ``stats`` is updated in place. ``name`` is the parameters' ``source`` (plus
    ``/nodeN`` for CANaerospace and ARINC 825 frames, and ``/rciB`` .. ``/rciD`` before it for
    ARINC 825 redundancy channels B-D). ``profile`` picks the shipped DBCs (:data:`PROFILES`);
    ``dbc_path`` replaces them; it must define CANaerospace messages (11-bit, or 29-bit ARINC 825
    identifiers) or both LGCIU_AIR_GROUND and ADC_DATA. ``time_rate`` scales message time
    (see the module doc), ``time_source`` says where the parameters' time comes from
    (:meth:`message_time`). ``on_lost`` is called with ``name`` when the source falls silent.
    Raises SourceError if the DBC cannot be loaded. The bus stays the caller's: :meth:`stop` does
    not shut it down.
    """

    def __init__(self, bus: can.BusABC, on_params: Callable[[list[Parameter]], None],
                 stats: SourceStats, *, name: str = "can", dbc_path: Path | None = None,
                 time_rate: float = 1.0, table: LabelTable | None = None,
                 on_lost: Callable[[str], None] | None = None,
                 time_source: Literal["receive", "utc"] = "receive",
                 profile: Profile = "any") -> None:
        """Load the DBC; nothing is read before :meth:`start`."""
        super().__init__(name, stats, on_lost)
        self.bus = bus
        self.on_params = on_params
        messages = _load_dbc(dbc_path, profile)
        self.time_rate = time_rate
        self.time_source = time_source
        self._t0: float | None = None
        self._date: dt.date | None = None
        self._date_seen: dt.date | None = None
        self._new_dates: list[dt.date] = []
        self._utc: tuple[float, float] | None = None  #: (UTC epoch s, its message stamp)
        self._rejected: list[tuple[float, float]] = []
        self._last_t = -float("inf")
        self._canas = decode_canaerospace(table or LabelTable.default())
        handlers: dict[str, _Handler] = {_LGCIU: self._lgciu, _ADC: self._adc}
        for m in messages:
            if m.name in CANAS_MESSAGES:
                handlers[m.name] = self._canaerospace(m.name)
        #: (arbitration id, extended) -> (DBC message, handler; None for a known but unused id)
        self._known: dict[tuple[int, bool], tuple[DbcMessage, _Handler | None]] = {
            (m.frame_id, m.is_extended_frame): (m, handlers.get(m.name)) for m in messages}
        #: ARINC 825 messages by canonical identifier (RCI, FSB, LCL, PVT cleared)
        self._a825 = {canonical_id(m.frame_id): (m, handlers.get(m.name)) for m in messages
                      if m.is_extended_frame and m.name in CANAS_MESSAGES}
        self._notifier: can.Notifier | None = None

    @property
    def channel_info(self) -> str:
        """python-can's description of the bus (for status pages)."""
        return str(self.bus.channel_info)

    def status(self) -> dict[str, Any]:
        """The channel and every counter."""
        return {"channel": self.channel_info, **self.stats.as_dict()}

    def _start_internal(self) -> None:
        """Start receiving (callbacks run on the loop)."""
        if self._notifier is not None:
            return
        # timeout: how long the receive thread (buses without a file descriptor) blocks per recv;
        # it bounds how long stop() waits for that thread.
        self._notifier = _LoopNotifier(self.bus, [_Listener(self)], timeout=0.1,
                                       loop=asyncio.get_running_loop())
        self.stats.connected = True
        self.stats.connects += 1
        log.info("%s: reading CAN %s", self.name, self.bus.channel_info)

    def _stop_internal(self) -> None:
        """Stop receiving (waits at most ~0.2 s for a receive thread); the bus stays open."""
        if self._notifier is not None:
            self._notifier.stop(timeout=0.5)
            self._notifier = None

    # --- callbacks, on the loop thread ---------------------------------------------------------

    def _on_error(self, exc: Exception) -> None:
        if self._stopped or not self.stats.connected:
            return
        self.stats.connected = False
        self.stats.disconnects += 1
        log.warning("%s: CAN bus %s lost: %s", self.name, self.bus.channel_info, exc)

    def _on_message(self, msg: can.Message) -> None:
        if self._stopped:  # queued by the receive thread before stop()
            return
        self._received()
        params = self.decode_message(msg)
        if params:
            self.on_params(params)

    def message_time(self, timestamp: float) -> float | None:
        """The parameters' time (s) for a message stamped ``timestamp``; None: not known yet.

        ``time_source="receive"``: the stamp, scaled by ``time_rate`` from the first message on.
        ``"utc"``: the avionics UTC of the latest accepted UTC frame (CANaerospace 1200 with the
        date of 1206) plus the scaled stamp difference since it, at most :data:`UTC_PERIOD_S` (a
        stalled sender cannot push time ahead), never going back (a frame stamped late does not
        make the ones after it look old) and, below :data:`UTC_JUMP_S`, moving at most
        :data:`SLEW_S` or half the way per message (a burst from a sender catching up is spread
        over the time it covers, rather than stamped alike and then found old at the next UTC
        frame); None before the first UTC frame after a date (those messages are held back).
        """
        if self.time_source == "utc":
            if self._utc is None:
                return None
            base, ts0 = self._utc
            target = base + min(max(timestamp - ts0, 0.0) * self.time_rate, UTC_PERIOD_S)
            last = self._last_t
            if target <= last:
                t = last
            elif target - last > UTC_JUMP_S or target - last <= SLEW_S:  # a gap; or in step
                t = target
            else:  # frames of a burst (the sender caught up) are spread, not stamped alike
                t = last + max(SLEW_S, (target - last) / 2)
            self._last_t = t
            return t
        if self.time_rate == 1.0:
            return timestamp
        if self._t0 is None:
            self._t0 = timestamp
        return self._t0 + (timestamp - self._t0) * self.time_rate

    def _observe_time(self, name: str, v: dict[str, float], timestamp: float) -> bool:
        """Track the avionics UTC from the CANaerospace UTC and date frames (time_source "utc").

        A UTC frame more than :data:`UTC_JUMP_S` away from the time it should show (one period on,
        or the scaled time elapsed since the last one) is not used (a garbled frame), unless
        :data:`UTC_RESYNC_FRAMES` such frames in a row agree with each other (the clock on the bus
        was set): then they become the time. Returns False for a UTC frame not used.
        """
        if v.get("DATA_TYPE") != CANAS_DATA_TYPE["UCHAR4"]:
            return True
        try:
            if name == "DATE":
                day = dt.date(int(v["YEAR"]), int(v["MONTH"]), int(v["DAY"]))
                if self._date is None:
                    self._date = self._date_seen = day
                # another date counts once it came UTC_RESYNC_FRAMES times in a row (not garbage)
                self._new_dates = [*self._new_dates[-(UTC_RESYNC_FRAMES - 1):], day]
                if len(self._new_dates) == UTC_RESYNC_FRAMES and len(set(self._new_dates)) == 1:
                    self._date_seen = day
                return True
            if name != "UTC" or self._date is None:
                return True
            sec = int(v["HOURS"]) * 3600 + int(v["MINUTES"]) * 60 + int(v["SECONDS"])
        except (KeyError, ValueError):
            return True
        if sec >= 86400:
            return True
        day = self._date
        if self._utc is not None:  # a new day follows the old one at midnight
            day = dt.datetime.fromtimestamp(self._utc[0], dt.UTC).date()
            if sec < 60 and self._utc[0] % 86400 > 86340:
                day += dt.timedelta(days=1)
        base = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() + sec
        expected = (None if self._utc is None  # after a stall: at most one period on
                    else self._utc[0] + min(max(timestamp - self._utc[1], 0.0) * self.time_rate,
                                            UTC_PERIOD_S))
        uncapped = (None if self._utc is None  # after a silence: the time elapsed on the bus
                    else self._utc[0] + (timestamp - self._utc[1]) * self.time_rate)
        if expected is None or abs(base - expected) <= UTC_JUMP_S or (
                uncapped is not None and abs(base - uncapped) <= UTC_JUMP_S):
            self._utc, self._rejected = (base, timestamp), []
            return True
        if self._date_seen is not None:  # judge the rejected ones on the date the bus sends now
            base = dt.datetime.combine(self._date_seen, dt.time(), dt.UTC).timestamp() + sec
        self._rejected = [*self._rejected[-(UTC_RESYNC_FRAMES - 1):], (base, timestamp)]
        if len(self._rejected) == UTC_RESYNC_FRAMES and all(
                abs((b - b0) - (ts - ts0) * self.time_rate) <= UTC_JUMP_S
                for (b0, ts0), (b, ts) in zip(self._rejected, self._rejected[1:], strict=False)):
            log.warning("%s: avionics UTC on the bus moved to %s", self.name,
                        dt.datetime.fromtimestamp(base, dt.UTC).isoformat())
            self._utc, self._date, self._rejected = (base, timestamp), self._date_seen, []
            return True
        return False

    def decode_message(self, msg: can.Message) -> list[Parameter]:
        """The parameters of one message ([] for a bad or unused one, counted in ``stats``).

        Never raises on bad input.
        """
        st = self.stats
        st.frames += 1
        st.bytes_in += len(msg.data)
        st.last_frame_t = msg.timestamp
        if msg.is_error_frame or msg.is_remote_frame:
            st.bad_frames += 1
            return []
        source = self.name
        known = self._known.get((msg.arbitration_id, msg.is_extended_id))
        if known is None and msg.is_extended_id and self._a825:
            known = self._a825.get(canonical_id(msg.arbitration_id))
            if known is not None and msg.arbitration_id & 3:
                source = f"{self.name}/rci{RCI_LETTERS[msg.arbitration_id & 3]}"
        if known is None:
            st.unknown_labels += 1
            return []
        dbc_msg, handler = known
        if msg.dlc != dbc_msg.length or len(msg.data) != dbc_msg.length:
            st.bad_frames += 1
            return []
        st.words += 1  # frames of a known identifier and length (BITE's rate)
        if handler is None:
            return []
        try:
            decoded = dbc_msg.decode(bytes(msg.data), decode_choices=False, scaling=True)
            if not isinstance(decoded, dict):  # a container message: not ours
                raise TypeError("container message")
            if not all(type(v) in _NUMBERS and v == v for v in decoded.values()):
                raise TypeError("not a number (a choice, a blob or a garbled float)")
            values: dict[str, float] = decoded  # type: ignore[assignment]
        except (cantools.database.errors.DecodeError, ValueError, TypeError, KeyError):
            st.decode_errors += 1
            return []
        try:
            ts = float(msg.timestamp)
            used = self.time_source != "utc" or self._observe_time(dbc_msg.name, values, ts)
            t = self.message_time(ts)
            if t is None:
                return []
            params = handler(values, t, source)
            if not used:  # a UTC frame out of step with the bus's time: not a valid UTC
                st.out_of_range += 1
                params = [p._replace(validity=Validity.OUT_OF_RANGE) for p in params]
            return params
        except (KeyError, BadFrame):  # a custom DBC without one of the signals; a wrong data type
            st.decode_errors += 1
            return []

    def _canaerospace(self, name: str) -> _Handler:
        def handle(v: dict[str, float], t: float, source: str) -> list[Parameter]:
            return self._canas(name, v, t, source, self.stats)
        return handle

    def _lgciu(self, v: dict[str, float], t: float, _source: str) -> list[Parameter]:
        validity = Validity.FAULT if v["LGCIU_FAULT"] else Validity.VALID
        return [Parameter(name, bool(v[sig]), "bool", validity, t, self.name)
                for sig, name in _LGCIU_SIGNALS]

    def _adc(self, v: dict[str, float], t: float, _source: str) -> list[Parameter]:
        st = self.stats
        out = []
        for sig, name, valid_sig, lo, hi in _ADC_SIGNALS:
            value = v[sig]
            if not v[valid_sig]:
                validity = Validity.NO_COMPUTED_DATA
                st.no_computed_data += 1
            elif not lo <= value <= hi:
                validity = Validity.OUT_OF_RANGE
                st.out_of_range += 1
            else:
                validity = Validity.VALID
            out.append(Parameter(name, float(value), CAN_PARAMETERS[name], validity, t, self.name))
        return out


_NUMBERS = (int, float)
