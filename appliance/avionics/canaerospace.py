"""CANaerospace frames (``firmware_bridge/canaerospace.dbc``) into the chain's parameters, as data.

Every CANaerospace frame carries a header (node id, data type, service code, message code) and a
4-byte value; the DBC describes the layout, this module says which chain parameter each
identifier feeds and how to convert its SI value:

======== ======================= ==================== ======= ==========================
id       DBC message             parameter            unit    from SI
======== ======================= ==================== ======= ==========================
200      LGCIU_DISCRETES         air_ground,          bool    FAULT when LGCIU_FAULT or
                                 wow_left, wow_right,         data type NODATA/ERROR
                                 door_fwd_closed,
                                 door_aft_closed
314      ALTITUDE_RATE           altitude_rate        ft/min  m/s x 196.85
315      INDICATED_AIRSPEED      indicated_airspeed   kt      m/s x 1.9438
317      CALIBRATED_AIRSPEED     computed_airspeed    kt      m/s x 1.9438
322      STANDARD_ALTITUDE       pressure_altitude    ft      m / 0.3048
1036     GPS_AIRCRAFT_LATITUDE   latitude             deg
1037     GPS_AIRCRAFT_LONGITUDE  longitude            deg
1039     GPS_GROUND_SPEED        ground_speed         kt      m/s x 1.9438
1040     GPS_TRUE_TRACK          track_angle_true     deg
1200     UTC                     utc_time             s       of the day, from hh mm ss
1206     DATE                    utc_date             date    ISO, from day, month, year
======== ======================= ==================== ======= ==========================

Validity from the data type: the expected one (FLOAT, BLONG, UCHAR4) is VALID, NODATA is
NO_COMPUTED_DATA, ERROR is FAILURE_WARNING; any other type is a decode error (nothing produced).
A valid value outside the label table's plausible range for that parameter is OUT_OF_RANGE. The
parameter's ``source`` is the reader's name plus the sending node (``can/node2``), so redundant
units on one bus are separate sources of one parameter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from firmware_bridge.labels import LabelTable

from .params import Parameter, SourceStats, Validity

__all__ = ["DATA_TYPE", "FLOATS", "MESSAGES", "decode_canaerospace"]

KT_PER_MS = 3600.0 / 1852.0
FT_PER_M = 1.0 / 0.3048
#: CANaerospace data type codes.
DATA_TYPE = {"NODATA": 0, "ERROR": 1, "FLOAT": 2, "BLONG": 5, "UCHAR4": 16}
#: FLOAT messages: DBC name -> (parameter, unit, factor from the SI value).
FLOATS: dict[str, tuple[str, str, float]] = {
    "ALTITUDE_RATE": ("altitude_rate", "ft/min", 60.0 * FT_PER_M),
    "INDICATED_AIRSPEED": ("indicated_airspeed", "kt", KT_PER_MS),
    "CALIBRATED_AIRSPEED": ("computed_airspeed", "kt", KT_PER_MS),
    "STANDARD_ALTITUDE": ("pressure_altitude", "ft", FT_PER_M),
    "GPS_AIRCRAFT_LATITUDE": ("latitude", "deg", 1.0),
    "GPS_AIRCRAFT_LONGITUDE": ("longitude", "deg", 1.0),
    "GPS_GROUND_SPEED": ("ground_speed", "kt", KT_PER_MS),
    "GPS_TRUE_TRACK": ("track_angle_true", "deg", 1.0),
}
_LGCIU_BITS = (("AIR_GROUND", "air_ground"), ("WOW_LEFT", "wow_left"),
               ("WOW_RIGHT", "wow_right"), ("DOOR_FWD_CLOSED", "door_fwd_closed"),
               ("DOOR_AFT_CLOSED", "door_aft_closed"))
#: Every DBC message this module decodes.
MESSAGES = frozenset(FLOATS) | {"LGCIU_DISCRETES", "UTC", "DATE"}
#: Plausible ranges of parameters the ARINC label table does not have.
_EXTRA_RANGES = {"indicated_airspeed": (0.0, 600.0)}

Decoded = dict[str, float]


class BadFrame(ValueError):
    """A frame whose data type or fields cannot be a value of its identifier."""


def _between(lo: float, hi: float) -> Callable[[float], bool]:
    def check(v: float) -> bool:
        return lo <= v <= hi
    return check


def _ranges(table: LabelTable) -> dict[str, Callable[[float], bool]]:
    out = {name: _between(lo, hi) for name, (lo, hi) in _EXTRA_RANGES.items()}
    for spec in table:
        out[spec.name] = spec.in_range
    return out


class _Decoder:
    """Stateless converter of one decoded CANaerospace frame into parameters."""

    def __init__(self, table: LabelTable) -> None:
        self.in_range = _ranges(table)

    def __call__(self, name: str, v: Decoded, t: float, source: str,
                 st: SourceStats) -> list[Parameter]:
        dtype = int(v["DATA_TYPE"])
        src = f"{source}/node{int(v['NODE_ID'])}"
        if name == "LGCIU_DISCRETES":
            if dtype == DATA_TYPE["BLONG"]:
                validity = Validity.FAULT if v["LGCIU_FAULT"] else Validity.VALID
            elif dtype in (DATA_TYPE["NODATA"], DATA_TYPE["ERROR"]):
                validity = Validity.FAULT
            else:
                raise BadFrame(f"LGCIU data type {dtype}")
            return [Parameter(p, bool(v[sig]), "bool", validity, t, src) for sig, p in _LGCIU_BITS]
        if name in FLOATS:
            param, unit, factor = FLOATS[name]
            value = float(v["VALUE"]) * factor
            validity = self._validity(dtype, DATA_TYPE["FLOAT"], st)
            if validity is Validity.VALID and not self.in_range.get(param, _any)(value):
                st.out_of_range += 1
                validity = Validity.OUT_OF_RANGE
            return [Parameter(param, round(value, 6), unit, validity, t, src)]
        validity = self._validity(dtype, DATA_TYPE["UCHAR4"], st)
        if name == "UTC":
            h, m, s = int(v["HOURS"]), int(v["MINUTES"]), int(v["SECONDS"])
            if validity is Validity.VALID and not (h < 24 and m < 60 and s < 60):
                raise BadFrame(f"UTC {h}:{m}:{s}")
            return [Parameter("utc_time", h * 3600 + m * 60 + s, "s", validity, t, src)]
        try:
            day = dt.date(int(v["YEAR"]), int(v["MONTH"]), int(v["DAY"])).isoformat()
        except ValueError as e:
            if validity is Validity.VALID:
                raise BadFrame(str(e)) from e
            day = ""
        return [Parameter("utc_date", day, "date", validity, t, src)]

    @staticmethod
    def _validity(dtype: int, expected: int, st: SourceStats) -> Validity:
        if dtype == expected:
            return Validity.VALID
        if dtype == DATA_TYPE["NODATA"]:
            st.no_computed_data += 1
            return Validity.NO_COMPUTED_DATA
        if dtype == DATA_TYPE["ERROR"]:
            st.failure_warning += 1
            return Validity.FAILURE_WARNING
        raise BadFrame(f"data type {dtype}, expected {expected}")


def _any(_v: float) -> bool:
    return True


def decode_canaerospace(table: LabelTable) -> Callable[[str, Decoded, float, str, SourceStats],
                                                       list[Parameter]]:
    """The converter ``(dbc message name, signals, t, source, stats) -> parameters``.

    Raises :class:`BadFrame` (a ValueError) for a frame that cannot be a value of its identifier.
    """
    return _Decoder(table)
