"""Audio, audio-description, subtitle and caption renditions of one HLS master (RFC 8216 4.3.4.1).

A film with more than its own soundtrack is packaged as video-only variants plus renditions:

- ``AUDIO`` (group ``aud``): the source's soundtrack and each ``--audio LANG=FILE[#N]`` (AAC
  stereo, 96 kbit/s, cut on the video's segment boundaries); an ``--audio-description`` track
  carries ``CHARACTERISTICS="public.accessibility.describes-video"`` and is never the default;
- ``SUBTITLES`` (group ``subs``): each ``--subtitles LANG=FILE`` and ``--captions LANG=FILE``
  (WebVTT or SRT in; WebVTT out, one segment for the whole film); closed captions (with sound
  descriptions) carry ``CHARACTERISTICS="public.accessibility.transcribes-spoken-dialog,
  public.accessibility.describes-music-and-sound"`` and are AUTOSELECT for deaf viewers' players.

Every video variant names both groups (``AUDIO="aud"``, ``SUBTITLES="subs"``), its BANDWIDTH
includes the largest audio rendition, and its CODECS add ``mp4a.40.2``. Raises
:class:`~media.video.VideoError` on an ffmpeg failure or a bad specification.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["AUDIO_KBPS", "Track", "TrackKind", "package_tracks", "parse_track", "write_master"]

AUDIO_KBPS = 96
TrackKind = Literal["audio", "description", "subtitles", "captions"]
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
CC_CHARACTERISTICS = ("public.accessibility.transcribes-spoken-dialog,"
                      "public.accessibility.describes-music-and-sound")
AD_CHARACTERISTICS = "public.accessibility.describes-video"
_NAMES = {"en": "English", "fr": "Français", "es": "Español", "de": "Deutsch", "it": "Italiano",
          "ar": "العربية", "ja": "日本語", "zh": "中文", "pt": "Português", "nl": "Nederlands"}


@dataclass(frozen=True, slots=True)
class Track:
    """One rendition's source: ``kind``, BCP 47 ``language``, source file, audio stream index.

    ``path`` None with kind ``audio`` means the film's own soundtrack (stream ``stream``).
    """

    kind: TrackKind
    language: str
    path: Path | None
    stream: int = 0

    @property
    def name(self) -> str:
        """The NAME a player shows: the language's own name, with "(CC)" or "(AD)"."""
        base = _NAMES.get(self.language.split("-")[0], self.language)
        return {"captions": f"{base} (CC)", "description": f"{base} (AD)"}.get(self.kind, base)

    @property
    def dirname(self) -> str:
        """The rendition's folder under ``hls/``: ``a-fr``, ``ad-en``, ``s-en``, ``cc-en``."""
        prefix = {"audio": "a", "description": "ad", "subtitles": "s", "captions": "cc"}[self.kind]
        return f"{prefix}-{self.language}"


def parse_track(kind: TrackKind, spec: str) -> Track:
    """``LANG=FILE`` or ``LANG=FILE#N`` (audio stream N of FILE) -> Track; ValueError if bad."""
    lang, sep, rest = spec.partition("=")
    if not sep or not _LANG.match(lang) or not rest:
        raise ValueError(f"--{kind}: {spec!r} is not LANG=FILE (LANG like en, fr or pt-BR)")
    stream = 0
    if "#" in rest and kind in ("audio", "description"):
        rest, _, n = rest.rpartition("#")
        if not n.isdigit():
            raise ValueError(f"--{kind}: {spec!r}: the stream after # must be a number")
        stream = int(n)
    path = Path(rest)
    if not path.is_file():
        raise ValueError(f"--{kind}: {path} does not exist")
    if kind in ("subtitles", "captions") and path.suffix.lower() not in (".vtt", ".srt"):
        raise ValueError(f"--{kind}: {path} is not WebVTT (.vtt) or SubRip (.srt)")
    return Track(kind, lang, path, stream)


def _audio(ffmpeg: str, src: Path, track: Track, out: Path, segment_s: int,
           run: Callable[[list[str]], None]) -> None:
    d = out / track.dirname
    d.mkdir(parents=True, exist_ok=True)
    inp = track.path or src
    run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(inp),
         "-map", f"0:a:{track.stream}", "-vn", "-c:a", "aac", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2",
         "-f", "hls", "-hls_time", str(segment_s), "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(d / "seg_%05d.ts"), str(d / "index.m3u8")])


def _text(ffmpeg: str, track: Track, out: Path, duration_s: float,
          run: Callable[[list[str]], None]) -> None:
    assert track.path is not None
    d = out / track.dirname
    d.mkdir(parents=True, exist_ok=True)
    run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(track.path),
         "-c:s", "webvtt", str(d / "captions.vtt")])
    target = max(1, int(duration_s + 0.999))
    (d / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXT-X-TARGETDURATION:{target}\n#EXTINF:{duration_s:.3f},\ncaptions.vtt\n"
        "#EXT-X-ENDLIST\n")


def package_tracks(ffmpeg: str, src: Path, hls: Path, tracks: Sequence[Track], segment_s: int,
                   duration_s: float, run: Callable[[list[str]], None]) -> None:
    """Write each track's rendition playlist and segments under ``hls/<dirname>/``."""
    seen: set[str] = set()
    for t in tracks:
        if t.dirname in seen:
            raise ValueError(f"two {t.kind} tracks in {t.language}")
        seen.add(t.dirname)
        if t.kind in ("audio", "description"):
            _audio(ffmpeg, src, t, hls, segment_s, run)
        else:
            _text(ffmpeg, t, hls, duration_s, run)


def _q(s: str) -> str:
    return '"' + s.replace('"', "'") + '"'


def write_master(hls: Path, video_master: str, tracks: Sequence[Track]) -> str:
    """The master playlist text: ffmpeg's video variants (``video_master``) with the groups."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    audio = [t for t in tracks if t.kind in ("audio", "description")]
    text = [t for t in tracks if t.kind in ("subtitles", "captions")]
    first_main = next((t for t in audio if t.kind == "audio"), None)
    for t in audio:
        attrs = [f"TYPE=AUDIO,GROUP-ID=\"aud\",LANGUAGE={_q(t.language)},NAME={_q(t.name)}",
                 f"DEFAULT={'YES' if t is first_main else 'NO'}",
                 f"AUTOSELECT={'YES' if t.kind == 'audio' else 'NO'}", "CHANNELS=\"2\""]
        if t.kind == "description":
            attrs.append(f"CHARACTERISTICS={_q(AD_CHARACTERISTICS)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs) + f",URI={_q(t.dirname + '/index.m3u8')}")
    for t in text:
        attrs = [f"TYPE=SUBTITLES,GROUP-ID=\"subs\",LANGUAGE={_q(t.language)},NAME={_q(t.name)}",
                 "DEFAULT=NO", "AUTOSELECT=YES", "FORCED=NO"]
        if t.kind == "captions":
            attrs.append(f"CHARACTERISTICS={_q(CC_CHARACTERISTICS)}")
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs) + f",URI={_q(t.dirname + '/index.m3u8')}")
    extra_bw = AUDIO_KBPS * 1100 if audio else 0
    pending: str | None = None
    for line in video_master.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            def bump(m: re.Match[str]) -> str:
                return f"{m.group(1)}{int(m.group(2)) + extra_bw}"
            inf = re.sub(r"((?:^|,)(?:AVERAGE-)?BANDWIDTH=)(\d+)", bump, line.split(":", 1)[1])
            if audio:
                inf = re.sub(r'CODECS="([^"]*)"', lambda m: f'CODECS="{m.group(1)},mp4a.40.2"'
                             if "mp4a" not in m.group(1) else m.group(0), inf)
                inf += ',AUDIO="aud"'
            if text:
                inf += ',SUBTITLES="subs"'
            pending = "#EXT-X-STREAM-INF:" + inf
        elif pending and line and not line.startswith("#"):
            lines += [pending, line]
            pending = None
    body = "\n".join(lines) + "\n"
    (hls / "master.m3u8").write_text(body)
    return body
