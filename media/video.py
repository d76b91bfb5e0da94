"""Video -> HLS VOD ladder with ffmpeg (libx264 + AAC), a poster, keyframes on segment boundaries.

Each rendition is H.264 at a fixed height of the ladder (never above the source's), with a forced
keyframe every ``segment_s`` seconds and scene-cut keyframes off, so every segment starts on a
keyframe and lasts ``segment_s`` (the last may be shorter). ffmpeg writes the master playlist with
BANDWIDTH, RESOLUTION and CODECS. Segments are MPEG-TS (``.ts``) or fMP4 (``.m4s`` + ``init.mp4``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .tracks import Track, package_tracks, write_master

__all__ = ["LADDER", "Probe", "package_video", "probe"]

#: (height in pixels, video bitrate in kbit/s), best first.
LADDER = ((1080, 4500), (720, 2400), (480, 1200), (360, 700), (240, 400))


class VideoError(RuntimeError):
    """ffmpeg or ffprobe failed, or the source has no video stream."""


@dataclass(frozen=True, slots=True)
class Probe:
    """What the packager needs of a source: size (px), duration (s), has audio, video frames."""

    width: int
    height: int
    duration_s: float
    audio: bool
    frames: int | None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VideoError(f"{name} not found (Debian: apt-get install ffmpeg)")
    return path


def probe(src: Path) -> Probe:
    """Probe ``src`` with ffprobe; raises VideoError if it is not a video."""
    out = subprocess.run([_tool("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams",
                          "-show_format", str(src)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise VideoError(f"ffprobe {src}: {out.stderr.strip()}")
    data = json.loads(out.stdout)
    video = next((s for s in data["streams"] if s["codec_type"] == "video"), None)
    if video is None:
        raise VideoError(f"{src}: no video stream")
    frames = video.get("nb_frames")
    return Probe(int(video["width"]), int(video["height"]), float(data["format"]["duration"]),
                 any(s["codec_type"] == "audio" for s in data["streams"]),
                 int(frames) if frames and frames.isdigit() else None)


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise VideoError(f"ffmpeg failed: {res.stderr.strip()[-2000:]}")


def _ladder(src_height: int, renditions: int) -> list[tuple[int, int]]:
    rungs = [r for r in LADDER if r[0] <= src_height] or [LADDER[-1]]
    if len(rungs) < renditions:
        rungs = list(LADDER[-renditions:])
    # Spread the choice: the best rung, then every other one below it.
    picked = [rungs[0], *rungs[2::2], *rungs[1::2]]
    return sorted(picked[:renditions], reverse=True)


def run_with_progress(cmd: list[str], duration_s: float,
                      progress: Callable[[float, float], None] | None) -> None:
    """Run ffmpeg ``cmd`` with ``-progress`` on its stdout, calling ``progress(done_s, total_s)``.

    ``done_s`` is ffmpeg's ``out_time`` (seconds of the source encoded so far), reported about
    twice a second and once more (= ``total_s``) at the end. Raises VideoError with the end of
    ffmpeg's error output if it fails.
    """
    full = [cmd[0], "-progress", "pipe:1", "-stats_period", "0.5", "-nostats", *cmd[1:]]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if progress is not None and key == "out_time_us" and value.isdigit():
                progress(min(int(value) / 1e6, duration_s), duration_s)
        code = proc.wait()
        if code != 0:
            err.seek(0)
            raise VideoError(f"ffmpeg failed: {err.read().decode(errors='replace').strip()[-2000:]}")
    if progress is not None:
        progress(duration_s, duration_s)


#: The poster's widths (px): the catalog's ``srcset``; the widest is ``poster.jpg``.
POSTER_WIDTHS = (320, 480, 640)


def poster_sizes(info: Probe) -> list[dict[str, int | str]]:
    """The poster files :func:`write_posters` makes for ``info``: ``{"w", "h", "path"}``.

    Narrowest first; heights as ffmpeg's ``scale=W:-2`` rounds them (even).
    """
    out: list[dict[str, int | str]] = []
    for w in POSTER_WIDTHS:
        h = max(16, 2 * round(w * info.height / max(1, info.width) / 2))
        out.append({"w": w, "h": h, "path": "poster.jpg" if w == POSTER_WIDTHS[-1]
                    else f"poster-{w}.jpg"})
    return out


def write_posters(src: Path, out: Path, info: Probe) -> None:
    """One frame at 40 % of ``src`` as JPEG posters at :data:`POSTER_WIDTHS` (one ffmpeg run)."""
    sizes = poster_sizes(info)
    graph = f"[0:v]split={len(sizes)}" + "".join(f"[p{i}]" for i in range(len(sizes))) + ";" + \
        ";".join(f"[p{i}]scale={s['w']}:-2[o{i}]" for i, s in enumerate(sizes))
    cmd = [_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y",
           "-ss", f"{info.duration_s * 0.4:.3f}", "-i", str(src), "-filter_complex", graph]
    for i, s in enumerate(sizes):
        cmd += ["-map", f"[o{i}]", "-frames:v", "1", "-q:v", "4" if i == len(sizes) - 1 else "5",
                str(out / str(s["path"]))]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise VideoError(f"ffmpeg (poster) failed: {res.stderr.strip()[-2000:]}")


def package_video(src: Path, out: Path, *, segment_s: int = 4, renditions: int = 2,
                  segment_type: Literal["mpegts", "fmp4"] = "mpegts", tracks: Sequence[Track] = (),
                  audio_language: str = "en",
                  progress: Callable[[float, float], None] | None = None,
                  ) -> tuple[str, str, Probe]:
    """Cut ``src`` into an HLS ladder under ``out/hls`` and posters ``out/poster*.jpg``.

    With ``tracks`` (more audio languages, an audio description, subtitles, captions: see
    :mod:`media.tracks`) the variants are video only and every soundtrack, the source's own
    (language ``audio_language``) first, is an AUDIO rendition; without, the source's audio is
    muxed into each variant. Returns (entry playlist path, poster path, source probe), paths
    relative to ``out``. Raises VideoError if ffmpeg fails; ``segment_s`` must be 4..6 (the
    appliance's players expect it). ``progress(done_s, total_s)``: seconds of the source encoded
    so far by the ladder's ffmpeg run, from its ``-progress`` output (see :func:`run_with_progress`).
    """
    if not 4 <= segment_s <= 6:
        raise VideoError("segment_s must be between 4 and 6 seconds")
    if renditions < 2:
        raise VideoError("at least two renditions")
    info = probe(src)
    ladder = _ladder(info.height, renditions)
    hls = out / "hls"
    hls.mkdir(parents=True, exist_ok=True)
    n = len(ladder)
    split = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n)) + ";" + ";".join(
        f"[s{i}]scale=-2:{h}[v{i}]" for i, (h, _) in enumerate(ladder))
    cmd = [_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
           "-filter_complex", split]
    for i, (_, kbps) in enumerate(ladder):
        cmd += ["-map", f"[v{i}]", f"-c:v:{i}", "libx264", f"-b:v:{i}", f"{kbps}k",
                f"-maxrate:v:{i}", f"{kbps * 11 // 10}k", f"-bufsize:v:{i}", f"{kbps * 2}k"]
    if info.audio and not tracks:
        for _ in ladder:
            cmd += ["-map", "0:a:0"]
        cmd += ["-c:a", "aac", "-b:a", "96k", "-ac", "2"]
    cmd += ["-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
            "-force_key_frames", f"expr:gte(t,n_forced*{segment_s})", "-sc_threshold", "0",
            "-fps_mode", "passthrough",
            "-f", "hls", "-hls_time", str(segment_s), "-hls_playlist_type", "vod",
            "-hls_flags", "independent_segments", "-master_pl_name", "master.m3u8",
            "-var_stream_map", " ".join(f"v:{i},a:{i}" if info.audio and not tracks else f"v:{i}"
                                        for i in range(n))]
    if segment_type == "fmp4":
        cmd += ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                "-hls_segment_filename", str(hls / "v%v" / "seg_%05d.m4s")]
    else:
        cmd += ["-hls_segment_filename", str(hls / "v%v" / "seg_%05d.ts")]
    cmd.append(str(hls / "v%v" / "index.m3u8"))
    for i in range(n):
        (hls / f"v{i}").mkdir(exist_ok=True)
    run_with_progress(cmd, info.duration_s, progress)
    if tracks:
        own = [Track("audio", audio_language, None)] if info.audio else []
        every = [*own, *tracks]
        try:
            package_tracks(_tool("ffmpeg"), src, hls, every, segment_s, info.duration_s, _run)
        except ValueError as e:
            raise VideoError(str(e)) from e
        write_master(hls, (hls / "master.m3u8").read_text(), every)
    write_posters(src, out, info)
    return "hls/master.m3u8", "poster.jpg", info
