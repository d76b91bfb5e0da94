"""ARINC 429 word codec (``firmware_bridge.arinc429``), checked against shared/AVIONICS.md.

Also a cross-check against the PyPI ``arinc429`` package (0.1.7). Per shared/AVIONICS.md that
package is only right for *positive* BNR/BCD values handed over as *big-endian bytes* (from an
int it reads the label from the wrong byte, negative BNR spills into the SSM, labels whose data
reaches bit 9 lose 2 bits, BCD above 79999 is divided by 10), so the cross-check stays there.
"""

from __future__ import annotations

import random

import pytest
from arinc429 import Decoder as PeerDecoder
from arinc429 import Encoder as PeerEncoder
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import arinc429 as a4
from firmware_bridge.labels import LabelSpec, LabelTable, Status

TABLE = LabelTable.default()
BNR_SPECS = [s for s in TABLE if s.encoding == "bnr"]

words31 = st.integers(min_value=0, max_value=(1 << 31) - 1)


def bits_of(word: int) -> str:
    """ARINC bit n (1..32) is character n-1 of the result."""
    return format(word & 0xFFFFFFFF, "032b")[::-1]


def reverse8_by_string(b: int) -> int:
    """Independent bit reversal: read the 8-bit binary string backwards."""
    return int(format(b, "08b")[::-1], 2)


# --- the check word and the label ------------------------------------------------------------


def test_check_word_from_avionics_md() -> None:
    # shared/AVIONICS.md: "label 012, data 2000, SSM 3 encodes as 0xE01F4050"
    assert a4.pack(0o012, 2000, ssm=3) == 0xE01F4050


def test_check_word_assembled_bit_by_bit() -> None:
    # Build the same word from the bit table alone: label bits 1-8 sent MSB first, data at bit 11,
    # SSM bits 30-31, then bit 32 so that the count of ones is odd.
    label_octal = "012"
    label_bits = format(int(label_octal, 8), "08b")  # MSB first, as sent
    bits = [0] * 32
    for i, ch in enumerate(label_bits):  # bit 1 carries the label's MSB
        bits[i] = int(ch)
    for i in range(19):  # bits 11..29
        bits[10 + i] = (2000 >> i) & 1
    bits[29], bits[30] = 3 & 1, (3 >> 1) & 1
    bits[31] = 0 if sum(bits) % 2 else 1
    expected = sum(b << i for i, b in enumerate(bits))
    assert a4.pack(0o012, 2000, ssm=3) == expected
    w = expected
    assert a4.label_of(w) == 0o012
    assert a4.field(w, 11, 29) == 2000
    assert a4.ssm_of(w) == 3
    assert a4.sdi_of(w) == 0
    assert a4.parity_ok(w)


def test_label_bit_reversal_examples() -> None:
    # AVIONICS.md: in the integer, w & 0xFF == bitreverse8(label): 0o203 -> 0xC1, 0o012 -> 0x50
    assert a4.bit_reverse8(0o203) == 0xC1
    assert a4.bit_reverse8(0o012) == 0x50
    assert a4.pack(0o203, 0) & 0xFF == 0xC1
    assert a4.pack(0o012, 0) & 0xFF == 0x50
    # un-reversed cards: the low byte is the label as is
    assert a4.pack(0o203, 0, label_reversed=False) & 0xFF == 0o203 == 0x83
    assert a4.label_of(0x83, label_reversed=False) == 0o203
    assert a4.label_of(0xC1) == 0o203


@pytest.mark.parametrize("b", range(256))
def test_bit_reverse8_matches_string_reversal(b: int) -> None:
    assert a4.bit_reverse8(b) == reverse8_by_string(b)
    assert a4.bit_reverse8(a4.bit_reverse8(b)) == b


@given(label=st.integers(0, 0o377), data=st.integers(0, (1 << 19) - 1),
       sdi=st.integers(0, 3), ssm=st.integers(0, 3), rev=st.booleans())
def test_pack_fields_round_trip(label: int, data: int, sdi: int, ssm: int, rev: bool) -> None:
    w = a4.pack(label, data, sdi=sdi, ssm=ssm, label_reversed=rev)
    assert 0 <= w < 1 << 32
    assert a4.label_of(w, label_reversed=rev) == label
    assert a4.sdi_of(w) == sdi
    assert a4.ssm_of(w) == ssm
    assert a4.field(w, 11, 29) == data
    s = bits_of(w)
    assert int(s[10:29][::-1], 2) == data  # bits 11..29 read independently
    assert a4.parity_ok(w)


def test_pack_rejects_bad_label_and_data() -> None:
    with pytest.raises(a4.EncodeError):
        a4.pack(0o400, 0)
    with pytest.raises(a4.EncodeError):
        a4.pack(-1, 0)
    with pytest.raises(a4.EncodeError):
        a4.pack(0o203, 1 << 19)
    with pytest.raises(a4.EncodeError):
        a4.pack(0o203, -1)
    with pytest.raises(a4.EncodeError):
        a4.pack(0o310, 1 << 21, lsb=9)


@given(word=st.integers(0, (1 << 32) - 1), lsb=st.integers(1, 32), width=st.integers(1, 32))
def test_field_matches_bit_string(word: int, lsb: int, width: int) -> None:
    msb = min(32, lsb + width - 1)
    assert a4.field(word, lsb, msb) == int(bits_of(word)[lsb - 1:msb][::-1], 2)


# --- parity ------------------------------------------------------------------------------------


@given(body=words31)
def test_with_parity_gives_odd_parity(body: int) -> None:
    w = a4.with_parity(body)
    assert w & 0x7FFFFFFF == body
    assert bits_of(w).count("1") % 2 == 1
    assert a4.parity_ok(w)


@given(body=words31)
def test_every_single_bit_flip_fails_parity(body: int) -> None:
    w = a4.with_parity(body)
    for bit in range(32):
        assert not a4.parity_ok(w ^ (1 << bit)), f"flip of bit {bit + 1} not detected"


def test_parity_ok_on_even_words() -> None:
    assert not a4.parity_ok(0)
    assert a4.parity_ok(1)
    assert not a4.parity_ok(0xFFFFFFFF)  # 32 ones: even


# --- BNR ---------------------------------------------------------------------------------------


@given(data=st.data(), lsb=st.integers(9, 28))
def test_bnr_twos_complement_round_trip(data: st.DataObject, lsb: int) -> None:
    width = 30 - lsb
    counts = data.draw(st.integers(-(1 << (width - 1)), (1 << (width - 1)) - 1))
    res = data.draw(st.sampled_from([1.0, 0.5, 0.0625, 16.0, 2.0**-20]))
    raw = a4.bnr_encode(counts * res, lsb, res)
    assert raw == counts % (1 << width)  # two's complement in `width` bits
    w = a4.pack(0o203, raw, lsb=lsb)
    assert a4.field(w, 29, 29) == (1 if counts < 0 else 0)  # sign bit 29
    assert a4.bnr_decode(w, lsb, res) == counts * res


def test_negative_bnr_values() -> None:
    alt = TABLE.by_name["pressure_altitude"]
    w = alt.encode(-1000.0)
    assert alt.decode(w).value == -1000.0
    assert a4.field(w, 12, 29) == (1 << 18) - 1000  # two's complement over bits 12-29
    assert a4.field(w, 29, 29) == 1
    assert alt.decode(w).status is Status.NORMAL
    for name, value in (("latitude", -45.5), ("longitude", -120.0), ("true_heading", -90.0),
                        ("altitude_rate", -2048.0)):
        spec = TABLE.by_name[name]
        got = spec.decode(spec.encode(value)).value
        assert isinstance(got, float)
        assert abs(got - value) <= spec.resolution / 2, name
        assert got < 0


@pytest.mark.parametrize("spec", BNR_SPECS, ids=lambda s: s.name)
def test_bnr_sign_edges(spec: LabelSpec) -> None:
    assert spec.range is not None
    rng, res, lsb = spec.range, spec.resolution, spec.lsb
    assert rng == res * 2 ** (29 - lsb)  # the table's range is the sign bit's weight
    lo = spec.encode(-rng)
    assert spec.decode(lo).value == -rng
    assert a4.field(lo, 29, 29) == 1 and a4.field(lo, lsb, 28) == 0  # sign bit alone
    hi = spec.encode(rng - res)
    assert spec.decode(hi).value == rng - res
    assert a4.field(hi, 29, 29) == 0 and a4.field(hi, lsb, 28) == (1 << (29 - lsb)) - 1
    for outside in (rng, rng + res, -rng - res, 2 * rng):
        with pytest.raises(a4.EncodeError):
            spec.encode(outside)
    # just under +range rounds up to +range, which does not exist: it saturates at range - res
    assert spec.decode(spec.encode(rng - res / 4)).value == rng - res
    assert spec.decode(spec.encode(rng - res / 2)).value == rng - res
    # zero and -resolution
    assert spec.decode(spec.encode(0.0)).value == 0.0
    minus = spec.encode(-res)
    assert spec.decode(minus).value == -res
    assert a4.field(minus, lsb, 29) == (1 << (30 - lsb)) - 1  # all ones


# --- BCD ---------------------------------------------------------------------------------------


@given(n=st.integers(0, 79999), negative=st.booleans())
def test_bcd_round_trip(n: int, negative: bool) -> None:
    value = -n if negative else n
    bits, sign = a4.bcd_encode(value)
    assert sign == (0b11 if negative and n else 0b00)
    digits = [int(c) for c in f"{n:05d}"]
    for (lo, hi), d in zip(a4.BCD_DIGIT_BITS, digits, strict=True):
        assert (bits >> (lo - 1)) & ((1 << (hi - lo + 1)) - 1) == d
    w = a4.pack(0o125, bits >> 10, ssm=sign)
    assert a4.bcd_decode(w) == value
    assert a4.bcd_decode(w, signed=False) == n


def test_bcd_limits() -> None:
    with pytest.raises(a4.EncodeError):
        a4.bcd_encode(80000)  # top digit has 3 bits
    with pytest.raises(a4.EncodeError):
        a4.bcd_encode(100000)
    bad = a4.pack(0o125, 0xA)  # digit in bits 11-14 is 10
    with pytest.raises(a4.DecodeError):
        a4.bcd_decode(bad)
    assert a4.bcd_decode(a4.pack(0o125, a4.bcd_encode(12.3, resolution=0.1)[0] >> 10),
                         resolution=0.1) == pytest.approx(12.3)


def test_ssm_status_tables() -> None:
    # shared/AVIONICS.md SSM table, (bits 31,30) -> meaning
    expected = {
        "bnr": [Status.FAILURE_WARNING, Status.NO_COMPUTED_DATA, Status.FUNCTIONAL_TEST,
                Status.NORMAL],
        "bcd": [Status.NORMAL, Status.NO_COMPUTED_DATA, Status.FUNCTIONAL_TEST, Status.NORMAL],
        "discrete": [Status.NORMAL, Status.NO_COMPUTED_DATA, Status.FUNCTIONAL_TEST,
                     Status.FAILURE_WARNING],
    }
    for enc, row in expected.items():
        for ssm, status in enumerate(row):
            assert a4.ssm_status(ssm, enc) is status
            assert a4.ssm_status(ssm | 0b100, enc) is status  # parity bit above is ignored


# --- cross-check against the PyPI arinc429 package ---------------------------------------------

# The peer reads bits 11-29 as the data field: only labels whose data starts at bit 11 or above.
PEER_BNR_SPECS = [s for s in BNR_SPECS if s.lsb >= 11]
N_CROSS = 10_000


def test_peer_decodes_our_positive_bnr_words() -> None:
    rnd = random.Random(0o203)
    peer = PeerDecoder()
    compared = 0
    for _ in range(N_CROSS + 500):
        spec = rnd.choice(PEER_BNR_SPECS)
        counts = rnd.randrange(1 << (29 - spec.lsb))  # positive: sign bit 29 clear
        value = counts * spec.resolution
        status = rnd.choice(list(Status))
        sdi = rnd.randrange(4)
        w = spec.encode(value, status, sdi)
        theirs = peer.decode(w.to_bytes(4, "big"), "BNR", msb=spec.msb, lsb=spec.lsb,
                             scale=spec.resolution)
        assert theirs.label == spec.label
        assert theirs.value == value
        assert theirs.sdi == sdi
        assert theirs.ssm == a4.ssm_of(w)
        assert bool(theirs.parity) == bool(w >> 31)
        assert theirs.word == w
        assert spec.decode(w).value == theirs.value
        compared += 1
    assert compared >= N_CROSS


def test_peer_encodes_the_same_positive_bnr_words() -> None:
    # The peer's range check allows only msb - lsb magnitude bits (one fewer than the field).
    rnd = random.Random(0o206)
    peer = PeerEncoder()
    compared = 0
    for _ in range(N_CROSS + 500):
        spec = rnd.choice(PEER_BNR_SPECS)
        counts = rnd.randrange(1 << (spec.msb - spec.lsb))
        value = counts * spec.resolution
        ssm, sdi = rnd.randrange(4), rnd.randrange(4)
        peer.encode(value=value, msb=spec.msb, lsb=spec.lsb, label=spec.label, sdi=sdi, ssm=ssm,
                    scale=spec.resolution, encoding="BNR")
        ours = a4.pack(spec.label, a4.bnr_encode(value, spec.lsb, spec.resolution),
                       lsb=spec.lsb, sdi=sdi, ssm=ssm)
        assert peer.word == ours, (spec.name, value, hex(peer.word), hex(ours))
        compared += 1
    assert compared >= N_CROSS


def test_peer_decodes_our_bcd_words() -> None:
    rnd = random.Random(0o125)
    peer = PeerDecoder()
    compared = 0
    for _ in range(N_CROSS + 500):
        n = rnd.randrange(80000)  # the peer is right up to 79999
        label, sdi = rnd.randrange(0o400), rnd.randrange(4)
        bits, sign = a4.bcd_encode(n)
        w = a4.pack(label, bits >> 10, sdi=sdi, ssm=sign)
        theirs = peer.decode(w.to_bytes(4, "big"), "BCD")
        assert theirs.label == label
        assert theirs.value == n
        assert theirs.sdi == sdi
        assert a4.bcd_decode(w) == theirs.value
        compared += 1
    assert compared >= N_CROSS


def test_peer_encodes_the_same_bcd_words() -> None:
    rnd = random.Random(0o260)
    peer = PeerEncoder()
    compared = 0
    for _ in range(N_CROSS + 500):
        n = rnd.randrange(80000)
        label, sdi = rnd.randrange(0o400), rnd.randrange(4)
        peer.encode(value=n, label=label, sdi=sdi, ssm=0, encoding="BCD")
        bits, sign = a4.bcd_encode(n)
        assert peer.word == a4.pack(label, bits >> 10, sdi=sdi, ssm=sign)
        compared += 1
    assert compared >= N_CROSS


@settings(max_examples=50)
@given(n=st.integers(1, 1000))
def test_peer_limitations_documented_in_avionics_md_hold(n: int) -> None:
    # If one of these starts failing, the peer changed and the cross-check ranges can widen.
    alt = TABLE.by_name["pressure_altitude"]
    w = alt.encode(float(n))
    from_int = PeerDecoder().decode(w, "BNR", msb=28, lsb=12)
    assert from_int.label != alt.label  # an int is read with the label from the wrong byte
    enc = PeerEncoder()
    enc.encode(value=80000 + 10 * n, label=0o125, encoding="BCD")
    assert PeerDecoder().decode(enc.bword, "BCD").value == 8000 + n  # divided by 10
