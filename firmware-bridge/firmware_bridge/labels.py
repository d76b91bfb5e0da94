"""The label table (``labels.toml``, data not code) and per-label decode/encode.

``LabelTable.default()`` loads the card's table. Each :class:`LabelSpec` decodes a 32-bit word to a
:class:`Reading` (value, status) and encodes a value back to a word. Values by encoding:

- ``bnr``: float in the table's unit (two's complement, sign bit 29)
- ``bcd``: float (5 digits in bits 11-29, sign from SSM)
- ``utc_hms``: int, seconds of the UTC day (hours bits 24-28, minutes 18-23, seconds 12-17)
- ``date``: str ``"YYYY-MM-DD"`` (BCD day/month/year; years 2000-2099)
- ``iso5``: str of 2 ISO-5 (7-bit ASCII) characters, char 1 bits 11-17, char 2 bits 18-24
- ``discrete``: int, the data field bits 11-29 shifted down (bit 11 -> bit 0); named bits in ``bits``
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

from . import arinc429 as a4
from .arinc429 import DecodeError, EncodeError, ParityError, Status, label_of

__all__ = [
    "DecodeError", "EncodeError", "LabelSpec", "LabelTable", "ParityError", "Reading", "RawReading",
    "Status", "UnknownLabelError", "Value",
]

Value = float | int | str


class Reading(NamedTuple):
    """One decoded word: label spec, value (see module doc for its type), status, SDI.

    A named tuple, not a dataclass: one is built per word on the hot path.
    """

    spec: LabelSpec
    value: Value
    status: Status
    sdi: int


#: What the compiled decoders return: (spec, value, status, sdi).
RawReading = tuple["LabelSpec", Value, Status, int]

_DATE_DIGITS = ((28, 29), (24, 27), (23, 23), (19, 22), (15, 18), (11, 14))
_SSM_KIND = {"bnr": "bnr", "bcd": "bcd", "date": "bcd"}


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One row of the label table; see ``labels.toml`` for the meaning of each field."""

    label: int
    name: str
    encoding: str
    unit: str
    lsb: int
    msb: int
    rate_hz: float
    min: float | None = None
    max: float | None = None
    resolution: float = 1.0
    sig_bits: int | None = None
    range: float | None = None
    sdi: bool = True
    source: str = ""
    bits: dict[str, int] = field(default_factory=dict)
    #: The compiled decoder: word -> (spec, value, status, sdi); raises as :meth:`decode`.
    decode_raw: Callable[[int], RawReading] = field(init=False, repr=False, compare=False)

    @property
    def max_age_s(self) -> float:
        """Age in seconds beyond which a value is stale: 3 refresh periods, at least 0.5 s."""
        return max(3.0 / self.rate_hz, 0.5)

    @property
    def ssm_kind(self) -> str:
        """Which SSM table applies: 'bnr', 'bcd' or 'discrete'."""
        return _SSM_KIND.get(self.encoding, "discrete")

    def __post_init__(self) -> None:
        """Compile this label's whole decoder into one closure (the hot path: one call per word).

        The closure returns a plain tuple ``(spec, value, status, sdi)`` (no object is built on the
        hot path); :meth:`decode` wraps the same in a :class:`Reading`.
        """
        ssm_table = a4.SSM_TABLES[self.ssm_kind]
        spec = self
        sdi_on = self.sdi
        label = self.label

        def parity_error(word: int) -> ParityError:
            return ParityError(f"label {label:03o}: parity error in word {word:#010x}")

        if self.encoding == "bnr":
            shift, width, res = self.lsb - 1, 30 - self.lsb, self.resolution
            mask, sign, full = (1 << width) - 1, 1 << (width - 1), 1 << width

            def decode(word: int) -> RawReading:
                if not (word & 0xFFFFFFFF).bit_count() & 1:
                    raise parity_error(word)
                raw = (word >> shift) & mask
                return (spec, (raw - full if raw & sign else raw) * res,
                        ssm_table[(word >> 29) & 3], (word >> 8) & 3 if sdi_on else 0)
        else:
            value = self._value

            def decode(word: int) -> RawReading:
                if not (word & 0xFFFFFFFF).bit_count() & 1:
                    raise parity_error(word)
                return (spec, value(word), ssm_table[(word >> 29) & 3],
                        (word >> 8) & 3 if sdi_on else 0)

        object.__setattr__(self, "decode_raw", decode)

    def decode(self, word: int) -> Reading:
        """Decode a word of this label; raises ParityError, or DecodeError on a bad field."""
        return Reading._make(self.decode_raw(word))

    def _value(self, word: int) -> Value:
        enc = self.encoding
        if enc == "bnr":
            return a4.bnr_decode(word, self.lsb, self.resolution)
        if enc == "bcd":
            return a4.bcd_decode(word, resolution=self.resolution)
        if enc == "utc_hms":
            h, m, s = a4.field(word, 24, 28), a4.field(word, 18, 23), a4.field(word, 12, 17)
            if h > 23 or m > 59 or s > 59:
                raise DecodeError(f"label {self.label:03o}: bad time {h}:{m}:{s}")
            return h * 3600 + m * 60 + s
        if enc == "date":
            d1, d0, m1, m0, y1, y0 = (a4.field(word, lo, hi) for lo, hi in _DATE_DIGITS)
            if d0 > 9 or m0 > 9 or y1 > 9 or y0 > 9:
                raise DecodeError(f"label {self.label:03o}: bad BCD date digit")
            day, month = d1 * 10 + d0, m1 * 10 + m0
            if not (1 <= day <= 31 and 1 <= month <= 12):
                raise DecodeError(f"label {self.label:03o}: bad date {day}/{month}")
            return f"{2000 + y1 * 10 + y0:04d}-{month:02d}-{day:02d}"
        if enc == "iso5":
            return chr(a4.field(word, 11, 17)) + chr(a4.field(word, 18, 24))
        if enc == "discrete":
            return a4.field(word, self.lsb, self.msb)
        raise DecodeError(f"label {self.label:03o}: unknown encoding {enc}")

    def encode(self, value: Value, status: Status = Status.NORMAL, sdi: int = 0,
               *, label_reversed: bool = True) -> int:
        """Encode ``value`` (type as in the module doc) into a word with odd parity.

        Raises EncodeError if the value does not fit or the status has no SSM in this encoding.
        """
        kind = self.ssm_kind
        try:
            ssm = a4.SSM_FOR_STATUS[kind][status]
        except KeyError:
            raise EncodeError(f"{status} has no SSM for {kind}") from None
        enc = self.encoding
        if enc == "bnr":
            data = a4.bnr_encode(float(value), self.lsb, self.resolution)
        elif enc == "bcd":
            bits, sign = a4.bcd_encode(float(value), resolution=self.resolution)
            data = bits >> 10
            if status is Status.NORMAL:
                ssm = sign
            return a4.pack(self.label, data, lsb=11, sdi=sdi, ssm=ssm, label_reversed=label_reversed)
        elif enc == "utc_hms":
            s = int(value)
            if not 0 <= s < 86400:
                raise EncodeError(f"{s} is not a second of the day")
            data = ((s // 3600) << 13) | (((s // 60) % 60) << 7) | ((s % 60) << 1)
            return a4.pack(self.label, data, lsb=11, sdi=sdi, ssm=ssm, label_reversed=label_reversed)
        elif enc == "date":
            y, mo, d = (int(p) for p in str(value).split("-"))
            if not 2000 <= y <= 2099:
                raise EncodeError(f"year {y} outside 2000-2099")
            digits = (d // 10, d % 10, mo // 10, mo % 10, (y % 100) // 10, y % 10)
            data = 0
            for (lo, _hi), dig in zip(_DATE_DIGITS, digits, strict=True):
                data |= dig << (lo - 11)
            return a4.pack(self.label, data, lsb=11, sdi=sdi, ssm=ssm, label_reversed=label_reversed)
        elif enc == "iso5":
            text = str(value).ljust(2)[:2]
            c1, c2 = ord(text[0]), ord(text[1])
            if c1 > 127 or c2 > 127:
                raise EncodeError(f"{text!r} is not ISO-5")
            return a4.pack(self.label, c1 | (c2 << 7), lsb=11, sdi=sdi, ssm=ssm,
                           label_reversed=label_reversed)
        elif enc == "discrete":
            data = int(value)
            if data >> (self.msb - self.lsb + 1):
                raise EncodeError(f"discrete {data:#x} wider than bits {self.lsb}-{self.msb}")
        else:
            raise EncodeError(f"unknown encoding {enc}")
        return a4.pack(self.label, data, lsb=self.lsb, sdi=sdi if self.sdi else 0, ssm=ssm,
                       label_reversed=label_reversed)

    def in_range(self, value: Value) -> bool:
        """True if a numeric ``value`` lies within the plausible [min, max]; text is always in range."""
        if isinstance(value, str):
            return True
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class UnknownLabelError(DecodeError):
    """A word whose label is not in the table."""


class LabelTable:
    """The label table: spec by label number and by parameter name.

    ``by_wire[b]`` maps the raw low byte of a word (bits 1-8 as they arrive) to its spec, for the
    card's label orientation, so the decoder needs one dict look-up per word.
    """

    def __init__(self, specs: list[LabelSpec], *, label_reversed: bool = True) -> None:
        """Build from specs; raises ValueError on a duplicate label or name."""
        self.specs = specs
        self.label_reversed = label_reversed
        self.by_label: dict[int, LabelSpec] = {}
        self.by_name: dict[str, LabelSpec] = {}
        for s in specs:
            if s.label in self.by_label or s.name in self.by_name:
                raise ValueError(f"duplicate label {s.label:03o} or name {s.name}")
            self.by_label[s.label] = s
            self.by_name[s.name] = s
        self.by_wire: dict[int, LabelSpec] = {
            (a4.bit_reverse8(lbl) if label_reversed else lbl): s for lbl, s in self.by_label.items()
        }
        #: The same keys as ``by_wire``, each to its label's compiled ``decode_raw``: the hot path.
        self.decoders: dict[int, Callable[[int], RawReading]] = {
            b: s.decode_raw for b, s in self.by_wire.items()}

    def decode(self, word: int) -> Reading:
        """Decode any word of the table: label look-up, parity, value, SSM status, SDI.

        Raises UnknownLabelError for a label not in the table, ParityError, or DecodeError.
        """
        try:
            fn = self.decoders[word & 0xFF]
        except KeyError:
            raise UnknownLabelError(f"label {label_of(word, label_reversed=self.label_reversed):03o}"
                                    " is not in the table") from None
        return Reading._make(fn(word))

    def __iter__(self) -> Iterator[LabelSpec]:
        """Iterate over the specs in table order."""
        return iter(self.specs)

    @classmethod
    def from_toml(cls, text: str, *, label_reversed: bool = True) -> LabelTable:
        """Parse a table in the ``labels.toml`` format; raises ValueError on a bad row."""
        rows: list[dict[str, Any]] = tomllib.loads(text)["label"]
        specs = []
        for row in rows:
            row = dict(row)
            try:
                row["label"] = int(row["label"], 8)
                specs.append(LabelSpec(**row))
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"bad label row {row!r}: {e}") from e
        return cls(specs, label_reversed=label_reversed)

    @classmethod
    def default(cls, *, label_reversed: bool = True) -> LabelTable:
        """The card's table shipped with this package."""
        text = resources.files(__package__).joinpath("labels.toml").read_text()
        return cls.from_toml(text, label_reversed=label_reversed)

