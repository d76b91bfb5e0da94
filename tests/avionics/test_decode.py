"""Decoding agent, parameter store (staleness) and UTC clock, with plain lists in and out."""

from __future__ import annotations

import datetime as dt
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.clock import UtcClock
from appliance.avionics.decode import CardDecoder
from appliance.avionics.params import Parameter, ParameterStore, Validity
from firmware_bridge.frame import DiscreteBits, Frame, FrameType
from firmware_bridge.labels import LabelTable, Status

TABLE = LabelTable.default()
ALT = TABLE.by_name["pressure_altitude"]


def word_frame(word: int, t: float = 1.0) -> Frame:
    return Frame(FrameType.A429_WORD, 1, int(t * 1e6), struct.pack("<I", word))


def test_valid_word_becomes_parameter() -> None:
    dec = CardDecoder(TABLE)
    [p] = dec.decode([word_frame(ALT.encode(35000.0), 2.5)])
    assert (p.name, p.value, p.unit, p.validity, p.t) == ("pressure_altitude", 35000.0, "ft",
                                                          Validity.VALID, 2.5)


def test_bad_words_are_counted_not_raised() -> None:
    dec = CardDecoder(TABLE)
    good = ALT.encode(1000.0)
    unknown = TABLE.by_name["utc_time"].encode(3600) & ~0xFF | 0xFF  # label 377
    unknown ^= 0x80000000 if (unknown.bit_count() & 1) == 0 else 0
    frames = [
        word_frame(good ^ (1 << 15)),  # parity error
        word_frame(unknown),
        Frame(FrameType.A429_WORD, 1, 0, b"\x01\x02"),  # short payload
        Frame(0x7F, 0, 0, b""),  # unknown frame type
        word_frame(ALT.encode(1000.0, Status.NO_COMPUTED_DATA)),
        word_frame(ALT.encode(90000.0)),  # out of plausible range
    ]
    out = dec.decode(frames)
    st_ = dec.stats
    assert (st_.parity_errors, st_.unknown_labels, st_.bad_frames) == (1, 1, 2)
    assert [p.validity for p in out] == [Validity.NO_COMPUTED_DATA, Validity.OUT_OF_RANGE]
    assert st_.no_computed_data == 1 and st_.out_of_range == 1 and st_.bad_words == 2


def test_discretes_with_fault_mask() -> None:
    dec = CardDecoder(TABLE)
    payload = struct.pack("<HH", DiscreteBits.WOW_LEFT | DiscreteBits.DOOR_FWD_CLOSED,
                          DiscreteBits.WOW_RIGHT)
    out = {p.name: p for p in dec.decode([Frame(FrameType.DISCRETES, 0, 0, payload)])}
    assert out["wow_left"].value is True and out["wow_left"].valid
    assert out["wow_right"].validity is Validity.FAULT
    assert out["door_fwd_closed"].value is True and out["door_aft_closed"].value is False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_random_words_never_raise(words: list[int]) -> None:
    dec = CardDecoder(TABLE)
    out = dec.decode([word_frame(w) for w in words])
    assert len(out) + dec.stats.bad_words == len(words)


def test_staleness_from_label_rate() -> None:
    store = ParameterStore(TABLE)
    store.put(Parameter("pressure_altitude", 100.0, "ft", Validity.VALID, 10.0, "card"))
    assert store.value("pressure_altitude", 10.3) == 100.0  # 8 Hz: stale after 0.5 s
    p = store.get("pressure_altitude", 10.6)
    assert p is not None and p.validity is Validity.STALE
    assert store.value("pressure_altitude", 10.6) is None
    store.expire_source("card")
    assert store.value("pressure_altitude", 10.0) is None


def test_clock_uses_changing_time_label_only() -> None:
    local = [1000.0]
    clock = UtcClock(local=lambda: local[0])
    date = Parameter("utc_date", "2024-07-06", "date", Validity.VALID, 0.0, "card")
    midnight = dt.datetime(2024, 7, 6, tzinfo=dt.UTC).timestamp()
    clock.observe(date)
    clock.observe(Parameter("utc_time", 3600, "s", Validity.VALID, 0.5, "card"))
    assert clock.utc(0.5) == (1000.0, "local")  # one reading is not a change yet
    clock.observe(Parameter("utc_time", 3601, "s", Validity.VALID, 1.5, "card"))
    assert clock.utc(2.0) == (midnight + 3601.5, "avionics")
    # frozen label: after 5 s without a change the avionics time is no longer trusted
    for t in range(2, 9):
        clock.observe(Parameter("utc_time", 3601, "s", Validity.VALID, float(t), "card"))
    assert clock.utc(8.0) == (1000.0, "local")
    # invalid readings are ignored
    clock.observe(Parameter("utc_time", 7, "s", Validity.NO_COMPUTED_DATA, 9.0, "card"))
    assert clock.utc(9.0)[1] == "local"
