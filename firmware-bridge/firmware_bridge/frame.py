"""The card's serial frame protocol (see ``PROTOCOL.md``): encoding and a resynchronising decoder.

Frame layout (all integers little-endian)::

    offset  size  field
    0       2     sync 0xA5 0x5A
    2       1     type (FrameType)
    3       1     channel (ARINC receiver 0-7; 0 for discretes and status)
    4       1     payload length N (0..MAX_PAYLOAD)
    5       8     card timestamp, microseconds since card power-up (uint64)
    13      N     payload
    13+N    2     CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over bytes 2 .. 13+N-1

The decoder takes bytes in any chunking, skips garbage, drops frames whose CRC fails or whose
length is impossible, and resynchronises on the next sync pattern; every byte it throws away is
counted in :class:`DecoderStats`.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

__all__ = [
    "HEADER",
    "MAX_PAYLOAD",
    "SYNC",
    "DecoderStats",
    "DiscreteBits",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Heartbeat",
    "RawFrame",
    "encode_discretes",
    "encode_frame",
    "encode_word",
]

SYNC: Final = b"\xa5\x5a"
HEADER: Final = struct.Struct("<2sBBBQ")  # sync, type, channel, length, timestamp_us
_HEADER_NO_SYNC: Final = struct.Struct("<2xBBBQ")  # the same, sync skipped (the decoder found it)
_WORD_BODY: Final = struct.Struct("<2sBBBQI")  # an A429_WORD frame without its CRC
MAX_PAYLOAD: Final = 64
_CRC: Final = struct.Struct("<H")
_U32: Final = struct.Struct("<I")


class FrameType(enum.IntEnum):
    """Frame types the card sends."""

    A429_WORD = 0x01  #: payload: uint32 ARINC 429 word as received (parity not checked by card)
    DISCRETES = 0x02  #: payload: uint16 input states, uint16 fault mask (see DiscreteBits)
    HEARTBEAT = 0x03  #: payload: Heartbeat


_A429: Final = int(FrameType.A429_WORD)


class DiscreteBits(enum.IntFlag):
    """Bits of the discrete-input state word (1 = asserted: WOW compressed, door closed)."""

    WOW_LEFT = 1 << 0
    WOW_RIGHT = 1 << 1
    DOOR_FWD_CLOSED = 1 << 2
    DOOR_AFT_CLOSED = 1 << 3
    PA_ACTIVE = 1 << 4  #: a passenger-address announcement is in progress (players pause)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Card status, once a second: firmware version, uptime (s), card-side error counters."""

    STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBIHH")

    fw_major: int
    fw_minor: int
    uptime_s: int
    rx_overruns: int
    rx_errors: int

    def pack(self) -> bytes:
        """Serialise as a HEARTBEAT payload (10 bytes)."""
        return self.STRUCT.pack(self.fw_major, self.fw_minor, self.uptime_s,
                                self.rx_overruns, self.rx_errors)

    @classmethod
    def unpack(cls, payload: bytes) -> Heartbeat:
        """Parse a HEARTBEAT payload; raises struct.error on a wrong length."""
        return cls(*cls.STRUCT.unpack(payload))


class Frame(NamedTuple):
    """One received frame: type (int, see FrameType), channel, card time in µs, payload.

    A named tuple (immutable; built in a fraction of a frozen dataclass's time: the decoder makes
    one per frame, hundreds of thousands per flight).
    """

    type: int
    channel: int
    t_us: int
    payload: bytes

    def word(self) -> int:
        """The ARINC word of an A429_WORD frame; raises struct.error on a short payload."""
        return int(_U32.unpack(self.payload)[0])


#: A frame as the decoder's hot path returns it (:meth:`FrameDecoder.feed_raw`): a plain tuple
#: of :class:`Frame`'s fields in their order (type, channel, t_us, payload).
RawFrame = tuple[int, int, int, bytes]


def encode_frame(ftype: int, channel: int, t_us: int, payload: bytes) -> bytes:
    """Build one frame; raises ValueError if the payload exceeds MAX_PAYLOAD."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = HEADER.pack(SYNC, ftype, channel, len(payload), t_us) + payload
    return body + _CRC.pack(binascii.crc_hqx(body[2:], 0xFFFF))


def encode_word(channel: int, t_us: int, word: int) -> bytes:
    """Build an A429_WORD frame for ``word`` (32-bit int): as :func:`encode_frame`, in one pack."""
    body = _WORD_BODY.pack(SYNC, _A429, channel, 4, t_us, word & 0xFFFFFFFF)
    return body + _CRC.pack(binascii.crc_hqx(body[2:], 0xFFFF))


def encode_discretes(t_us: int, states: int, fault_mask: int = 0) -> bytes:
    """Build a DISCRETES frame: ``states`` and ``fault_mask`` are DiscreteBits masks."""
    return encode_frame(FrameType.DISCRETES, 0, t_us, struct.pack("<HH", states, fault_mask))


@dataclass(slots=True)
class DecoderStats:
    """Counters of what the decoder received and threw away."""

    bytes_in: int = 0
    frames: int = 0
    crc_errors: int = 0
    bad_length: int = 0
    garbage_bytes: int = 0


_KNOWN_TYPES: Final = frozenset(int(t) for t in FrameType)


class FrameDecoder:
    """Incremental frame decoder: ``feed(bytes) -> list[Frame]``.

    Keeps at most one partial frame between calls. Garbage, CRC failures and impossible lengths
    are skipped byte by byte until the next sync pattern (counted in ``stats``); a frame with an
    unknown type but a good CRC is returned as is (the caller counts it).
    """

    def __init__(self) -> None:
        """Start with an empty buffer and zeroed stats."""
        self._buf = bytearray()
        self.stats = DecoderStats()

    def reset(self) -> None:
        """Drop any partial frame (after the line was reopened); the stats are kept."""
        self.stats.garbage_bytes += len(self._buf)
        self._buf.clear()

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the complete, CRC-checked frames they finish."""
        new, frame = tuple.__new__, Frame
        return [new(frame, f) for f in self.feed_raw(data)]

    def feed_raw(self, data: bytes) -> list[RawFrame]:
        """As :meth:`feed`, each frame a plain tuple of Frame's fields (:data:`RawFrame`).

        The chain's hot path: a plain tuple is built in a fraction of a named tuple's time.
        """
        st = self.stats
        st.bytes_in += len(data)
        buf = self._buf
        out: list[RawFrame] = []
        pos = 0
        # One immutable copy per call: its slices are the payloads (one allocation per frame).
        # Without a partial frame kept from the last call, the bytes received are that copy.
        if buf:
            buf += data
            view = bytes(buf)
        else:
            view = bytes(data)
        n = len(view)
        unpack = _HEADER_NO_SYNC.unpack_from
        crc = binascii.crc_hqx
        find = view.find
        garbage = 0
        while True:
            # in a clean stream the next frame starts where the last one ended
            i = pos if n - pos > 1 and view[pos] == 0xA5 and view[pos + 1] == 0x5A else find(SYNC, pos)
            if i < 0:
                # keep a trailing 0xA5 that may start the next sync
                keep = 1 if n and view[n - 1] == 0xA5 and n - 1 >= pos else 0
                garbage += n - pos - keep
                pos = n - keep
                break
            garbage += i - pos
            pos = i
            if n - pos >= 19 and view[pos + 4] == 4:  # an ARINC word's frame, whole
                # the fields read byte by byte (native integer operations once compiled)
                if crc(view[pos + 2:pos + 17], 0xFFFF) != view[pos + 17] | view[pos + 18] << 8:
                    st.crc_errors += 1
                    garbage += 1
                    pos += 1
                    continue
                out.append((view[pos + 2], view[pos + 3],
                            view[pos + 5] | view[pos + 6] << 8 | view[pos + 7] << 16
                            | view[pos + 8] << 24 | view[pos + 9] << 32 | view[pos + 10] << 40
                            | view[pos + 11] << 48 | view[pos + 12] << 56,
                            view[pos + 13:pos + 17]))
                pos += 19
                continue
            if n - pos < 13:
                break
            ftype, chan, length, t_us = unpack(view, pos)
            if length > MAX_PAYLOAD:
                st.bad_length += 1
                garbage += 1
                pos += 1
                continue
            end = pos + 13 + length
            if n < end + 2:
                break
            if crc(view[pos + 2:end], 0xFFFF) != view[end] | (view[end + 1] << 8):
                st.crc_errors += 1
                garbage += 1
                pos += 1
                continue
            out.append((ftype, chan, t_us, view[end - length:end]))
            pos = end + 2
        st.garbage_bytes += garbage
        if buf:
            del buf[:pos]
        elif pos < n:
            buf += view[pos:]
        st.frames += len(out)
        return out
