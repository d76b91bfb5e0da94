"""A recorded flight as CANaerospace or ARINC 825 frames, the way the aircraft's units send them.

The CANaerospace profile uses the 11-bit identifiers of ``canaerospace.dbc``; the ARINC 825 profile
the 29-bit identifiers of ``arinc825.dbc`` (:mod:`firmware_bridge.arinc825`), same payloads.

:func:`canaerospace_messages` turns a :class:`~firmware_bridge.recording.Trajectory` into
``(t, message)`` pairs, ``t`` and ``message.timestamp`` in flight time (epoch s). Rates (per second
of flight time): air data (calibrated airspeed 317 from the recording's ``IAS``, standard altitude
322, altitude rate 314) and GNSS ground speed 1039 at 8 Hz; the LGCIU discretes (user-defined id
200: air/ground, left/right weight on wheels, door switches) at 8 Hz; latitude/longitude
1036/1037 at 4 Hz; UTC 1200 and date 1206 at 1 Hz. Values go out in SI units as CANaerospace
specifies (m, m/s, deg); a value the recording lacks goes out with data type NODATA, as a unit
without a computed value does. Each unit has its own node id and rolling message code.

Faults (:class:`~firmware_bridge.can_sim.CanFaults`) apply as on the integration layout, plus the
failure windows of a whole source: ``silent`` (nothing sent), ``garbage`` (each frame's payload
replaced by random bytes, random identifiers in between) and ``wow_lie`` (the LGCIU reports "on
ground", weight on wheels on both sides, no fault), and per message ``dropouts`` (not sent) and
``ncd`` (sent with data type NODATA).
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import can
import cantools
from cantools.database.can import Database

from .recording import Trajectory

if TYPE_CHECKING:
    from .can_sim import CanFaults

__all__ = ["CANAS_DBC", "DATA_TYPES", "KT_PER_MS", "M_PER_FT", "NODE_IDS", "RATES_HZ",
           "canaerospace_messages", "load_canaerospace"]

CANAS_DBC = "canaerospace.dbc"
#: CANaerospace data type codes used here.
DATA_TYPES = {"NODATA": 0, "ERROR": 1, "FLOAT": 2, "BLONG": 5, "UCHAR4": 16}
KT_PER_MS = 3600.0 / 1852.0
M_PER_FT = 0.3048
GRID_HZ = 8
#: Message name -> transmit rate (Hz of flight time).
RATES_HZ = {"LGCIU_DISCRETES": 8, "CALIBRATED_AIRSPEED": 8, "STANDARD_ALTITUDE": 8,
            "ALTITUDE_RATE": 8, "GPS_GROUND_SPEED": 8, "GPS_AIRCRAFT_LATITUDE": 4,
            "GPS_AIRCRAFT_LONGITUDE": 4, "UTC": 1, "DATE": 1}
#: The sending unit (node id) of each message.
NODE_IDS = {"LGCIU_DISCRETES": 1, "CALIBRATED_AIRSPEED": 2, "STANDARD_ALTITUDE": 2,
            "ALTITUDE_RATE": 2, "GPS_GROUND_SPEED": 3, "GPS_AIRCRAFT_LATITUDE": 3,
            "GPS_AIRCRAFT_LONGITUDE": 3, "UTC": 3, "DATE": 3}


def load_canaerospace() -> Database:
    """The CANaerospace database shipped in this package (raises cantools' ParseError if broken)."""
    text = importlib.resources.files("firmware_bridge").joinpath(CANAS_DBC).read_text()
    db = cantools.database.load_string(text, database_format="dbc")
    assert isinstance(db, Database)
    return db


def _float_value(traj: Trajectory, name: str, t: float) -> float | None:
    val = traj.value
    if name == "CALIBRATED_AIRSPEED":
        v = val("IAS", t)
        return None if v is None else float(v) / KT_PER_MS
    if name == "STANDARD_ALTITUDE":
        v = val("altitude", t)
        return None if v is None else float(v) * M_PER_FT
    if name == "ALTITUDE_RATE":
        v = val("vertical_rate", t)
        return None if v is None else float(v) * M_PER_FT / 60.0
    if name == "GPS_GROUND_SPEED":
        v = val("groundspeed", t)
        return None if v is None else float(v) / KT_PER_MS
    if name == "GPS_AIRCRAFT_LATITUDE":
        v = val("latitude", t)
        return None if v is None else float(v)
    if name == "GPS_AIRCRAFT_LONGITUDE":
        v = val("longitude", t)
        return None if v is None else float(v)
    raise KeyError(name)


def _values(traj: Trajectory, faults: CanFaults, name: str, t: float) -> tuple[str, dict[str, Any]]:
    """(data type name, signal values without the header) of message ``name`` at ``t``."""
    if name == "LGCIU_DISCRETES":
        og = traj.value("onground", t)
        lie = faults.in_window(faults.wow_lie, t)
        bit = 1 if lie else int(bool(og))
        gs = traj.value("groundspeed", t)
        parked = bool(og) and (gs is None or gs < 1.0)
        fault = not lie and (og is None or faults.in_lgciu_fault(t))
        return "BLONG", {"AIR_GROUND": bit, "WOW_LEFT": bit, "WOW_RIGHT": bit,
                         "LGCIU_FAULT": int(fault), "DOOR_FWD_CLOSED": int(not parked),
                         "DOOR_AFT_CLOSED": int(not parked)}
    if name == "UTC":
        d = dt.datetime.fromtimestamp(t, dt.UTC)
        return "UCHAR4", {"HOURS": d.hour, "MINUTES": d.minute, "SECONDS": d.second, "SPARE": 0}
    if name == "DATE":
        d = dt.datetime.fromtimestamp(t, dt.UTC)
        return "UCHAR4", {"DAY": d.day, "MONTH": d.month, "YEAR": d.year}
    v = _float_value(traj, name, t)
    if v is None:
        return "NODATA", {"VALUE": 0.0}
    return "FLOAT", {"VALUE": v}


def canaerospace_messages(traj: Trajectory, faults: CanFaults, start: float | None = None,
                          end: float | None = None, profile: str = "canaerospace",
                          ) -> Iterator[tuple[float, can.Message]]:
    """Yield ``(t, message)`` in time order from ``start`` to ``end`` (epoch s, default: all).

    ``profile``: ``"canaerospace"`` (11-bit identifiers of ``canaerospace.dbc``) or ``"arinc825"``
    (29-bit identifiers of ``arinc825.dbc``, :mod:`firmware_bridge.arinc825`); the payloads are
    the same. Faults: ``bad_dlc_rate``, ``unknown_id_rate``, ``error_frame_rate``, ``lgciu_fault``
    as on the integration layout; ``silent``, ``garbage`` and ``wow_lie`` windows (module doc).
    Reproducible from ``faults.seed``. ValueError for another profile.
    """
    from .arinc825 import UNKNOWN_A825_IDS, load_arinc825
    from .can_sim import UNKNOWN_IDS, _frame, _wrong_dlc

    if profile not in ("canaerospace", "arinc825"):
        raise ValueError(f"unknown CAN profile {profile!r}")
    extended = profile == "arinc825"
    unknown_ids = UNKNOWN_A825_IDS if extended else UNKNOWN_IDS
    rng = random.Random(faults.seed)
    db = load_arinc825() if extended else load_canaerospace()
    msgs = [(db.get_message_by_name(n), GRID_HZ // hz) for n, hz in RATES_HZ.items()]
    codes = dict.fromkeys(RATES_HZ, 0)
    t0 = traj.start if start is None else start
    t_end = traj.end if end is None else end
    tick = 0
    while True:
        t = t0 + tick / GRID_HZ
        if t > t_end:
            return
        tick += 1
        if faults.in_window(faults.silent, t):
            continue
        garbage = faults.in_window(faults.garbage, t)
        for msg, every in msgs:
            if (tick - 1) % every:
                continue
            name = msg.name
            if faults.dropouts and faults.in_named(faults.dropouts, name, t):
                continue
            dtype, values = _values(traj, faults, name, t)
            if faults.ncd and faults.in_named(faults.ncd, name, t):
                dtype = "NODATA"
            header = {"NODE_ID": NODE_IDS[name], "DATA_TYPE": DATA_TYPES[dtype],
                      "SERVICE_CODE": 0, "MESSAGE_CODE": codes[name] % 256}
            codes[name] += 1
            data = bytes(msg.encode({**header, **values}, scaling=True, strict=False))
            if garbage:
                data = rng.randbytes(8)
            elif faults.bad_dlc_rate and rng.random() < faults.bad_dlc_rate:
                data = _wrong_dlc(rng, data)
            yield t, _frame(t, msg.frame_id, data, extended)
            if garbage or (faults.unknown_id_rate and rng.random() < faults.unknown_id_rate):
                yield t, _frame(t, rng.choice(unknown_ids), rng.randbytes(rng.randint(0, 8)),
                                extended)
            if faults.error_frame_rate and rng.random() < faults.error_frame_rate:
                yield t, can.Message(timestamp=t, is_error_frame=True, arbitration_id=0,
                                     is_extended_id=extended)
