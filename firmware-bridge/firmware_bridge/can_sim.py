"""The CAN side of the card simulator: a recorded flight in, the integration's CAN frames out.

:func:`can_messages` turns a :class:`~firmware_bridge.recording.Trajectory` into ``(t, message)``
pairs as defined by ``airground.dbc`` (shipped in this package): ``LGCIU_AIR_GROUND`` (id 0x1A0,
DLC 2) at 10 Hz from the recording's on-ground state, and ``ADC_DATA`` (id 0x2A0, DLC 8) at 8 Hz with
computed airspeed (``IAS``), pressure altitude and ground speed, each with its validity bit (0 when
the recording has no value then, or the value does not fit the signal). ``t`` and
``message.timestamp`` are flight time (epoch s). Whether a receiver sees that timestamp depends on
the bus: python-can's ``virtual`` bus keeps it with ``preserve_timestamps=True``, ``udp_multicast``
replaces it with the receive time (as SocketCAN hardware would).

:class:`CanFaults` adds what a real bus shows: frames with a wrong DLC (sent instead of the good
one), frames with identifiers the DBC does not define, error frames, and LGCIU fault windows
(``LGCIU_FAULT`` = 1). :func:`play_can` sends the pairs onto a python-can bus, paced to flight time
× speed like :func:`firmware_bridge.player.play`.

The ARINC 825 profile (29-bit identifiers of ``arinc825.dbc``, the default on the command line) and
the CANaerospace one (11-bit, ``canaerospace.dbc``) are produced by
:func:`firmware_bridge.canaerospace.canaerospace_messages`; :func:`with_can` plays any profile
alongside the serial card stream on one clock (``card-sim play --can-interface``).

Command line (needs the ``can`` extra)::

    python -m firmware_bridge.can_sim RECORDING [--interface udp_multicast] [--channel 239.74.163.2]
        [--speed 60] [--start TIME] [--end TIME] [--fault SPEC ...] [--seed N]
        [--profile arinc825|canaerospace|integration]

``udp_multicast`` (the default interface) sends to the local network (TTL 1) unless the group is
routed to ``lo`` inside a network namespace, as the tests do (see shared/TESTING.md).

Fault specs: ``bad-dlc=RATE``, ``unknown-id=RATE``, ``error-frame=RATE`` (probability per frame),
``lgciu-fault=TIME/SECONDS``, ``wow-glitch=TIME/SECONDS``, ``silent=TIME/SECONDS``,
``garbage=TIME/SECONDS``, and on the CANaerospace layout ``dropout=``/``ncd=MESSAGES@TIME/SECONDS``;
TIME is ``HH:MM:SS`` UTC on the recording's day or ``+SECONDS``.
"""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import random
import re
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import can
import cantools
from cantools.database.can import Database
from cantools.database.can import Message as DbcMessage

from .canaerospace import canaerospace_messages
from .recording import RecordingError, Trajectory, load
from .simulator import FaultSpecError, _parse_time

__all__ = ["ADC_HZ", "ADC_ID", "DBC_RESOURCE", "LGCIU_HZ", "LGCIU_ID", "UNKNOWN_IDS", "CanFaults",
           "PROFILES", "can_messages", "load_dbc", "main", "messages", "open_can", "play_can",
           "with_can"]

log = logging.getLogger(__name__)

#: The DBC file inside this package.
DBC_RESOURCE = "airground.dbc"
LGCIU_ID = 0x1A0
ADC_ID = 0x2A0
LGCIU_HZ = 10
ADC_HZ = 8
_GRID_HZ = 40  # least common multiple of the two rates
#: The CAN profiles: ARINC 825 29-bit identifiers, CANaerospace 11-bit ones, airground.dbc.
PROFILES = ("arinc825", "canaerospace", "integration")
#: Standard identifiers that the DBC does not define (sent by the unknown-id fault).
UNKNOWN_IDS = (0x0F0, 0x1A1, 0x3FF, 0x555, 0x7DF)


def load_dbc() -> Database:
    """The integration's CAN database (``airground.dbc``) from this package.

    Raises cantools' ``ParseError`` (a ValueError) if the file is not a valid DBC.
    """
    text = importlib.resources.files("firmware_bridge").joinpath(DBC_RESOURCE).read_text()
    db = cantools.database.load_string(text, database_format="dbc")
    assert isinstance(db, Database)
    return db


@dataclass
class CanFaults:
    """CAN faults to inject. Rates are probabilities per frame; windows are [start, end) epoch s.

    - ``bad_dlc_rate``: the frame is sent truncated or padded to a wrong DLC instead of the good one
    - ``unknown_id_rate``: a frame with an identifier not in the DBC follows
    - ``error_frame_rate``: an error frame follows
    - ``lgciu_fault``: windows in which the LGCIU sets ``LGCIU_FAULT``
    """

    bad_dlc_rate: float = 0.0
    unknown_id_rate: float = 0.0
    error_frame_rate: float = 0.0
    lgciu_fault: list[tuple[float, float]] = field(default_factory=list)
    #: Windows in which the LGCIU says "on ground" (air/ground and both WOW), with no fault.
    wow_lie: list[tuple[float, float]] = field(default_factory=list)
    #: Windows in which nothing is sent (the source is silent).
    silent: list[tuple[float, float]] = field(default_factory=list)
    #: Windows in which every payload is random bytes and random identifiers come in between.
    garbage: list[tuple[float, float]] = field(default_factory=list)
    #: (CANaerospace message names, start, end): not sent / sent with data type NODATA.
    dropouts: list[tuple[frozenset[str], float, float]] = field(default_factory=list)
    ncd: list[tuple[frozenset[str], float, float]] = field(default_factory=list)
    seed: int = 1

    @staticmethod
    def in_named(windows: list[tuple[frozenset[str], float, float]], name: str, t: float) -> bool:
        """True if message ``name`` is in one of ``windows`` at ``t`` (epoch s)."""
        return any(name in names and start <= t < end for names, start, end in windows)

    @staticmethod
    def in_window(windows: list[tuple[float, float]], t: float) -> bool:
        """True if ``t`` (epoch s) lies in one of ``windows``."""
        return any(start <= t < end for start, end in windows)

    def in_lgciu_fault(self, t: float) -> bool:
        """True if ``t`` (epoch s) lies in an LGCIU fault window."""
        return self.in_window(self.lgciu_fault, t)

    @classmethod
    def parse(cls, specs: list[str], start: float, seed: int = 1) -> CanFaults:
        """Parse fault specs relative to a recording starting at ``start`` (epoch s).

        Forms: ``bad-dlc=RATE``, ``unknown-id=RATE``, ``error-frame=RATE``, and windows
        ``lgciu-fault=TIME/SECONDS``, ``wow-glitch=TIME/SECONDS`` (the LGCIU says "on ground"),
        ``silent=TIME/SECONDS``, ``garbage=TIME/SECONDS``; on the CANaerospace layout also
        ``dropout=MESSAGES@TIME/SECONDS`` and ``ncd=MESSAGES@TIME/SECONDS`` (DBC message names
        joined by ``+``, e.g. ``LGCIU_DISCRETES``, ``CALIBRATED_AIRSPEED``). Raises FaultSpecError
        on anything else.
        """
        f = cls(seed=seed)
        for spec in specs:
            kind, _, arg = spec.partition("=")
            try:
                if kind == "bad-dlc":
                    f.bad_dlc_rate = float(arg)
                elif kind == "unknown-id":
                    f.unknown_id_rate = float(arg)
                elif kind == "error-frame":
                    f.error_frame_rate = float(arg)
                elif kind in ("lgciu-fault", "wow-glitch", "silent", "garbage"):
                    m = re.fullmatch(r"([^/]+)/([\d.]+)s?", arg)
                    if not m:
                        raise FaultSpecError(f"{spec!r}: expected TIME/SECONDS")
                    t0 = _parse_time(m.group(1), start)
                    windows = {"lgciu-fault": f.lgciu_fault, "wow-glitch": f.wow_lie,
                               "silent": f.silent, "garbage": f.garbage}[kind]
                    windows.append((t0, t0 + float(m.group(2))))
                elif kind in ("dropout", "ncd"):
                    m = re.fullmatch(r"([\w+]+)@([^/]+)/([\d.]+)s?", arg)
                    if not m:
                        raise FaultSpecError(f"{spec!r}: expected MESSAGES@TIME/SECONDS")
                    names = frozenset(m.group(1).upper().split("+"))
                    t0 = _parse_time(m.group(2), start)
                    (f.dropouts if kind == "dropout" else f.ncd).append(
                        (names, t0, t0 + float(m.group(3))))
                else:
                    raise FaultSpecError(f"{spec!r}: unknown CAN fault {kind!r}")
            except ValueError as e:
                raise FaultSpecError(f"{spec!r}: {e}") from e
        return f


def _fits(msg: DbcMessage, name: str, value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    sig = msg.get_signal_by_name(name)
    lo = sig.minimum if sig.minimum is not None else float("-inf")
    hi = sig.maximum if sig.maximum is not None else float("inf")
    return bool(lo <= value <= hi)


def _frame(t: float, arbitration_id: int, data: bytes, extended: bool = False) -> can.Message:
    return can.Message(timestamp=t, arbitration_id=arbitration_id, is_extended_id=extended,
                       data=data, dlc=len(data))


def _wrong_dlc(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice([k for k in range(9) if k != len(data)])
    return data[:n] if n < len(data) else data + rng.randbytes(n - len(data))


def can_messages(traj: Trajectory, faults: CanFaults | None = None, start: float | None = None,
                 end: float | None = None) -> Iterator[tuple[float, can.Message]]:
    """Yield ``(t, message)`` in time order from ``start`` to ``end`` (epoch s, default: whole flight).

    LGCIU_AIR_GROUND every 0.1 s: AIR_GROUND and both WOW = on ground, LGCIU_FAULT while in a
    fault window or while the recording has no on-ground state. ADC_DATA every 0.125 s: CAS_KT from
    ``IAS``, ALTITUDE_FT from ``altitude``, GROUND_SPEED_KT from ``groundspeed`` (validity bit 0 and
    value 0 when unknown or outside the signal's range). Both carry a 4-bit rolling counter.
    Faults are applied as described in :class:`CanFaults`, reproducibly from ``faults.seed``.
    """
    faults = faults or CanFaults()
    rng = random.Random(faults.seed)
    db = load_dbc()
    lgciu = db.get_message_by_frame_id(LGCIU_ID)
    adc = db.get_message_by_frame_id(ADC_ID)
    t0 = traj.start if start is None else start
    t_end = traj.end if end is None else end
    n_lgciu = n_adc = 0
    tick = 0
    while True:
        t = t0 + tick / _GRID_HZ
        if t > t_end:
            return
        frames: list[tuple[int, bytes]] = []
        if faults.in_window(faults.silent, t):
            tick += 1
            continue
        if tick % (_GRID_HZ // LGCIU_HZ) == 0:
            og = traj.value("onground", t)
            lie = faults.in_window(faults.wow_lie, t)
            bit = 1 if lie else int(bool(og))
            fault = not lie and (og is None or faults.in_lgciu_fault(t))
            frames.append((LGCIU_ID, lgciu.encode({
                "AIR_GROUND": bit, "WOW_LEFT": bit, "WOW_RIGHT": bit,
                "LGCIU_FAULT": int(fault), "COUNTER": n_lgciu % 16})))
            n_lgciu += 1
        if tick % (_GRID_HZ // ADC_HZ) == 0:
            values: dict[str, int | float] = {"COUNTER": n_adc % 16}
            for sig, valid, fld in (("CAS_KT", "CAS_VALID", "IAS"),
                                    ("ALTITUDE_FT", "ALTITUDE_VALID", "altitude"),
                                    ("GROUND_SPEED_KT", "GROUND_SPEED_VALID", "groundspeed")):
                v = traj.value(fld, t)
                ok = _fits(adc, sig, v)
                values[sig] = float(v) if ok else 0
                values[valid] = int(ok)
            frames.append((ADC_ID, adc.encode(values)))
            n_adc += 1
        garbage = faults.in_window(faults.garbage, t)
        for arb_id, data in frames:
            if garbage:
                data = rng.randbytes(len(data))
            elif faults.bad_dlc_rate and rng.random() < faults.bad_dlc_rate:
                data = _wrong_dlc(rng, data)
            yield t, _frame(t, arb_id, data)
            if garbage or (faults.unknown_id_rate and rng.random() < faults.unknown_id_rate):
                yield t, _frame(t, rng.choice(UNKNOWN_IDS), rng.randbytes(rng.randint(0, 8)))
            if faults.error_frame_rate and rng.random() < faults.error_frame_rate:
                yield t, can.Message(timestamp=t, is_error_frame=True, arbitration_id=0,
                                     is_extended_id=False)
        tick += 1


def play_can(messages: Iterable[tuple[float, can.Message]], bus: can.BusABC, speed: float = 60.0,
             ) -> int:
    """Send every message on ``bus``, message ``t`` at wall time ``(t - t_first) / speed``.

    Returns the number of messages sent. A send failure (``can.CanError``) is raised to the caller.
    """
    sent = 0
    t_first: float | None = None
    wall0 = time.monotonic()
    for t, msg in messages:
        if t_first is None:
            t_first = t
        due = wall0 + (t - t_first) / speed
        now = time.monotonic()
        if due - now > 0.002:
            time.sleep(due - now)
        bus.send(msg)
        sent += 1
    return sent


def open_can(interface: str, channel: str | None) -> can.BusABC:
    """Open a python-can bus for sending; raises ValueError naming it if it cannot be opened."""
    try:
        return can.Bus(interface=interface, channel=channel)
    except (can.CanError, OSError, ValueError, ImportError) as e:
        raise ValueError(f"cannot open {interface} {channel}: {e}") from e


def messages(traj: Trajectory, faults: CanFaults, profile: str = "arinc825",
             start: float | None = None, end: float | None = None,
             ) -> Iterator[tuple[float, can.Message]]:
    """The ``(t, message)`` pairs of ``profile``: one of :data:`PROFILES` (ValueError otherwise)."""
    if profile == "integration":
        return can_messages(traj, faults, start, end)
    return canaerospace_messages(traj, faults, start, end, profile=profile)


def with_can(chunks: Iterable[tuple[float, bytes]], traj: Trajectory, faults: CanFaults,
             bus: can.BusABC, layout: str = "arinc825", start: float | None = None,
             end: float | None = None) -> Iterator[tuple[float, bytes]]:
    """The serial chunks unchanged; before yielding chunk ``t``, send every CAN message up to ``t``.

    ``layout``: the CAN profile, one of :data:`PROFILES`. So a player pacing the chunks paces the
    CAN frames too, on one clock.
    """
    pending = messages(traj, faults, layout, start, end)
    nxt = next(pending, None)
    for t, chunk in chunks:
        while nxt is not None and nxt[0] <= t:
            bus.send(nxt[1])
            nxt = next(pending, None)
        yield t, chunk
    while nxt is not None:
        bus.send(nxt[1])
        nxt = next(pending, None)


def main(argv: list[str] | None = None) -> int:
    """Play a recording onto a CAN bus; returns the exit status (2 bad input, 1 bus error)."""
    ap = argparse.ArgumentParser(prog="python -m firmware_bridge.can_sim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording")
    ap.add_argument("--interface", default="udp_multicast", help="python-can interface")
    ap.add_argument("--channel", default="239.74.163.2", help="python-can channel")
    ap.add_argument("--bitrate", type=int, help="bus bitrate (only for interfaces that take one)")
    ap.add_argument("--speed", type=float, default=60.0, help="flight seconds per second")
    ap.add_argument("--start", help="start at TIME (HH:MM:SS UTC or +SECONDS)")
    ap.add_argument("--end", help="end at TIME")
    ap.add_argument("--fault", action="append", default=[], metavar="SPEC",
                    help="bad-dlc=RATE, unknown-id=RATE, error-frame=RATE, lgciu-fault=TIME/SECONDS, "
                    "wow-glitch=TIME/SECONDS, silent=TIME/SECONDS, garbage=TIME/SECONDS")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", "--layout", dest="profile", choices=PROFILES, default="arinc825",
                    help="arinc825.dbc (ARINC 825 29-bit identifiers, the default), canaerospace.dbc "
                    "(CANaerospace 11-bit identifiers) or the integration's own airground.dbc")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="can-sim: %(message)s")
    try:
        traj = load(args.recording)
        faults = CanFaults.parse(args.fault, traj.start, seed=args.seed)
        start = _parse_time(args.start, traj.start) if args.start else None
        end = _parse_time(args.end, traj.start) if args.end else None
    except (OSError, RecordingError, FaultSpecError, ValueError) as e:
        print(f"can-sim: {e}", file=sys.stderr)
        return 2
    kwargs: dict[str, Any] = {"interface": args.interface, "channel": args.channel}
    if args.bitrate is not None:
        kwargs["bitrate"] = args.bitrate
    try:
        bus = can.Bus(**kwargs)
    except (can.CanError, OSError, ValueError, ImportError) as e:
        print(f"can-sim: cannot open {args.interface} {args.channel}: {e}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    try:
        n = play_can(messages(traj, faults, args.profile, start, end), bus, args.speed)
    except can.CanError as e:
        print(f"can-sim: send failed: {e}", file=sys.stderr)
        return 1
    finally:
        bus.shutdown()
    log.info("played %s: %d frames in %.1f s", traj.name, n, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
