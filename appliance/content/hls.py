"""HLS playlists (RFC 8216) as far as a VOD package needs: parse master and media playlists, check them.

:func:`parse_master` and :func:`parse_media` raise :class:`~appliance.errors.PackageError` with a
reason naming the playlist and line; paths in the results are relative to the package root.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from ..errors import PackageError

__all__ = ["MediaPlaylist", "Rendition", "Variant", "parse_attributes", "parse_master", "parse_media",
           "parse_renditions"]

_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^",]*)')


def parse_attributes(text: str) -> dict[str, str]:
    """``A=1,B="x,y"`` -> {"A": "1", "B": "x,y"}."""
    return {k: v.strip('"') for k, v in _ATTR.findall(text)}


@dataclass(frozen=True, slots=True)
class Variant:
    """One rendition of the master playlist: bandwidth (bit/s), resolution, codecs, playlist path."""

    bandwidth: int
    resolution: tuple[int, int]
    codecs: str
    uri: str


@dataclass(frozen=True, slots=True)
class Rendition:
    """An ``#EXT-X-MEDIA`` of the master playlist (RFC 8216 4.3.4.1).

    TYPE (AUDIO, SUBTITLES), GROUP-ID, LANGUAGE, NAME, DEFAULT/AUTOSELECT, CHARACTERISTICS
    (comma-separated UTIs) and the rendition's playlist path.
    """

    type: str
    group: str
    language: str
    name: str
    default: bool
    autoselect: bool
    characteristics: tuple[str, ...]
    uri: str


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """A VOD media playlist: target duration (s), segments as (path, duration s), init map or None."""

    target_duration: int
    segments: tuple[tuple[str, float], ...]
    init: str | None

    @property
    def duration_s(self) -> float:
        """Total duration in seconds."""
        return sum(d for _, d in self.segments)


def _join(base: str, uri: str, where: str) -> str:
    if "://" in uri or uri.startswith("/"):
        raise PackageError(f"{where}: URI {uri!r} is not relative to the package")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(base), uri))
    if path.startswith("../") or path == "..":
        raise PackageError(f"{where}: URI {uri!r} leaves the package")
    return path


def _lines(text: str, name: str) -> list[str]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PackageError(f"{name}: not an HLS playlist (no #EXTM3U)")
    return lines


def parse_master(text: str, name: str) -> list[Variant]:
    """Parse the master playlist ``name``; every variant needs BANDWIDTH, RESOLUTION and CODECS."""
    lines = _lines(text, name)
    out: list[Variant] = []
    for i, line in enumerate(lines):
        if not line.startswith("#EXT-X-STREAM-INF:"):
            continue
        attrs = parse_attributes(line.split(":", 1)[1])
        where = f"{name} line {i + 1}"
        missing = [k for k in ("BANDWIDTH", "RESOLUTION", "CODECS") if k not in attrs]
        if missing:
            raise PackageError(f"{where}: #EXT-X-STREAM-INF lacks {', '.join(missing)}")
        m = re.fullmatch(r"(\d+)x(\d+)", attrs["RESOLUTION"])
        if not m or not attrs["BANDWIDTH"].isdigit():
            raise PackageError(f"{where}: bad BANDWIDTH or RESOLUTION")
        if i + 1 >= len(lines) or lines[i + 1].startswith("#"):
            raise PackageError(f"{where}: #EXT-X-STREAM-INF is not followed by a URI")
        out.append(Variant(int(attrs["BANDWIDTH"]), (int(m[1]), int(m[2])), attrs["CODECS"],
                           _join(name, lines[i + 1], where)))
    if not out:
        raise PackageError(f"{name}: a master playlist with no #EXT-X-STREAM-INF")
    return out


def parse_renditions(text: str, name: str) -> list[Rendition]:
    """The AUDIO and SUBTITLES renditions of the master playlist ``name``.

    Each needs GROUP-ID, NAME and a URI; a variant that names an AUDIO or SUBTITLES group needs
    that group; DEFAULT=YES at most once per group. Raises PackageError with the line.
    """
    lines = _lines(text, name)
    out: list[Rendition] = []
    groups: dict[str, set[str]] = {"AUDIO": set(), "SUBTITLES": set()}
    for i, line in enumerate(lines):
        where = f"{name} line {i + 1}"
        if line.startswith("#EXT-X-MEDIA:"):
            a = parse_attributes(line.split(":", 1)[1])
            kind = a.get("TYPE", "")
            if kind not in groups:
                raise PackageError(f"{where}: #EXT-X-MEDIA TYPE {kind!r} (AUDIO or SUBTITLES)")
            missing = [k for k in ("GROUP-ID", "NAME", "URI") if not a.get(k)]
            if missing:
                raise PackageError(f"{where}: #EXT-X-MEDIA lacks {', '.join(missing)}")
            r = Rendition(kind, a["GROUP-ID"], a.get("LANGUAGE", ""), a["NAME"],
                          a.get("DEFAULT") == "YES", a.get("AUTOSELECT") == "YES",
                          tuple(c for c in a.get("CHARACTERISTICS", "").split(",") if c),
                          _join(name, a["URI"], where))
            if r.default and any(o.default and o.type == kind and o.group == r.group for o in out):
                raise PackageError(f"{where}: two DEFAULT=YES renditions in group {r.group!r}")
            groups[kind].add(r.group)
            out.append(r)
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            a = parse_attributes(line.split(":", 1)[1])
            for kind in groups:
                if kind in a and a[kind] not in groups[kind]:
                    raise PackageError(f"{name} line {i + 1}: {kind} group {a[kind]!r} is not "
                                       "defined by an #EXT-X-MEDIA")
    return out


def parse_media(text: str, name: str) -> MediaPlaylist:
    """Parse the VOD media playlist ``name``: #EXT-X-TARGETDURATION, segments, #EXT-X-ENDLIST.

    Raises PackageError if a segment is longer than the target duration (rounded, RFC 8216 4.3.3.1)
    or the playlist is not a complete VOD playlist.
    """
    lines = _lines(text, name)
    target: int | None = None
    init: str | None = None
    segments: list[tuple[str, float]] = []
    pending: float | None = None
    ended = False
    for i, line in enumerate(lines):
        where = f"{name} line {i + 1}"
        if line.startswith("#EXT-X-TARGETDURATION:"):
            value = line.split(":", 1)[1]
            if not value.isdigit():
                raise PackageError(f"{where}: bad #EXT-X-TARGETDURATION")
            target = int(value)
        elif line.startswith("#EXT-X-MAP:"):
            uri = parse_attributes(line.split(":", 1)[1]).get("URI")
            if not uri:
                raise PackageError(f"{where}: #EXT-X-MAP without URI")
            init = _join(name, uri, where)
        elif line.startswith("#EXTINF:"):
            try:
                pending = float(line.split(":", 1)[1].split(",", 1)[0])
            except ValueError as e:
                raise PackageError(f"{where}: bad #EXTINF") from e
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif not line.startswith("#"):
            if pending is None:
                raise PackageError(f"{where}: segment {line!r} without #EXTINF")
            segments.append((_join(name, line, where), pending))
            pending = None
    if target is None:
        raise PackageError(f"{name}: no #EXT-X-TARGETDURATION")
    if not ended:
        raise PackageError(f"{name}: no #EXT-X-ENDLIST (not a VOD playlist)")
    if not segments:
        raise PackageError(f"{name}: no segments")
    for path, d in segments:
        if round(d) > target:
            raise PackageError(f"{name}: segment {path} lasts {d:.3f} s, over the target {target} s")
    return MediaPlaylist(target, tuple(segments), init)
