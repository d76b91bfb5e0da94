"""ARINC 429 word codec: label, SDI, data, SSM, parity; BNR, BCD, discrete and packed fields.

A word is a 32-bit integer. Bit 1 is sent first and is the least significant bit of the integer.

====== ======================= ==================================================================
bits   field                   notes
====== ======================= ==================================================================
1-8    label (3 octal digits)  sent most significant label bit first, so ``w & 0xFF`` is the
                               label bit-reversed (0o203 -> 0xC1); cards that hand the label over
                               un-reversed are handled with ``label_reversed=False``
9-10   SDI                     absent where the data reaches bit 9 (latitude, longitude)
11-29  data                    BNR: two's complement, sign bit 29, most significant magnitude bit 28
30-31  SSM                     meaning depends on the encoding (:func:`ssm_status`)
32     parity                  odd over all 32 bits
====== ======================= ==================================================================

Check word: label 0o012, BNR data 2000, SSM 3 encodes as 0xE01F4050.
"""

from __future__ import annotations

import enum

__all__ = [
    "BCD_DIGIT_BITS",
    "DecodeError",
    "EncodeError",
    "ParityError",
    "Status",
    "bcd_decode",
    "bcd_encode",
    "bit_reverse8",
    "bnr_decode",
    "bnr_encode",
    "field",
    "label_of",
    "pack",
    "parity_ok",
    "sdi_of",
    "ssm_of",
    "ssm_status",
    "with_parity",
]

#: bit_reverse8[b] is b with its 8 bits in reverse order.
_REV = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def bit_reverse8(b: int) -> int:
    """Return the 8-bit value ``b`` with its bit order reversed (0o203 = 0x83 -> 0xC1)."""
    return _REV[b & 0xFF]


class DecodeError(ValueError):
    """A word or frame that cannot be decoded (bad parity, bad BCD digit, bad field)."""


class ParityError(DecodeError):
    """The word fails the odd-parity check over its 32 bits."""


class EncodeError(ValueError):
    """A value that cannot be encoded in the requested field (out of range, bad digit)."""


class Status(enum.Enum):
    """What the SSM says of the data, after reading it with the word's encoding."""

    NORMAL = "normal"
    NO_COMPUTED_DATA = "ncd"
    FUNCTIONAL_TEST = "functional_test"
    FAILURE_WARNING = "failure_warning"


# SSM (bits 31,30) -> status, per encoding (EGPWS IDG table in shared/AVIONICS.md).
_SSM_BNR = (Status.FAILURE_WARNING, Status.NO_COMPUTED_DATA, Status.FUNCTIONAL_TEST, Status.NORMAL)
_SSM_BCD = (Status.NORMAL, Status.NO_COMPUTED_DATA, Status.FUNCTIONAL_TEST, Status.NORMAL)
_SSM_DISCRETE = (
    Status.NORMAL,
    Status.NO_COMPUTED_DATA,
    Status.FUNCTIONAL_TEST,
    Status.FAILURE_WARNING,
)
SSM_TABLES: dict[str, tuple[Status, Status, Status, Status]] = {
    "bnr": _SSM_BNR,
    "bcd": _SSM_BCD,
    "discrete": _SSM_DISCRETE,
}
#: The SSM that means "normal" for each encoding, used when encoding.
SSM_NORMAL = {"bnr": 0b11, "bcd": 0b00, "discrete": 0b00}
SSM_FOR_STATUS = {
    "bnr": {s: i for i, s in enumerate(_SSM_BNR)},
    "bcd": {
        Status.NORMAL: 0b00,
        Status.NO_COMPUTED_DATA: 0b01,
        Status.FUNCTIONAL_TEST: 0b10,
    },
    "discrete": {s: i for i, s in enumerate(_SSM_DISCRETE)},
}


def ssm_status(ssm: int, encoding: str) -> Status:
    """Map a 2-bit SSM to a :class:`Status` for ``encoding`` ('bnr', 'bcd' or 'discrete').

    BCD's 00 (plus) and 11 (minus) are both normal; the sign is read by :func:`bcd_decode`.
    """
    return SSM_TABLES[encoding][ssm & 3]


def parity_ok(word: int) -> bool:
    """True if ``word`` (32-bit int) has odd parity over all 32 bits."""
    return (word & 0xFFFFFFFF).bit_count() & 1 == 1


def with_parity(word: int) -> int:
    """Return ``word`` (bits 1-31 used) with bit 32 set so that parity is odd."""
    word &= 0x7FFFFFFF
    return word | 0x80000000 if word.bit_count() & 1 == 0 else word


def label_of(word: int, *, label_reversed: bool = True) -> int:
    """The label as a number (0o203 for label 203) of a word; bits 1-8."""
    b = word & 0xFF
    return _REV[b] if label_reversed else b


def sdi_of(word: int) -> int:
    """Bits 9-10: the source/destination identifier, 0-3."""
    return (word >> 8) & 3


def ssm_of(word: int) -> int:
    """Bits 30-31: the sign/status matrix, 0-3 (bit 31 is the high bit)."""
    return (word >> 29) & 3


def field(word: int, lsb: int, msb: int) -> int:
    """Unsigned value of bits ``lsb``..``msb`` (ARINC numbering, 1-32, inclusive)."""
    return (word >> (lsb - 1)) & ((1 << (msb - lsb + 1)) - 1)


def pack(label: int, data: int, *, lsb: int = 11, sdi: int = 0, ssm: int = 0,
         label_reversed: bool = True) -> int:
    """Build a word with odd parity.

    ``label`` is the label number (0o203), ``data`` the unsigned field value placed at bit ``lsb``
    and up to bit 29; ``sdi`` goes to bits 9-10 (only if ``lsb`` > 10), ``ssm`` to bits 30-31.
    Raises EncodeError if ``data`` does not fit or ``label`` is not 0..0o377.
    """
    if not 0 <= label <= 0o377:
        raise EncodeError(f"label {label:o} is not three octal digits")
    width = 30 - lsb
    if not 0 <= data < (1 << width):
        raise EncodeError(f"data {data} does not fit bits {lsb}-29")
    word = _REV[label] if label_reversed else label
    if lsb > 10:
        word |= (sdi & 3) << 8
    word |= data << (lsb - 1)
    word |= (ssm & 3) << 29
    return with_parity(word)


def bnr_decode(word: int, lsb: int, resolution: float) -> float:
    """Two's-complement BNR value of bits ``lsb``..29 (sign bit 29) times ``resolution``."""
    width = 30 - lsb
    raw = (word >> (lsb - 1)) & ((1 << width) - 1)
    if raw >> (width - 1):
        raw -= 1 << width
    return raw * resolution


def bnr_encode(value: float, lsb: int, resolution: float) -> int:
    """The unsigned field (bits ``lsb``..29) encoding ``value`` in two's complement BNR.

    Rounds to the nearest count (a value less than half a count below range saturates at
    range - resolution). Raises EncodeError outside [-range, range), where range is the weight of
    the sign bit, ``resolution * 2**(29 - lsb)``.
    """
    width = 30 - lsb
    counts = round(value / resolution)
    if counts == 1 << (width - 1) and value < resolution * counts:
        counts -= 1  # [range - resolution/2, range) rounds up to range: saturate, don't refuse
    if not -(1 << (width - 1)) <= counts < (1 << (width - 1)):
        raise EncodeError(f"{value} outside BNR range ±{resolution * (1 << (width - 1))}")
    return counts & ((1 << width) - 1)


#: Bits of each BCD digit for the standard 5-digit layout in bits 11-29, most significant first:
#: the top digit has 3 bits (27-29), the others 4.
BCD_DIGIT_BITS: tuple[tuple[int, int], ...] = ((27, 29), (23, 26), (19, 22), (15, 18), (11, 14))


def bcd_decode(word: int, digits: tuple[tuple[int, int], ...] = BCD_DIGIT_BITS,
               resolution: float = 1.0, signed: bool = True) -> float:
    """Decode BCD digits (list of (lsb, msb), most significant first) times ``resolution``.

    With ``signed``, SSM 11 (minus/south/west) negates the value. Raises DecodeError on a digit > 9.
    """
    n = 0
    for lo, hi in digits:
        d = (word >> (lo - 1)) & ((1 << (hi - lo + 1)) - 1)
        if d > 9:
            raise DecodeError(f"BCD digit {d} > 9 in bits {lo}-{hi}")
        n = n * 10 + d
    value = n * resolution
    if signed and ((word >> 29) & 3) == 0b11:
        value = -value
    return value


def bcd_encode(value: float, digits: tuple[tuple[int, int], ...] = BCD_DIGIT_BITS,
               resolution: float = 1.0) -> tuple[int, int]:
    """Encode abs(``value``) as BCD digits; return (bits to OR into the word, sign SSM 00/11).

    Raises EncodeError if the value needs more digits than the layout has or a digit exceeds its
    field width (the top digit of the 5-digit layout holds at most 7).
    """
    counts = round(abs(value) / resolution)
    bits = 0
    for lo, hi in reversed(digits):
        d = counts % 10
        counts //= 10
        if d >= (1 << (hi - lo + 1)):
            raise EncodeError(f"digit {d} does not fit bits {lo}-{hi}")
        bits |= d << (lo - 1)
    if counts:
        raise EncodeError(f"{value} has more digits than the layout")
    return bits, (0b11 if value < 0 else 0b00)
