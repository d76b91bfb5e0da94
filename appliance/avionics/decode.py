"""The card decoding agent: frames in, parameters out, every bad word counted.

Checks, in order: frame type and payload length, parity (odd), known label, field decoding, SSM
(No Computed Data, Functional Test, Failure Warning), plausible range. A word that fails parity,
has an unknown label or cannot be decoded yields nothing; one with a bad SSM or out of range yields
a parameter with that validity (the value is kept for maintenance display).

The SDI (bits 9-10, on labels that carry one) tells which system sent the word: SDI 1, 2, 3 make
the parameter's source ``card/sdi1`` (left), ``card/sdi2`` (right), ``card/sdi3``, so the same label
from the left and right systems is two sources of one parameter (voted and cross-checked by
``appliance.avionics.redundancy``); SDI 0 ("all call" or no SDI) keeps the card's name.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from firmware_bridge.arinc429 import SSM_TABLES, DecodeError, Status
from firmware_bridge.frame import DiscreteBits, FrameType, RawFrame
from firmware_bridge.labels import LabelTable

from .params import Parameter, SourceStats, Validity, Value

__all__ = ["DISCRETE_NAMES", "CardDecoder"]

_U32: Final = struct.Struct("<I")
_HH: Final = struct.Struct("<HH")
_STATUS_VALIDITY: Final = {
    Status.NORMAL: Validity.VALID,
    Status.NO_COMPUTED_DATA: Validity.NO_COMPUTED_DATA,
    Status.FUNCTIONAL_TEST: Validity.FUNCTIONAL_TEST,
    Status.FAILURE_WARNING: Validity.FAILURE_WARNING,
}
_VALIDITY_COUNTER: Final = {
    Validity.NO_COMPUTED_DATA: "no_computed_data",
    Validity.FUNCTIONAL_TEST: "functional_test",
    Validity.FAILURE_WARNING: "failure_warning",
}
#: Discrete input bit -> parameter name (values: True = asserted: WOW compressed, door closed).
DISCRETE_NAMES = (
    (DiscreteBits.WOW_LEFT, "wow_left"),
    (DiscreteBits.WOW_RIGHT, "wow_right"),
    (DiscreteBits.DOOR_FWD_CLOSED, "door_fwd_closed"),
    (DiscreteBits.DOOR_AFT_CLOSED, "door_aft_closed"),
    (DiscreteBits.PA_ACTIVE, "pa_active"),
)


#: Per label: name, unit, BNR field (shift, mask, sign bit, 2**width, resolution) or the value
#: function of other encodings, the validity of each SSM (0-3), whether a plausible range applies
#: and its bounds (-inf/inf when open), and the parameter's source by SDI (0-3).
_Entry = tuple[str, str, int, int, int, int, float, "Callable[[int], Value] | None",
               tuple[Validity, Validity, Validity, Validity], bool, float, float,
               tuple[str, str, str, str]]
_DISCRETES: Final = tuple((int(bit), name) for bit, name in DISCRETE_NAMES)
_VALID: Final = Validity.VALID
_A429_WORD, _DISCRETES_FRAME, _HEARTBEAT = (int(FrameType.A429_WORD), int(FrameType.DISCRETES),
                                            int(FrameType.HEARTBEAT))
#: Entries kept in each of the decoder's caches of decoded words (emptied when full).
_CACHE_MAX: Final = 1 << 16
_NUMERIC: Final = frozenset({"bnr", "bcd", "utc_hms", "discrete"})


def _entries(table: LabelTable, source: str) -> dict[int, _Entry]:
    """The decoding table: the word's low byte as it arrives -> what :class:`CardDecoder` needs.

    A label that carries an SDI names its source by it: ``source/sdiN`` (SDI 0 keeps ``source``).
    """
    out: dict[int, _Entry] = {}
    by_sdi = (source, f"{source}/sdi1", f"{source}/sdi2", f"{source}/sdi3")
    no_sdi = (source, source, source, source)
    for wire, spec in table.by_wire.items():
        sources = by_sdi if spec.sdi else no_sdi
        ssm = SSM_TABLES[spec.ssm_kind]
        validities = (_STATUS_VALIDITY[ssm[0]], _STATUS_VALIDITY[ssm[1]],
                      _STATUS_VALIDITY[ssm[2]], _STATUS_VALIDITY[ssm[3]])
        ranged = spec.encoding in _NUMERIC and (spec.min is not None or spec.max is not None)
        lo = -math.inf if spec.min is None else spec.min
        hi = math.inf if spec.max is None else spec.max
        if spec.encoding == "bnr":
            width = 30 - spec.lsb
            out[wire] = (spec.name, spec.unit, spec.lsb - 1, (1 << width) - 1, 1 << (width - 1),
                         1 << width, spec.resolution, None, validities, ranged, lo, hi, sources)
        else:
            out[wire] = (spec.name, spec.unit, 0, 0, 0, 0, 1.0, spec._value, validities,
                         ranged, lo, hi, sources)
    return out


class CardDecoder:
    """Decode the card's frames into parameters; ``stats`` counts everything thrown away."""

    def __init__(self, table: LabelTable, source: str = "card", stats: SourceStats | None = None,
                 ) -> None:
        """Decode with ``table`` (its label orientation applies); tag parameters with ``source``."""
        self.table = table
        self.source = source
        self.stats = stats if stats is not None else SourceStats()
        self.last_heartbeat: tuple[int, ...] | None = None
        self._entries = _entries(table, source)
        #: word bytes -> (name, value, unit, validity, source, counter to count it by or None)
        self._words: dict[bytes, tuple[str, Value, str, Validity, str, str | None]] = {}
        #: discretes payload -> (name, state, validity) of each input
        self._discretes: dict[bytes, tuple[tuple[str, bool, Validity], ...]] = {}

    def decode(self, frames: Iterable[RawFrame]) -> list[Parameter]:
        """Turn frames into parameters (0..n per frame); never raises on bad input."""
        return list(self.iter_decode(frames))

    def iter_decode(self, frames: Iterable[RawFrame]) -> Iterator[Parameter]:
        """As :meth:`decode`, lazily, frame by frame.

        A frame is decoded and counted when its parameters are asked for, so a consumer that acts
        between them (the chain evaluating) sees the counters of the frames up to it only.
        """
        a429 = _A429_WORD
        t_us = None
        for f in frames:
            t_us = f[2]
            if f[0] == a429:
                p = self.word(float(t_us) * 1e-6, f[3])
                if p is not None:
                    yield p
            else:
                yield from self.other(f[0], t_us, f[3])
        if t_us is not None:
            self.stats.last_frame_t = float(t_us) * 1e-6

    def word(self, t: float, payload: bytes) -> Parameter | None:
        """Decode (and count) one A429_WORD frame's payload received at card time ``t`` (s).

        The parameter, or None for a word thrown away (short payload, parity, unknown label,
        undecodable). Callers set ``stats.last_frame_t`` (as :meth:`iter_decode` does).
        """
        st = self.stats
        value: Value
        # a word decodes the same every time it comes: most words of a flight repeat (a few per
        # cent are new), so the decoded fields are looked up by the word's bytes; the counters
        # are kept as the full decoding keeps them
        words = self._words
        hit = words.get(payload)
        if hit is not None:
            st.words += 1
            name, value, unit, validity, source, counter = hit
            if counter is not None:
                setattr(st, counter, getattr(st, counter) + 1)
            return Parameter(name, value, unit, validity, t, source)
        try:
            word = _U32.unpack(payload)[0]
        except struct.error:
            st.bad_frames += 1
            return None
        st.words += 1
        if not word.bit_count() & 1:
            st.parity_errors += 1
            return None
        e = self._entries.get(word & 0xFF)
        if e is None:
            st.unknown_labels += 1
            return None
        (name, unit, shift, mask, sign, full, res, value_of, validities, ranged, lo, hi,
         sources) = e
        if value_of is None:
            raw = (word >> shift) & mask
            value = (raw - full if raw & sign else raw) * res
        else:
            try:
                value = value_of(word)
            except DecodeError:
                st.decode_errors += 1
                return None
        validity = validities[(word >> 29) & 3]
        counter = None
        if validity is not _VALID:
            counter = _VALIDITY_COUNTER[validity]
            setattr(st, counter, getattr(st, counter) + 1)
        elif ranged and not lo <= value <= hi:  # type: ignore[operator]
            st.out_of_range += 1
            validity = Validity.OUT_OF_RANGE
            counter = "out_of_range"
        source = sources[(word >> 8) & 3]
        if len(words) >= _CACHE_MAX:
            words.clear()
        words[payload] = (name, value, unit, validity, source, counter)
        return Parameter(name, value, unit, validity, t, source)

    def other(self, ftype: int, t_us: int, payload: bytes) -> list[Parameter]:
        """Decode (and count) a frame that is not an ARINC word: discretes, heartbeat, unknown."""
        st = self.stats
        if ftype == _DISCRETES_FRAME:
            discrete_sets = self._discretes
            fields = discrete_sets.get(payload)
            if fields is None:
                if len(payload) != 4:
                    st.bad_frames += 1
                    return []
                states, faults = _HH.unpack(payload)
                fields = tuple((name, bool(states & bit),
                                Validity.FAULT if faults & bit else _VALID)
                               for bit, name in _DISCRETES)
                if len(discrete_sets) >= _CACHE_MAX:
                    discrete_sets.clear()
                discrete_sets[payload] = fields
            st.discrete_frames += 1
            t, src = float(t_us) * 1e-6, self.source
            return [Parameter(name, on, "bool", validity, t, src) for name, on, validity in fields]
        if ftype == _HEARTBEAT:
            st.heartbeats += 1
            self.last_heartbeat = (t_us, *payload)
        else:
            st.bad_frames += 1
        return []
