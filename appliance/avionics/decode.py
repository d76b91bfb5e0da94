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

import struct

from firmware_bridge.arinc429 import DecodeError, Status
from firmware_bridge.frame import DiscreteBits, Frame, FrameType
from firmware_bridge.labels import LabelTable

from .params import Parameter, SourceStats, Validity

__all__ = ["DISCRETE_NAMES", "CardDecoder"]

_U32 = struct.Struct("<I")
_HH = struct.Struct("<HH")
_STATUS_VALIDITY = {
    Status.NORMAL: Validity.VALID,
    Status.NO_COMPUTED_DATA: Validity.NO_COMPUTED_DATA,
    Status.FUNCTIONAL_TEST: Validity.FUNCTIONAL_TEST,
    Status.FAILURE_WARNING: Validity.FAILURE_WARNING,
}
_STATUS_COUNTER = {
    Status.NO_COMPUTED_DATA: "no_computed_data",
    Status.FUNCTIONAL_TEST: "functional_test",
    Status.FAILURE_WARNING: "failure_warning",
}
#: Discrete input bit -> parameter name (values: True = asserted: WOW compressed, door closed).
DISCRETE_NAMES = (
    (DiscreteBits.WOW_LEFT, "wow_left"),
    (DiscreteBits.WOW_RIGHT, "wow_right"),
    (DiscreteBits.DOOR_FWD_CLOSED, "door_fwd_closed"),
    (DiscreteBits.DOOR_AFT_CLOSED, "door_aft_closed"),
    (DiscreteBits.PA_ACTIVE, "pa_active"),
)


class CardDecoder:
    """Decode the card's frames into parameters; ``stats`` counts everything thrown away."""

    def __init__(self, table: LabelTable, source: str = "card", stats: SourceStats | None = None,
                 ) -> None:
        """Decode with ``table`` (its label orientation applies); tag parameters with ``source``."""
        self.table = table
        self.source = source
        self.stats = stats if stats is not None else SourceStats()
        self.last_heartbeat: tuple[int, ...] | None = None
        self._sdi_sources = ("", f"{source}/sdi1", f"{source}/sdi2", f"{source}/sdi3")

    def decode(self, frames: list[Frame]) -> list[Parameter]:
        """Turn frames into parameters (0..n per frame); never raises on bad input."""
        out: list[Parameter] = []
        st = self.stats
        decoders = self.table.decoders
        src = self.source
        sdi_sources = self._sdi_sources
        for f in frames:
            t = f.t_us * 1e-6
            st.last_frame_t = t
            ftype = f.type
            if ftype == FrameType.A429_WORD:
                if len(f.payload) != 4:
                    st.bad_frames += 1
                    continue
                st.words += 1
                word = _U32.unpack(f.payload)[0]
                if not word.bit_count() & 1:
                    st.parity_errors += 1
                    continue
                decode = decoders.get(word & 0xFF)
                if decode is None:
                    st.unknown_labels += 1
                    continue
                try:
                    spec, value, status, sdi = decode(word)
                except DecodeError:
                    st.decode_errors += 1
                    continue
                validity = _STATUS_VALIDITY[status]
                if validity is not Validity.VALID:
                    counter = _STATUS_COUNTER[status]
                    setattr(st, counter, getattr(st, counter) + 1)
                elif not spec.in_range(value):
                    st.out_of_range += 1
                    validity = Validity.OUT_OF_RANGE
                out.append(Parameter(spec.name, value, spec.unit, validity, t,
                                     sdi_sources[sdi] if sdi else src))
            elif ftype == FrameType.DISCRETES:
                if len(f.payload) != 4:
                    st.bad_frames += 1
                    continue
                st.discrete_frames += 1
                states, faults = _HH.unpack(f.payload)
                for bit, name in DISCRETE_NAMES:
                    validity = Validity.FAULT if faults & bit else Validity.VALID
                    out.append(Parameter(name, bool(states & bit), "bool", validity, t, src))
            elif ftype == FrameType.HEARTBEAT:
                st.heartbeats += 1
                self.last_heartbeat = (f.t_us, *f.payload)
            else:
                st.bad_frames += 1
        return out
