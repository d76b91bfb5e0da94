"""The card simulator: a recorded flight in, the card's byte stream out, faults included.

:func:`generate` turns a :class:`~firmware_bridge.recording.Trajectory` into ``(t, bytes)`` chunks,
one per 1/8 s tick of flight time ``t`` (epoch s), holding every frame the card would send in that
tick: each label at its table rate, the discrete inputs (left/right WOW from the recording's
on-ground state, door switches) at 4 Hz, a heartbeat at 1 Hz. The card's timestamp is its
microsecond clock since power-up, which the simulator runs in *flight time*: at any playback speed
the appliance sees the same timestamps a real card would have stamped in real time.

:class:`Faults` adds what real hardware does: garbage bytes between frames, words with a flipped
bit (parity error), No-Computed-Data spells, one-sample WOW glitches, dropouts of chosen labels.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .frame import DiscreteBits, FrameType, Heartbeat, encode_discretes, encode_frame, encode_word
from .labels import EncodeError, LabelSpec, LabelTable, Status
from .recording import Trajectory

__all__ = ["GROUPS", "TICK_HZ", "Faults", "FaultSpecError", "generate"]

TICK_HZ = 8
DISCRETE_HZ = 4
CARD_BOOT_S = 120.0  # the card was powered this long before the recording starts
#: Names that stand for several inputs in fault specs.
GROUPS = {
    "airground": frozenset({"wow_left", "wow_right", "air_ground_word"}),
    "wow": frozenset({"wow_left", "wow_right"}),
    "speeds": frozenset({"computed_airspeed", "true_airspeed", "ground_speed"}),
}


class FaultSpecError(ValueError):
    """A fault specification that cannot be parsed."""


@dataclass
class Faults:
    """Faults to inject. Times are epoch seconds of flight time; windows are [start, end).

    - ``garbage_rate``: probability per frame of 1-40 random bytes (sometimes a false sync) before it
    - ``parity_rate``: probability per ARINC word of one flipped data bit (so parity fails)
    - ``ncd``: (names, start, end): those labels sent with SSM No Computed Data
    - ``dropouts``: (names, start, end): those labels/discretes not sent at all
    - ``wow_glitches``: times at which one discrete sample shows both WOW inverted
    - ``position_jumps``: (dlat, dlon, start, end): the position sent shifted by (dlat, dlon) deg,
      as a spoofed or garbled navigation source would send it
    - the card failing as a whole, windows (start, end): ``silent`` (nothing sent), ``garbage``
      (every byte random), ``wow_lie`` (both WOW discretes say "compressed", no fault)
    """

    garbage_rate: float = 0.0
    parity_rate: float = 0.0
    ncd: list[tuple[frozenset[str], float, float]] = field(default_factory=list)
    dropouts: list[tuple[frozenset[str], float, float]] = field(default_factory=list)
    wow_glitches: list[float] = field(default_factory=list)
    position_jumps: list[tuple[float, float, float, float]] = field(default_factory=list)
    silent: list[tuple[float, float]] = field(default_factory=list)
    garbage: list[tuple[float, float]] = field(default_factory=list)
    wow_lie: list[tuple[float, float]] = field(default_factory=list)
    seed: int = 1

    @staticmethod
    def in_window(windows: list[tuple[float, float]], t: float) -> bool:
        """True if ``t`` (epoch s) lies in one of ``windows``."""
        return any(start <= t < end for start, end in windows)

    @staticmethod
    def _active(windows: list[tuple[frozenset[str], float, float]], name: str, t: float) -> bool:
        return any(name in names and start <= t < end for names, start, end in windows)

    def is_ncd(self, name: str, t: float) -> bool:
        """True if label ``name`` is in an NCD spell at ``t``."""
        return self._active(self.ncd, name, t)

    def is_dropped(self, name: str, t: float) -> bool:
        """True if ``name`` is dropped out at ``t``."""
        return self._active(self.dropouts, name, t)

    @classmethod
    def parse(cls, specs: list[str], start: float, seed: int = 1) -> Faults:
        """Parse fault specs relative to a recording starting at ``start`` (epoch s).

        Forms: ``garbage=RATE``, ``parity=RATE``, ``wow-glitch=TIME``, windows of the whole card
        failing ``silent=TIME/SECONDS``, ``garbage=TIME/SECONDS``, ``wow-glitch=TIME/SECONDS``
        (WOW lies "compressed" for the window),
        ``dropout=NAMES@TIME/SECONDS``, ``ncd=NAMES@TIME/SECONDS``,
        ``position-jump=DLAT,DLON@TIME/SECONDS`` (deg); NAMES is a comma-free
        ``+``-joined list of parameter names, label numbers (``206``) or groups (airground, wow,
        speeds); TIME is ``HH:MM:SS`` UTC on the recording's day or ``+SECONDS`` from its start.
        Raises FaultSpecError on anything else.
        """
        f = cls(seed=seed)
        table = LabelTable.default()
        for spec in specs:
            kind, _, arg = spec.partition("=")
            try:
                span = re.fullmatch(r"([^/@]+)/([\d.]+)s?", arg)
                if kind in ("silent", "garbage", "wow-glitch") and span:
                    t0 = _parse_time(span.group(1), start)
                    {"silent": f.silent, "garbage": f.garbage, "wow-glitch": f.wow_lie}[kind].append(
                        (t0, t0 + float(span.group(2))))
                elif kind == "garbage":
                    f.garbage_rate = float(arg)
                elif kind == "parity":
                    f.parity_rate = float(arg)
                elif kind == "wow-glitch":
                    f.wow_glitches.append(_parse_time(arg, start))
                elif kind == "position-jump":
                    m = re.fullmatch(r"([-+\d.]+),([-+\d.]+)@([^/]+)/([\d.]+)s?", arg)
                    if not m:
                        raise FaultSpecError(f"{spec!r}: expected DLAT,DLON@TIME/SECONDS")
                    t0 = _parse_time(m.group(3), start)
                    f.position_jumps.append((float(m.group(1)), float(m.group(2)), t0,
                                             t0 + float(m.group(4))))
                elif kind in ("dropout", "ncd"):
                    m = re.fullmatch(r"([\w+]+)@([^/]+)/([\d.]+)s?", arg)
                    if not m:
                        raise FaultSpecError(f"{spec!r}: expected NAMES@TIME/SECONDS")
                    names = _names(m.group(1), table)
                    t0 = _parse_time(m.group(2), start)
                    window = (names, t0, t0 + float(m.group(3)))
                    (f.dropouts if kind == "dropout" else f.ncd).append(window)
                else:
                    raise FaultSpecError(f"{spec!r}: unknown fault {kind!r}")
            except ValueError as e:
                raise FaultSpecError(f"{spec!r}: {e}") from e
        return f


def _names(text: str, table: LabelTable) -> frozenset[str]:
    out: set[str] = set()
    for part in text.split("+"):
        if part in GROUPS:
            out |= GROUPS[part]
        elif re.fullmatch(r"[0-7]{3}", part) and int(part, 8) in table.by_label:
            out.add(table.by_label[int(part, 8)].name)
        elif part in table.by_name or part in ("wow_left", "wow_right"):
            out.add(part)
        else:
            raise FaultSpecError(f"unknown input {part!r}")
    return frozenset(out)


def _parse_time(text: str, start: float) -> float:
    if text.startswith("+"):
        return start + float(text[1:])
    t = dt.time.fromisoformat(text)
    day = dt.datetime.fromtimestamp(start, dt.UTC).date()
    ts = dt.datetime.combine(day, t, dt.UTC).timestamp()
    return ts + 86400 if ts < start - 3600 else ts


def _signed_angle(v: Any) -> Any:
    return None if v is None else (float(v) + 180.0) % 360.0 - 180.0


def _value_sources(traj: Trajectory) -> dict[str, Callable[[float], Any]]:
    """Label name -> function of flight time giving the value to send (None = no data)."""
    val = traj.value

    def utc_s(t: float) -> int:
        return int(t % 86400)

    def utc_date(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()

    def flight_chars(i: int) -> Callable[[float], Any]:
        def chars(t: float) -> Any:
            cs = val("callsign", t)
            return None if cs is None else str(cs).ljust(8)[2 * i:2 * i + 2]
        return chars

    def on_ground_bit(t: float) -> Any:
        og = val("onground", t)
        return None if og is None else int(bool(og))

    return {
        "pressure_altitude": lambda t: val("altitude", t),
        "computed_airspeed": lambda t: val("IAS", t),
        "true_airspeed": lambda t: val("TAS", t),
        "altitude_rate": lambda t: val("vertical_rate", t),
        "ground_speed": lambda t: val("groundspeed", t),
        "latitude": lambda t: val("latitude", t),
        "longitude": lambda t: val("longitude", t),
        "track_angle_true": lambda t: _signed_angle(val("track", t)),
        "true_heading": lambda t: _signed_angle(val("heading", t)),
        "utc_time": utc_s,
        "utc_date": utc_date,
        "flight_number_1": flight_chars(0),
        "flight_number_2": flight_chars(1),
        "flight_number_3": flight_chars(2),
        "flight_number_4": flight_chars(3),
        "air_ground_word": on_ground_bit,
    }


def generate(traj: Trajectory, faults: Faults | None = None, *, table: LabelTable | None = None,
             channel: int = 1, start: float | None = None, end: float | None = None,
             ) -> Iterator[tuple[float, bytes]]:
    """Yield ``(t, chunk)`` for each 1/8 s tick of the flight from ``start`` to ``end`` (epoch s).

    ``chunk`` holds the frames of that tick, faults applied. Labels whose value the recording lacks
    at that time are sent with SSM No Computed Data, as an air data computer does.
    """
    table = table or LabelTable.default()
    faults = faults or Faults()
    rng = random.Random(faults.seed)
    sources = _value_sources(traj)
    if faults.position_jumps:
        _shift_position(sources, faults.position_jumps)
    t0 = traj.start if start is None else start
    t_end = traj.end if end is None else end
    plan = [(spec, max(1, round(TICK_HZ / spec.rate_hz)), sources[spec.name],
             _normal_encoder(spec, table.label_reversed)) for spec in table
            if spec.name in sources]
    discrete_every = TICK_HZ // DISCRETE_HZ
    glitches = sorted(faults.wow_glitches)
    any_faults = bool(faults.ncd or faults.dropouts)
    encoded: dict[tuple[str, type, Any, Status], int] = {}
    tick = 0
    while True:
        t = t0 + tick / TICK_HZ
        if t > t_end:
            return
        if faults.silent and faults.in_window(faults.silent, t):
            yield t, b""  # nothing on the line (an empty chunk keeps a paired CAN stream paced)
            tick += 1
            continue
        base_us = int((t - traj.start + CARD_BOOT_S) * 1e6)
        parts: list[bytes] = []
        slot = 0
        for spec, every, source, normal in plan:
            if tick % every:
                continue
            slot += 1
            name = spec.name
            if any_faults and faults.is_dropped(name, t):
                continue
            value = source(t)
            status = Status.NORMAL
            if value is None or (any_faults and faults.is_ncd(name, t)):
                status, value = Status.NO_COMPUTED_DATA, (value if value is not None else 0)
            try:
                if normal is not None and status is Status.NORMAL:
                    word = normal(value)
                else:
                    # the other encodings (discrete words, UTC, date, NCD) repeat: encoded once
                    key = (name, type(value), value, status)
                    word = encoded.get(key, -1)
                    if word < 0:
                        word = spec.encode(value, status, sdi=0,
                                           label_reversed=table.label_reversed)
                        if len(encoded) >= 1 << 16:
                            encoded.clear()
                        encoded[key] = word
            except EncodeError:
                word = spec.encode(0, Status.NO_COMPUTED_DATA, sdi=0,
                                   label_reversed=table.label_reversed)
            if faults.parity_rate and rng.random() < faults.parity_rate:
                word ^= 1 << rng.randrange(10, 29)
            parts.append(encode_word(channel, base_us + slot * 400, word))
        if tick % discrete_every == 0:
            parts.append(_discretes(traj, faults, t, base_us, glitches))
        if tick % TICK_HZ == 0:
            hb = Heartbeat(1, 0, int(base_us // 1_000_000), 0, 0)
            parts.append(encode_frame(FrameType.HEARTBEAT, 0, base_us + 50_000, hb.pack()))
        if faults.garbage_rate:
            parts = [_garbage(rng) + p if rng.random() < faults.garbage_rate else p for p in parts]
        chunk = b"".join(parts)
        if faults.garbage and faults.in_window(faults.garbage, t):
            chunk = rng.randbytes(len(chunk))
        yield t, chunk
        tick += 1


def _shift_position(sources: dict[str, Callable[[float], Any]],
                    jumps: list[tuple[float, float, float, float]]) -> None:
    """Wrap the latitude and longitude sources so they send the jumped position in each window."""
    for i, name in ((0, "latitude"), (1, "longitude")):
        def shifted(t: float, base: Callable[[float], Any] = sources[name], i: int = i) -> Any:
            v = base(t)
            if v is None:
                return None
            for jump in jumps:
                if jump[2] <= t < jump[3]:
                    v = float(v) + jump[i]
            return v
        sources[name] = shifted


def _normal_encoder(spec: LabelSpec, label_reversed: bool) -> Callable[[Any], int] | None:
    """A fast encoder of ``spec``'s Normal-status words (BNR only, SDI 0), or None.

    The same word as ``spec.encode(value, Status.NORMAL, sdi=0)`` (two's complement, rounded to
    the nearest count, saturating half a count below range, odd parity); raises EncodeError
    outside the range as it does. The simulator encodes a third of a million words a flight.
    """
    if spec.encoding != "bnr":
        return None
    lsb, res = spec.lsb, spec.resolution
    width = 30 - lsb
    top = 1 << (width - 1)
    mask = (1 << width) - 1
    base = spec.encode(0.0, Status.NORMAL, sdi=0, label_reversed=label_reversed) & 0x7FFFFFFF
    shift = lsb - 1

    def encode(value: Any) -> int:
        v = float(value)
        counts = round(v / res)
        if counts == top and v < res * counts:
            counts -= 1
        if not -top <= counts < top:
            raise EncodeError(f"{value} outside BNR range ±{res * top}")
        word = base | ((counts & mask) << shift)
        return word | 0x80000000 if word.bit_count() & 1 == 0 else word
    return encode


def _discretes(traj: Trajectory, faults: Faults, t: float, base_us: int,
               glitches: list[float]) -> bytes:
    if faults.is_dropped("wow_left", t) or faults.is_dropped("wow_right", t):
        return b""
    og = traj.value("onground", t)
    states = 0
    if og:
        states |= DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT
    if glitches and glitches[0] <= t:
        glitches.pop(0)
        states ^= DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT
    lie = bool(faults.wow_lie) and faults.in_window(faults.wow_lie, t)
    if lie:
        states |= DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT
    gs = traj.value("groundspeed", t)
    parked = bool(og) and (gs is None or gs < 1.0)
    if not parked:
        states |= DiscreteBits.DOOR_FWD_CLOSED | DiscreteBits.DOOR_AFT_CLOSED
    fault_mask = 0 if og is not None or lie else int(DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT)
    return encode_discretes(base_us + 25_000, int(states), fault_mask)


def _garbage(rng: random.Random) -> bytes:
    junk = bytearray(rng.randbytes(rng.randint(1, 40)))
    if rng.random() < 0.3:  # a false sync pattern, to exercise resynchronisation
        i = rng.randrange(len(junk))
        junk[i:i] = b"\xa5\x5a"
    return bytes(junk)
