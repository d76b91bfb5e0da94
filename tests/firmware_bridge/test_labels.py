"""The label table (``labels.toml``) and per-label encode/decode (``firmware_bridge.labels``)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import arinc429 as a4
from firmware_bridge.labels import (
    DecodeError,
    EncodeError,
    LabelSpec,
    LabelTable,
    ParityError,
    Status,
)

TABLES = {rev: LabelTable.default(label_reversed=rev) for rev in (True, False)}
TABLE = TABLES[True]
SPECS = list(TABLE)

# shared/AVIONICS.md label table: label -> (range, sig bits, resolution, lsb, msb) for BNR labels
AVIONICS_BNR = {
    0o203: (131072, 17, 1.0, 12, 28),
    0o206: (1024, 14, 0.0625, 15, 28),
    0o210: (2048, 15, 0.0625, 14, 28),
    0o312: (4096, 15, 0.125, 14, 28),
    0o310: (180, 20, 180 / 2**20, 9, 28),
    0o311: (180, 20, 180 / 2**20, 9, 28),
    0o313: (180, 15, 180 / 2**15, 14, 28),
    0o314: (180, 15, 180 / 2**15, 14, 28),
}

# shared/AVIONICS.md SSM table: (bits 31,30) for each status, per SSM kind; a missing status has
# no code in that kind (BCD has no failure warning: 11 means minus).
SSM_CODES = {
    "bnr": {Status.FAILURE_WARNING: 0b00, Status.NO_COMPUTED_DATA: 0b01,
            Status.FUNCTIONAL_TEST: 0b10, Status.NORMAL: 0b11},
    "bcd": {Status.NORMAL: 0b00, Status.NO_COMPUTED_DATA: 0b01, Status.FUNCTIONAL_TEST: 0b10},
    "discrete": {Status.NORMAL: 0b00, Status.NO_COMPUTED_DATA: 0b01,
                 Status.FUNCTIONAL_TEST: 0b10, Status.FAILURE_WARNING: 0b11},
}
# BCD-coded date uses the BCD table; the packed binary fields (time, ISO-5, discretes) use the
# discrete one.
SSM_KIND = {"bnr": "bnr", "bcd": "bcd", "date": "bcd", "utc_hms": "discrete", "iso5": "discrete",
            "discrete": "discrete"}


def value_strategy(spec: LabelSpec) -> st.SearchStrategy[float | int | str]:
    """Values that ``spec`` must carry: its whole encodable domain."""
    enc = spec.encoding
    if enc == "bnr":
        assert spec.range is not None
        # [-range, range - resolution/2): above that, rounding reaches +range and saturates
        return st.floats(min_value=-spec.range, max_value=spec.range - spec.resolution / 2,
                         exclude_max=True, allow_nan=False)
    if enc == "bcd":
        return st.integers(-79999, 79999).map(lambda n: n * spec.resolution)
    if enc == "utc_hms":
        return st.integers(0, 86399)
    if enc == "date":
        return st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(dt.date.isoformat)
    if enc == "iso5":
        printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
        return st.text(alphabet=printable, min_size=2, max_size=2)
    if enc == "discrete":
        return st.integers(0, (1 << (spec.msb - spec.lsb + 1)) - 1)
    raise AssertionError(f"no strategy for {enc}")


def test_table_loads_all_labels() -> None:
    labels = {s.label for s in TABLE}
    assert set(AVIONICS_BNR) <= labels
    assert {0o150, 0o260, 0o233, 0o234, 0o235, 0o236, 0o270, 0o212} <= labels
    assert len(labels) == len(SPECS)
    for spec in TABLE:
        assert TABLE.by_label[spec.label] is spec
        assert TABLE.by_name[spec.name] is spec
        assert spec.rate_hz > 0
        assert 9 <= spec.lsb <= spec.msb <= 29


@pytest.mark.parametrize("label", sorted(AVIONICS_BNR), ids=lambda x: f"{x:03o}")
def test_bnr_rows_match_avionics_md(label: int) -> None:
    rng, sig_bits, res, lsb, msb = AVIONICS_BNR[label]
    spec = TABLE.by_label[label]
    assert spec.encoding == "bnr"
    assert (spec.range, spec.sig_bits, spec.lsb, spec.msb) == (rng, sig_bits, lsb, msb)
    assert spec.resolution == res
    assert sig_bits == msb - lsb + 1
    assert rng == res * 2**sig_bits  # the sign bit weighs the full range
    assert spec.sdi == (lsb > 10)  # bits 9-10 are data where the field reaches bit 9


def test_by_wire_for_both_orientations() -> None:
    for rev, table in TABLES.items():
        assert len(table.by_wire) == len(SPECS)
        for spec in table:
            key = int(format(spec.label, "08b")[::-1], 2) if rev else spec.label
            assert table.by_wire[key] is spec
    assert TABLES[True].by_wire[0xC1].label == 0o203
    assert TABLES[False].by_wire[0x83].label == 0o203
    # with the wrong orientation setting no word of the table is recognised (PROTOCOL.md)
    assert not set(TABLES[True].by_wire) & set(TABLES[False].by_wire)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.label:03o}-{s.name}")
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_every_label_round_trips(spec: LabelSpec, data: st.DataObject) -> None:
    kind = SSM_KIND[spec.encoding]
    assert spec.ssm_kind == kind
    value = data.draw(value_strategy(spec), label="value")
    status = data.draw(st.sampled_from(sorted(SSM_CODES[kind], key=lambda s: s.value)),
                       label="status")
    sdi = data.draw(st.integers(0, 3), label="sdi")
    rev = data.draw(st.booleans(), label="label_reversed")

    w = spec.encode(value, status, sdi, label_reversed=rev)
    assert 0 <= w < 1 << 32
    assert a4.parity_ok(w)
    assert TABLES[rev].by_wire[w & 0xFF] is TABLES[rev].by_label[spec.label]
    assert a4.label_of(w, label_reversed=rev) == spec.label
    ssm = a4.ssm_of(w)
    if kind == "bcd" and status is Status.NORMAL and isinstance(value, float) and value < 0:
        assert ssm == 0b11  # minus
    else:
        assert ssm == SSM_CODES[kind][status]

    r = spec.decode(w)
    assert r.spec is spec
    assert r.status is status
    assert r.sdi == (sdi if spec.sdi else 0)
    if spec.encoding == "bnr":
        assert isinstance(r.value, float)
        assert abs(r.value - float(value)) <= spec.resolution / 2 * (1 + 1e-9)
        assert -spec.range <= r.value < spec.range  # type: ignore[operator]
    elif spec.encoding == "bcd":
        expected = value if status is Status.NORMAL else abs(float(value))
        assert r.value == pytest.approx(expected, abs=spec.resolution / 2)
    else:
        assert r.value == value


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.label:03o}-{s.name}")
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_single_bit_flip_raises_parity_error(spec: LabelSpec, data: st.DataObject) -> None:
    w = spec.encode(data.draw(value_strategy(spec)))
    for bit in range(32):
        with pytest.raises(ParityError):
            spec.decode(w ^ (1 << bit))
    assert issubclass(ParityError, DecodeError)


def test_status_without_ssm_is_refused() -> None:
    date = TABLE.by_name["utc_date"]
    with pytest.raises(EncodeError):
        date.encode("2024-07-06", Status.FAILURE_WARNING)


def test_packed_field_layouts() -> None:
    # positions from shared/AVIONICS.md
    w = TABLE.by_name["utc_time"].encode(13 * 3600 + 45 * 60 + 56)
    assert (a4.field(w, 24, 28), a4.field(w, 18, 23), a4.field(w, 12, 17)) == (13, 45, 56)
    w = TABLE.by_name["utc_date"].encode("2024-07-06")
    digits = [a4.field(w, lo, hi) for lo, hi in ((28, 29), (24, 27), (23, 23), (19, 22),
                                                 (15, 18), (11, 14))]
    assert digits == [0, 6, 0, 7, 2, 4]  # day 06, month 07, year 24
    w = TABLE.by_name["utc_date"].encode("2031-12-29")
    assert [a4.field(w, lo, hi) for lo, hi in ((28, 29), (24, 27), (23, 23), (19, 22))] == \
        [2, 9, 1, 2]
    w = TABLE.by_name["flight_number_1"].encode("AF")
    assert (a4.field(w, 11, 17), a4.field(w, 18, 24)) == (ord("A"), ord("F"))
    assert TABLE.by_name["flight_number_1"].decode(TABLE.by_name["flight_number_1"].encode("A")
                                                   ).value == "A "
    assert TABLE.by_name["flight_number_1"].decode(TABLE.by_name["flight_number_1"].encode("ABC")
                                                   ).value == "AB"
    ag = TABLE.by_name["air_ground_word"]
    assert ag.bits == {"on_ground": 11}
    w = ag.encode(1 << (ag.bits["on_ground"] - ag.lsb))
    assert a4.field(w, 11, 11) == 1 and a4.field(w, 12, 29) == 0
    alt = TABLE.by_name["pressure_altitude"]
    w = alt.encode(35000.0, sdi=2)
    assert a4.field(w, 12, 29) == 35000 and a4.sdi_of(w) == 2 and a4.field(w, 11, 11) == 0


def test_sdi_ignored_where_data_reaches_bit_9() -> None:
    lat = TABLE.by_name["latitude"]
    assert not lat.sdi
    w0, w3 = lat.encode(43.6, sdi=0), lat.encode(43.6, sdi=3)
    assert w0 == w3
    assert lat.decode(w3).sdi == 0


@pytest.mark.parametrize(("name", "data"), [
    ("utc_time", 24 << 13),  # hour 24
    ("utc_time", 60 << 7),  # minute 60
    ("utc_time", 60 << 1),  # second 60
    ("utc_date", 0xA << 13),  # day units digit 10 (bits 24-27)
    ("utc_date", 1 << 13),  # day 01, month 00
    ("utc_date", 1 << 8),  # day 00, month 01
    ("utc_date", (1 << 13) | (1 << 12) | (3 << 8)),  # month 13
    ("utc_date", (1 << 13) | (1 << 8) | (0xA << 4)),  # year tens 10
])
def test_bad_fields_raise_decode_error(name: str, data: int) -> None:
    spec = TABLE.by_name[name]
    with pytest.raises(DecodeError):
        spec.decode(a4.pack(spec.label, data))


@pytest.mark.parametrize(("name", "value"), [
    ("utc_time", 86400), ("utc_time", -1), ("utc_date", "1999-12-31"), ("utc_date", "2100-01-01"),
    ("flight_number_1", "é1"), ("air_ground_word", 1 << 19), ("pressure_altitude", 131072.0),
    ("computed_airspeed", -1024.5), ("latitude", 180.0),
])
def test_unencodable_values_raise_encode_error(name: str, value: float | int | str) -> None:
    with pytest.raises(EncodeError):
        TABLE.by_name[name].encode(value)


def test_bcd_label_spec() -> None:
    toml = """
[[label]]
label = "125"
name = "utc_hhmm"
encoding = "bcd"
unit = "min"
lsb = 11
msb = 29
resolution = 0.1
rate_hz = 1
"""
    spec = LabelTable.from_toml(toml).by_name["utc_hhmm"]
    assert spec.ssm_kind == "bcd"
    for v in (0.0, 1234.5, 7999.9):
        w = spec.encode(v)
        assert a4.ssm_of(w) == 0b00
        assert spec.decode(w).value == pytest.approx(v)
        assert spec.decode(w).status is Status.NORMAL
    w = spec.encode(-12.3)
    assert a4.ssm_of(w) == 0b11 and spec.decode(w).value == pytest.approx(-12.3)
    assert spec.decode(w).status is Status.NORMAL
    with pytest.raises(EncodeError):
        spec.encode(8000.0)


def test_from_toml_rejects_bad_rows() -> None:
    row = '[[label]]\nlabel = "{l}"\nname = "{n}"\nencoding = "bnr"\nunit = "x"\nlsb = 11\n' \
          'msb = 28\nrate_hz = 1\n'
    LabelTable.from_toml(row.format(l="100", n="a"))
    with pytest.raises(ValueError):
        LabelTable.from_toml(row.format(l="100", n="a") + row.format(l="100", n="b"))
    with pytest.raises(ValueError):
        LabelTable.from_toml(row.format(l="100", n="a") + row.format(l="101", n="a"))
    with pytest.raises(ValueError):
        LabelTable.from_toml(row.format(l="9x", n="a"))
    with pytest.raises(ValueError):
        LabelTable.from_toml(row.format(l="100", n="a") + "colour = 3\n")


def test_max_age_and_in_range() -> None:
    for spec in TABLE:
        assert spec.max_age_s == max(3 / spec.rate_hz, 0.5)
    assert TABLE.by_name["pressure_altitude"].max_age_s == 0.5  # 8 Hz: 3 periods = 0.375 s
    assert TABLE.by_name["flight_number_1"].max_age_s == 6.0  # 0.5 Hz
    alt = TABLE.by_name["pressure_altitude"]
    assert alt.in_range(35000.0) and alt.in_range(-2000.0)
    assert not alt.in_range(70000.0) and not alt.in_range(-2001.0)
    assert TABLE.by_name["flight_number_1"].in_range("AF")
    assert not alt.in_range(float("inf"))


@pytest.mark.parametrize("reversed_", [True, False])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_simulator_fast_bnr_encoder_makes_the_same_words(reversed_: bool,
                                                         data: st.DataObject) -> None:
    """The simulator's fast path encodes exactly as ``LabelSpec.encode`` (Normal status, SDI 0)."""
    from firmware_bridge.simulator import _normal_encoder

    table = LabelTable.default(label_reversed=reversed_)
    spec = data.draw(st.sampled_from([s for s in table if s.encoding == "bnr"]))
    rng = spec.resolution * (1 << (29 - spec.lsb))
    value = data.draw(st.one_of(
        st.floats(-1.2 * rng, 1.2 * rng, allow_nan=False),
        st.sampled_from([-rng, rng, rng - spec.resolution / 2, rng - spec.resolution / 4, 0.0])))
    fast = _normal_encoder(spec, reversed_)
    assert fast is not None
    try:
        expected = spec.encode(value, Status.NORMAL, sdi=0, label_reversed=reversed_)
    except EncodeError:
        with pytest.raises(EncodeError):
            fast(value)
        return
    assert fast(value) == expected
