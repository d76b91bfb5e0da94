"""HTTP range and conditional requests for static representations (RFC 9110 sections 13 and 14).

:func:`decide` is pure: given the method, the request's header values and the representation's
size, ETag and modification time, it returns the status and the byte span to send plus the headers
that go with it. Both media paths (the sendfile server and the ASGI fallback) use it.

Choices where RFC 9110 lets the server choose (each is tested):

- A ``Range`` with a unit other than ``bytes`` is ignored (200). A syntactically invalid ``bytes``
  range (``bytes=abc``, ``bytes=5-1``, ``bytes=``, numbers of more than 18 digits) is rejected with
  416 and ``Content-Range: bytes */SIZE`` (the RFC's "MAY ... reject").
- Several ranges: if they overlap or touch they are coalesced into one 206; otherwise, and beyond
  ``MAX_RANGES``, the request is answered 200 with the whole representation (the RFC's "MAY ignore").
  No multipart/byteranges: players never ask for it.
- ``Range`` is honoured for GET only (HEAD answers as a GET without Range would, per 14.2).
- ``If-Range`` with a weak tag or a date other than exactly ``Last-Modified`` does not match.
"""

from __future__ import annotations

import email.utils
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MAX_RANGES", "Decision", "Representation", "decide", "http_date", "parse_byte_ranges"]

MAX_RANGES = 16
_SPEC = re.compile(r"^\s*(\d{0,18})\s*-\s*(\d{0,18})\s*$")


@dataclass(frozen=True, slots=True)
class Representation:
    """A file as HTTP sees it: size (bytes), strong ETag (quoted), mtime (epoch s), MIME, caching."""

    size: int
    etag: str
    mtime: float
    content_type: str
    cache_control: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer: status, the first byte and byte count of the body, and the response headers."""

    status: int
    start: int
    length: int
    headers: tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=4096)
def http_date(epoch: float) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) for ``epoch`` seconds."""
    return email.utils.formatdate(int(epoch), usegmt=True)


def _parse_date(value: str) -> float | None:
    try:
        d = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return d.timestamp() if d.tzinfo is not None else None


def _tags(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _weak_match(tags: list[str], etag: str) -> bool:
    bare = etag.removeprefix("W/")
    return any(t == "*" or t.removeprefix("W/") == bare for t in tags)


def parse_byte_ranges(value: str, size: int) -> list[tuple[int, int]] | str | None:
    """Parse a ``Range`` value against a representation of ``size`` bytes.

    Returns a list of satisfiable (first, last) inclusive spans (possibly empty: unsatisfiable),
    None if the unit is not ``bytes`` (ignore the header), or "invalid" for bad syntax.
    """
    unit, sep, spec = value.partition("=")
    if not sep:
        return "invalid"
    if unit.strip().lower() != "bytes":
        return None
    parts = spec.split(",")
    if not spec.strip() or len(parts) > MAX_RANGES * 4:
        return "invalid"
    out: list[tuple[int, int]] = []
    for part in parts:
        if not part.strip():
            continue  # RFC 9110 allows empty list elements
        m = _SPEC.match(part)
        if not m or (not m[1] and not m[2]):
            return "invalid"
        if m[1]:
            first = int(m[1])
            last = int(m[2]) if m[2] else size - 1
            if m[2] and last < first:
                return "invalid"
            if first < size:
                out.append((first, min(last, size - 1)))
        else:
            n = int(m[2])
            if n > 0 and size > 0:
                out.append((max(0, size - n), size - 1))
    return out


def _coalesce(spans: list[tuple[int, int]]) -> tuple[int, int] | None:
    spans = sorted(spans)
    first, last = spans[0]
    for a, b in spans[1:]:
        if a > last + 1:
            return None
        last = max(last, b)
    return first, last


def decide(method: str, headers: Mapping[str, str], rep: Representation) -> Decision:
    """The response to ``method`` (GET or HEAD) with request ``headers`` (lower-case names).

    Precedence per RFC 9110 13.2.2: If-Match, If-Unmodified-Since, If-None-Match,
    If-Modified-Since, then Range (with If-Range).
    """
    lm = http_date(rep.mtime)
    base = (("accept-ranges", "bytes"), ("etag", rep.etag), ("last-modified", lm),
            ("cache-control", rep.cache_control))
    typed = (("content-type", rep.content_type), *base)
    mtime_s = int(rep.mtime)
    if (v := headers.get("if-match")) is not None:
        tags = _tags(v)
        if not any(t == "*" or (t == rep.etag and not t.startswith("W/")) for t in tags):
            return Decision(412, 0, 0, (*base, ("content-length", "0")))
    elif (v := headers.get("if-unmodified-since")) is not None:
        d = _parse_date(v)
        if d is not None and mtime_s > d:
            return Decision(412, 0, 0, (*base, ("content-length", "0")))
    if (v := headers.get("if-none-match")) is not None:
        if _weak_match(_tags(v), rep.etag):
            return Decision(304, 0, 0, base)
    elif (v := headers.get("if-modified-since")) is not None:
        d = _parse_date(v)
        if d is not None and mtime_s <= d:
            return Decision(304, 0, 0, base)
    full = Decision(200, 0, rep.size, (*typed, ("content-length", str(rep.size))))
    rng = headers.get("range")
    if rng is None or method != "GET":
        return full
    if (ir := headers.get("if-range")) is not None:
        ir = ir.strip()
        if ir.startswith('"') or ir.startswith("W/"):
            if ir != rep.etag or ir.startswith("W/"):
                return full
        elif ir != lm:
            return full
    spans = parse_byte_ranges(rng, rep.size)
    if spans is None:
        return full
    if spans == "invalid" or not spans:
        return Decision(416, 0, 0, (*typed, ("content-range", f"bytes */{rep.size}"),
                                    ("content-length", "0")))
    assert not isinstance(spans, str)
    span = spans[0] if len(spans) == 1 else (_coalesce(spans) if len(spans) <= MAX_RANGES else None)
    if span is None:
        return full
    first, last = span
    n = last - first + 1
    return Decision(206, first, n, (*typed, ("content-range", f"bytes {first}-{last}/{rep.size}"),
                                    ("content-length", str(n))))
