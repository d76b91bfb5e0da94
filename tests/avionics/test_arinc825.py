"""ARINC 825 29-bit identifiers: the codec (property tests), the shipped DBC, and the reader.

The reader tests feed real frames from the simulator's ARINC 825 profile through the real
``CanReader`` decoding (cantools on ``arinc825.dbc``), without a bus thread.
"""

from __future__ import annotations

import can
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.avionics.can_source import CanReader
from appliance.avionics.canaerospace import MESSAGES
from appliance.avionics.params import Parameter, SourceStats
from firmware_bridge.arinc825 import (
    FID,
    LCC,
    UNKNOWN_A825_IDS,
    A825Id,
    canonical_id,
    decode_id,
    encode_id,
    load_arinc825,
)
from firmware_bridge.canaerospace import load_canaerospace

ids = st.builds(A825Id, lcc=st.integers(0, 7), fid=st.integers(0, 127), doc=st.integers(0, 16383),
                rci=st.integers(0, 3), fsb=st.integers(0, 1), lcl=st.integers(0, 1),
                pvt=st.integers(0, 1))


@given(ids)
def test_fields_round_trip_through_a_29_bit_identifier(ident: A825Id) -> None:
    can_id = encode_id(ident)
    assert 0 <= can_id < 1 << 29
    assert decode_id(can_id) == ident


@given(st.integers(0, (1 << 29) - 1))
def test_every_29_bit_identifier_round_trips_and_canonical_clears_only_rci_fsb_lcl_pvt(
        can_id: int) -> None:
    ident = decode_id(can_id)
    assert encode_id(ident) == can_id
    canon = decode_id(canonical_id(can_id))
    assert (canon.lcc, canon.fid, canon.doc) == (ident.lcc, ident.fid, ident.doc)
    assert (canon.rci, canon.fsb, canon.lcl, canon.pvt) == (0, 0, 0, 0)


@given(ids, st.sampled_from(["lcc", "fid", "doc", "rci", "fsb", "lcl", "pvt"]))
def test_a_field_too_wide_is_refused(ident: A825Id, field: str) -> None:
    widths = {"lcc": 3, "fid": 7, "doc": 14, "rci": 2, "fsb": 1, "lcl": 1, "pvt": 1}
    too_big = A825Id(**{**ident.__dict__, field: 1 << widths[field]})
    with pytest.raises(ValueError, match=field):
        encode_id(too_big)


def test_known_layout_bit_positions() -> None:
    # LCC NOC (2) << 26, FID 4 << 19, DOC 317 << 2, RCI B (1)
    assert encode_id(A825Id(LCC["NOC"], FID["FLIGHT_STATE"], 317, rci=1)) == (
        (2 << 26) | (4 << 19) | (317 << 2) | 1) == 0x82004F5
    with pytest.raises(ValueError):
        decode_id(1 << 29)


def test_the_dbc_has_every_canaerospace_message_on_the_noc_with_its_doc() -> None:
    a825 = {m.name: m for m in load_arinc825().messages}
    canas = {m.name: m for m in load_canaerospace().messages}
    assert set(a825) == set(canas) and set(a825) >= MESSAGES
    for name, m in a825.items():
        ident = decode_id(m.frame_id)
        assert m.is_extended_frame and ident.lcc == LCC["NOC"], name
        assert ident.doc == canas[name].frame_id, name  # DOC = the CANaerospace identifier
        assert canonical_id(m.frame_id) == m.frame_id
        assert ident.fid == (FID["LANDING_GEAR"] if name == "LGCIU_DISCRETES"
                             else FID["FLIGHT_STATE"])
        assert [s.name for s in m.signals] == [s.name for s in canas[name].signals]
    assert not {canonical_id(i) for i in UNKNOWN_A825_IDS} & {m.frame_id for m in a825.values()}


def _reader(profile: str = "any") -> tuple[CanReader, SourceStats, can.BusABC]:
    bus = can.Bus(interface="virtual", channel=f"a825-{profile}")
    stats = SourceStats()
    return CanReader(bus, lambda ps: None, stats, profile=profile), stats, bus  # type: ignore[arg-type]


def _cas_frame(can_id: int, extended: bool, node: int = 2) -> can.Message:
    msg = load_arinc825().get_message_by_name("CALIBRATED_AIRSPEED")
    data = msg.encode({"NODE_ID": node, "DATA_TYPE": 2, "SERVICE_CODE": 0, "MESSAGE_CODE": 0,
                       "VALUE": 100.0})
    return can.Message(timestamp=1.0, arbitration_id=can_id, is_extended_id=extended, data=data)


def test_redundancy_channels_are_separate_sources_of_one_parameter() -> None:
    reader, stats, bus = _reader("arinc825")
    try:
        base = load_arinc825().get_message_by_name("CALIBRATED_AIRSPEED").frame_id
        got: list[Parameter] = []
        for rci in range(4):
            got += reader.decode_message(_cas_frame(base | rci | (1 << 18), True))
        assert [p.source for p in got] == ["can/node2", "can/rciB/node2", "can/rciC/node2",
                                           "can/rciD/node2"]
        assert all(p.name == "computed_airspeed" and p.valid for p in got)
        assert got[0].value == pytest.approx(100.0 * 3600 / 1852, abs=1e-3)
        assert stats.decode_errors == stats.unknown_labels == 0
    finally:
        bus.shutdown()


def test_a_profile_reads_only_its_identifiers() -> None:
    canas_id = load_canaerospace().get_message_by_name("CALIBRATED_AIRSPEED").frame_id
    a825_id = load_arinc825().get_message_by_name("CALIBRATED_AIRSPEED").frame_id
    for profile, good in (("arinc825", (a825_id, True)), ("canaerospace", (canas_id, False))):
        reader, stats, bus = _reader(profile)
        try:
            assert reader.decode_message(_cas_frame(*good))
            assert reader.decode_message(_cas_frame(canas_id, True)) == []  # 11-bit id as 29-bit
            other = (canas_id, False) if profile == "arinc825" else (a825_id, True)
            assert reader.decode_message(_cas_frame(*other)) == []
            for unknown in UNKNOWN_A825_IDS:
                assert reader.decode_message(_cas_frame(unknown, True)) == []
            assert stats.unknown_labels == 2 + len(UNKNOWN_A825_IDS)
        finally:
            bus.shutdown()
