"""The card's serial frame protocol (``firmware_bridge.frame``, spec in ``PROTOCOL.md``)."""

from __future__ import annotations

import itertools
import random
import re
import struct
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import firmware_bridge
from firmware_bridge.frame import (
    HEADER,
    MAX_PAYLOAD,
    SYNC,
    DecoderStats,
    DiscreteBits,
    Frame,
    FrameDecoder,
    FrameType,
    Heartbeat,
    encode_discretes,
    encode_frame,
    encode_word,
)
from firmware_bridge.labels import LabelTable

PROTOCOL_MD = Path(firmware_bridge.__file__).resolve().parents[1] / "PROTOCOL.md"
HEADER_LEN = 13
CRC_LEN = 2
#: Idle bytes after a test stream: enough for any header seen near the end to be resolved
#: (sync .. CRC of a maximal frame), and never part of a sync pattern.
IDLE = b"\x00" * (HEADER_LEN + MAX_PAYLOAD + CRC_LEN)


def crc16_ccitt_false(data: bytes) -> int:
    """Bitwise reference CRC: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def frame_size(f: Frame) -> int:
    return HEADER_LEN + len(f.payload) + CRC_LEN


def decode_all(chunks: list[bytes]) -> tuple[list[Frame], DecoderStats]:
    dec = FrameDecoder()
    out: list[Frame] = []
    for c in chunks:
        out += dec.feed(c)
    return out, dec.stats


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def sync_positions(stream: bytes) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(SYNC), stream)]


def expected_rejects(stream: bytes, good: list[tuple[int, int]]) -> tuple[int, int, bool]:
    """Model of the resynchronisation rule, independent of the decoder.

    Every sync pattern not inside a good frame (``good``: (start, end) byte ranges) is tried as a
    header: a length above MAX_PAYLOAD counts as bad length, anything else as a CRC error.
    Returns (crc_errors, bad_length, spurious) where ``spurious`` says that one of those headers
    happens to carry a matching CRC (probability 2**-16 each): the stream then really holds a
    frame that was not sent, and the test discards the example.
    """
    inside: set[int] = set()
    for a, b in good:
        inside.update(range(a, b))
    crc_errors = bad_length = 0
    spurious = False
    for i in sync_positions(stream):
        if i in inside:
            continue
        length = stream[i + 4]
        if length > MAX_PAYLOAD:
            bad_length += 1
            continue
        crc_errors += 1
        end = i + HEADER_LEN + length
        if crc16_ccitt_false(stream[i + 2:end]) == int.from_bytes(stream[end:end + 2], "little"):
            spurious = True
    return crc_errors, bad_length, spurious


# --- strategies ------------------------------------------------------------------------------

frames_st = st.builds(
    Frame,
    type=st.integers(0, 255),
    channel=st.integers(0, 255),
    t_us=st.integers(0, 2**64 - 1),
    payload=st.binary(max_size=MAX_PAYLOAD),
)


def encode(f: Frame) -> bytes:
    return encode_frame(f.type, f.channel, f.t_us, f.payload)


def fake_header(length: int, rest: bytes, ftype: int = 1) -> bytes:
    return SYNC + bytes([ftype, 1, length]) + (123456789).to_bytes(8, "little") + rest


def bad_crc(f: Frame) -> bytes:
    raw = bytearray(encode(f))
    raw[-1] ^= 0x01
    return bytes(raw)


garbage_piece = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"\xa5", b"\x5a", SYNC, SYNC + b"\x01", b"\x5a\xa5"]),
    # a fake header with a good-looking length; may claim bytes of the next real frame
    st.builds(fake_header, st.integers(0, MAX_PAYLOAD), st.binary(max_size=80)),
    # an impossible length
    st.builds(fake_header, st.integers(MAX_PAYLOAD + 1, 255), st.binary(max_size=20)),
    # a complete frame with a broken CRC
    frames_st.map(bad_crc),
)
garbage_st = st.lists(garbage_piece, max_size=4).map(b"".join)


# --- layout ----------------------------------------------------------------------------------


def test_crc_is_ccitt_false() -> None:
    # the catalogue check value of CRC-16/CCITT-FALSE over "123456789" is 0x29B1
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    f = encode_frame(0x01, 0, 0, b"123456789")
    assert int.from_bytes(f[-2:], "little") == crc16_ccitt_false(f[2:-2])


@given(f=frames_st)
def test_layout_at_documented_offsets(f: Frame) -> None:
    raw = encode(f)
    assert len(raw) == 13 + len(f.payload) + 2
    assert raw[0:2] == b"\xa5\x5a"
    assert raw[2] == f.type
    assert raw[3] == f.channel
    assert raw[4] == len(f.payload)
    assert int.from_bytes(raw[5:13], "little") == f.t_us
    assert raw[13:13 + len(f.payload)] == f.payload
    assert int.from_bytes(raw[-2:], "little") == crc16_ccitt_false(raw[2:-2])
    assert HEADER.size == HEADER_LEN


def test_word_frame_little_endian() -> None:
    raw = encode_word(3, 0x0102030405060708, 0xE01F4050)
    assert raw[2] == 0x01 == int(FrameType.A429_WORD)
    assert raw[3] == 3 and raw[4] == 4
    assert raw[5:13] == bytes([8, 7, 6, 5, 4, 3, 2, 1])
    assert raw[13:17] == bytes([0x50, 0x40, 0x1F, 0xE0])  # bits 1-8 (the label) first
    (f,) = FrameDecoder().feed(raw)
    assert f.word() == 0xE01F4050 and f.channel == 3 and f.t_us == 0x0102030405060708


def test_discretes_and_heartbeat_payloads() -> None:
    states = DiscreteBits.WOW_LEFT | DiscreteBits.DOOR_AFT_CLOSED
    raw = encode_discretes(77, int(states), int(DiscreteBits.WOW_RIGHT))
    (f,) = FrameDecoder().feed(raw)
    assert (f.type, f.channel, f.t_us) == (FrameType.DISCRETES, 0, 77)
    assert f.payload == struct.pack("<HH", states, DiscreteBits.WOW_RIGHT)
    assert DiscreteBits(int.from_bytes(f.payload[:2], "little")) == states
    bits = [int(b) for b in DiscreteBits]
    assert all(b & (b - 1) == 0 for b in bits) and len(set(bits)) == len(bits)  # one bit each
    hb = Heartbeat(1, 2, 0x01020304, 5, 6)
    payload = hb.pack()
    assert payload == bytes([1, 2, 4, 3, 2, 1, 5, 0, 6, 0])
    assert Heartbeat.unpack(payload) == hb
    (f,) = FrameDecoder().feed(encode_frame(FrameType.HEARTBEAT, 0, 9, payload))
    assert Heartbeat.unpack(f.payload) == hb
    with pytest.raises(struct.error):
        Heartbeat.unpack(payload[:-1])
    with pytest.raises(struct.error):
        Frame(FrameType.A429_WORD, 0, 0, b"\x01\x02").word()


def test_max_payload() -> None:
    assert MAX_PAYLOAD == 64
    (f,) = FrameDecoder().feed(encode_frame(0x02, 0, 0, bytes(64)))
    assert f.payload == bytes(64)
    with pytest.raises(ValueError):
        encode_frame(0x02, 0, 0, bytes(65))


def test_worked_example_in_protocol_md_matches_code() -> None:
    alt = LabelTable.default().by_name["pressure_altitude"]
    raw = encode_word(1, 120_000_400, alt.encode(35000.0))
    text = PROTOCOL_MD.read_text()
    examples = re.findall(r"(?m)^(a5 5a(?: [0-9a-f]{2})+)$", text)
    assert raw.hex(" ") in examples
    assert f"{alt.encode(35000.0):#010x}" in text.lower()


# --- decoder ---------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(frames_st, max_size=12), cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_round_trip_any_chunking(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in frames)
    got, stats = decode_all(split(stream, cuts))
    assert got == frames
    assert stats.frames == len(frames)
    assert stats.bytes_in == len(stream)
    assert stats.garbage_bytes == stats.crc_errors == stats.bad_length == 0


@settings(max_examples=200, deadline=None)
@given(segments=st.lists(st.tuples(garbage_st, frames_st), max_size=8), tail=garbage_st,
       cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_garbage_between_frames(segments: list[tuple[bytes, Frame]], tail: bytes,
                                cuts: list[int]) -> None:
    stream = b""
    good: list[tuple[int, int]] = []
    for junk, f in segments:
        stream += junk
        raw = encode(f)
        good.append((len(stream), len(stream) + len(raw)))
        stream += raw
    stream += tail + IDLE
    crc_errors, bad_length, spurious = expected_rejects(stream, good)
    assume(not spurious)  # a fake header whose CRC matches by chance (p = 2**-16 per header)

    got, stats = decode_all(split(stream, cuts))
    sent = [f for _, f in segments]
    assert got == sent  # none lost, none invented, in order
    assert stats.frames == len(sent)
    assert stats.crc_errors == crc_errors
    assert stats.bad_length == bad_length
    frame_bytes = sum(frame_size(f) for f in got)
    assert stats.bytes_in == len(stream)
    assert stats.garbage_bytes == len(stream) - frame_bytes  # all garbage resolved by IDLE


@settings(max_examples=200, deadline=None)
@given(data=st.data(), frames=st.lists(frames_st, min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 10**6), max_size=10))
def test_corrupted_byte_drops_exactly_that_frame(data: st.DataObject, frames: list[Frame],
                                                 cuts: list[int]) -> None:
    j = data.draw(st.integers(0, len(frames) - 1), label="frame")
    raws = [bytearray(encode(f)) for f in frames]
    k = data.draw(st.integers(0, len(raws[j]) - 1), label="offset")
    raws[j][k] ^= data.draw(st.integers(1, 255), label="xor")
    stream = b"".join(raws) + IDLE
    good, pos = [], 0
    for i, r in enumerate(raws):
        if i != j:
            good.append((pos, pos + len(r)))
        pos += len(r)
    crc_errors, bad_length, spurious = expected_rejects(stream, good)
    assume(not spurious)

    got, stats = decode_all(split(stream, cuts))
    assert got == frames[:j] + frames[j + 1:]
    assert (stats.crc_errors, stats.bad_length) == (crc_errors, bad_length)
    if k >= 2 and k != 4:  # inside the CRC-covered bytes, length intact: a burst of <= 8 bits
        assert stats.crc_errors >= 1
    if k == 4:
        assert stats.crc_errors + stats.bad_length >= 1
    assert stats.garbage_bytes == len(stream) - sum(frame_size(f) for f in got)


def test_corrupted_payload_simple_case() -> None:
    a = encode_word(1, 1000, 0x11223344)
    b = encode_word(1, 2000, 0x55667788)
    bad = bytearray(a)
    bad[14] ^= 0xFF
    got, stats = decode_all([bytes(bad) + b])
    assert [f.word() for f in got] == [0x55667788]
    assert stats.crc_errors == 1 and stats.bad_length == 0
    assert stats.garbage_bytes == len(a)


def test_impossible_length_is_skipped() -> None:
    good = encode_word(2, 5, 0xDEADBEEF)
    junk = fake_header(MAX_PAYLOAD + 1, bytes(100))
    got, stats = decode_all([junk + good])
    assert [f.word() for f in got] == [0xDEADBEEF]
    assert stats.bad_length == 1 and stats.crc_errors == 0
    assert stats.garbage_bytes == len(junk)


def test_partial_frames_are_buffered_not_counted() -> None:
    raw = encode_word(1, 42, 0xCAFEBABE)
    for k in range(1, len(raw)):
        dec = FrameDecoder()
        assert dec.feed(b"\x00\x01" + raw[:k]) == []
        st_ = dec.stats
        buffered = st_.bytes_in - st_.garbage_bytes
        assert st_.garbage_bytes == 2 and buffered == k
        (f,) = dec.feed(raw[k:])
        assert f.word() == 0xCAFEBABE
        assert dec.stats.bytes_in == dec.stats.garbage_bytes + len(raw)


def test_trailing_a5_kept_other_garbage_counted() -> None:
    dec = FrameDecoder()
    assert dec.feed(b"\x10\x20\xa5") == []
    assert dec.stats.garbage_bytes == 2  # the 0xA5 may start a sync
    assert dec.feed(b"\x33") == []
    assert dec.stats.garbage_bytes == 4
    assert dec.feed(b"\xa5\xa5") == []
    assert dec.stats.garbage_bytes == 5


def test_reset_drops_partial_frame() -> None:
    raw = encode_word(1, 42, 0xCAFEBABE)
    dec = FrameDecoder()
    dec.feed(raw[:10])
    dec.reset()
    assert dec.stats.garbage_bytes == 10
    assert dec.stats.bytes_in == dec.stats.garbage_bytes
    (f,) = dec.feed(raw)
    assert f.t_us == 42


@settings(deadline=None)
@given(frames=st.lists(frames_st, max_size=5), junk=garbage_st, k=st.integers(0, 200))
def test_stats_add_up(frames: list[Frame], junk: bytes, k: int) -> None:
    stream = junk + b"".join(encode(f) for f in frames) + junk
    stream = stream[:len(stream) - k % (len(stream) + 1)]  # possibly cut inside a frame
    dec = FrameDecoder()
    got = dec.feed(stream)
    st_ = dec.stats
    consumed = st_.garbage_bytes + sum(frame_size(f) for f in got)
    buffered = st_.bytes_in - consumed
    assert st_.bytes_in == len(stream)
    assert 0 <= buffered <= HEADER_LEN + MAX_PAYLOAD + CRC_LEN - 1  # at most one partial frame
    assert st_.frames == len(got)
    dec.reset()
    assert st_.bytes_in == st_.garbage_bytes + sum(frame_size(f) for f in got)


def test_unknown_type_with_good_crc_is_returned() -> None:
    (f,) = FrameDecoder().feed(encode_frame(0x7F, 2, 5, b"xyz"))
    assert (f.type, f.channel, f.t_us, f.payload) == (0x7F, 2, 5, b"xyz")
    assert f.type not in {int(t) for t in FrameType}


def test_long_seeded_stream_with_garbage() -> None:
    # a larger deterministic run: 5,000 frames with random garbage, fed in random chunks
    rnd = random.Random(0xA55A)
    sent: list[Frame] = []
    parts: list[bytes] = []
    good: list[tuple[int, int]] = []
    pos = 0
    for i in range(5000):
        if rnd.random() < 0.3:
            junk = bytearray(rnd.randbytes(rnd.randint(1, 40)))
            if rnd.random() < 0.5:
                at = rnd.randrange(len(junk) + 1)
                junk[at:at] = SYNC + bytes([1, 0, rnd.randrange(256)])
            parts.append(bytes(junk))
            pos += len(junk)
        f = Frame(1, i % 8, i * 125, rnd.randbytes(4))
        raw = encode(f)
        sent.append(f)
        parts.append(raw)
        good.append((pos, pos + len(raw)))
        pos += len(raw)
    stream = b"".join(parts) + IDLE
    crc_errors, bad_length, spurious = expected_rejects(stream, good)
    assert not spurious  # fixed seed: no fake header happens to carry a good CRC
    cuts = sorted(rnd.randrange(len(stream)) for _ in range(3000))
    got, stats = decode_all(split(stream, cuts))
    assert got == sent
    assert (stats.crc_errors, stats.bad_length) == (crc_errors, bad_length)
    assert crc_errors > 100 and bad_length > 100  # the run did exercise resynchronisation
