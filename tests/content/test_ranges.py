"""RFC 9110 ranges and conditionals as a table: (method, headers) -> (status, span, Content-Range)."""

from __future__ import annotations

import pytest

from appliance.content.ranges import Representation, decide, http_date, parse_byte_ranges

REP = Representation(size=1000, etag='"abc"', mtime=1_700_000_000.0, content_type="video/mp2t",
                     cache_control="public, max-age=31536000, immutable")
LM = http_date(REP.mtime)
EARLIER = http_date(REP.mtime - 3600)


def h(d: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in d.items()}


CASES = [
    # (method, headers, status, start, length, content-range)
    ("GET", {}, 200, 0, 1000, None),
    ("HEAD", {}, 200, 0, 1000, None),
    ("GET", {"Range": "bytes=0-99"}, 206, 0, 100, "bytes 0-99/1000"),
    ("GET", {"Range": "bytes=990-"}, 206, 990, 10, "bytes 990-999/1000"),  # open range
    ("GET", {"Range": "bytes=-10"}, 206, 990, 10, "bytes 990-999/1000"),  # suffix
    ("GET", {"Range": "bytes=-5000"}, 206, 0, 1000, "bytes 0-999/1000"),  # suffix > size
    ("GET", {"Range": "bytes=900-99999999999"}, 206, 900, 100, "bytes 900-999/1000"),  # huge end
    ("GET", {"Range": "bytes=999-999"}, 206, 999, 1, "bytes 999-999/1000"),
    ("GET", {"Range": "bytes=1000-"}, 416, 0, 0, "bytes */1000"),  # past the end
    ("GET", {"Range": "bytes=5000-6000"}, 416, 0, 0, "bytes */1000"),
    ("GET", {"Range": "bytes=-0"}, 416, 0, 0, "bytes */1000"),
    ("GET", {"Range": "bytes=abc"}, 416, 0, 0, "bytes */1000"),  # malformed
    ("GET", {"Range": "bytes=5-1"}, 416, 0, 0, "bytes */1000"),  # last < first
    ("GET", {"Range": "bytes="}, 416, 0, 0, "bytes */1000"),
    ("GET", {"Range": "bytes=1-2-3"}, 416, 0, 0, "bytes */1000"),
    ("GET", {"Range": "bytes=" + "9" * 40 + "-"}, 416, 0, 0, "bytes */1000"),  # absurd number
    ("GET", {"Range": "0-99"}, 416, 0, 0, "bytes */1000"),  # no unit
    ("GET", {"Range": "items=0-9"}, 200, 0, 1000, None),  # unknown unit: ignored
    ("GET", {"Range": "bytes=0-9,10-19"}, 206, 0, 20, "bytes 0-19/1000"),  # adjacent: coalesced
    ("GET", {"Range": "bytes=0-9,500-509"}, 200, 0, 1000, None),  # disjoint: whole (RFC MAY)
    ("HEAD", {"Range": "bytes=0-9"}, 200, 0, 1000, None),  # Range is for GET only
    ("GET", {"Range": "bytes=0-9", "If-Range": '"abc"'}, 206, 0, 10, "bytes 0-9/1000"),
    ("GET", {"Range": "bytes=0-9", "If-Range": '"old"'}, 200, 0, 1000, None),
    ("GET", {"Range": "bytes=0-9", "If-Range": 'W/"abc"'}, 200, 0, 1000, None),  # weak: no
    ("GET", {"Range": "bytes=0-9", "If-Range": LM}, 206, 0, 10, "bytes 0-9/1000"),
    ("GET", {"Range": "bytes=0-9", "If-Range": EARLIER}, 200, 0, 1000, None),
    ("GET", {"If-None-Match": '"abc"'}, 304, 0, 0, None),
    ("GET", {"If-None-Match": 'W/"abc", "x"'}, 304, 0, 0, None),
    ("GET", {"If-None-Match": "*"}, 304, 0, 0, None),
    ("GET", {"If-None-Match": '"x"', "If-Modified-Since": LM}, 200, 0, 1000, None),  # INM wins
    ("GET", {"If-Modified-Since": LM}, 304, 0, 0, None),
    ("GET", {"If-Modified-Since": EARLIER}, 200, 0, 1000, None),
    ("GET", {"If-Modified-Since": "garbage"}, 200, 0, 1000, None),
    ("GET", {"If-Match": '"x"'}, 412, 0, 0, None),
    ("GET", {"If-Match": '"abc"', "Range": "bytes=0-0"}, 206, 0, 1, "bytes 0-0/1000"),
    ("GET", {"If-Unmodified-Since": EARLIER}, 412, 0, 0, None),
    ("GET", {"If-None-Match": '"abc"', "Range": "bytes=0-9"}, 304, 0, 0, None),
]


@pytest.mark.parametrize(("method", "headers", "status", "start", "length", "crange"), CASES)
def test_decide(method: str, headers: dict[str, str], status: int, start: int, length: int,
                crange: str | None) -> None:
    d = decide(method, h(headers), REP)
    got = dict(d.headers)
    assert (d.status, d.start, d.length) == (status, start, length)
    assert got.get("content-range") == crange
    assert got["etag"] == '"abc"' and got["accept-ranges"] == "bytes" and got["last-modified"] == LM
    if status in (200, 206):
        assert got["content-length"] == str(length) and got["content-type"] == "video/mp2t"


def test_empty_file_ranges_unsatisfiable() -> None:
    empty = Representation(0, '"e"', 0.0, "text/plain", "no-cache")
    assert decide("GET", {"range": "bytes=0-"}, empty).status == 416
    assert decide("GET", {}, empty).status == 200


def test_parse_byte_ranges() -> None:
    assert parse_byte_ranges("bytes=0-1, ,3-4", 10) == [(0, 1), (3, 4)]
    assert parse_byte_ranges("BYTES=0-1", 10) == [(0, 1)]
    assert parse_byte_ranges("bytes=" + ",".join(["0-1"] * 100), 10) == "invalid"
