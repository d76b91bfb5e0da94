"""Captions, subtitles, audio languages and audio description as HLS renditions (issue 19).

A real ``media package`` run (ffmpeg) makes the ``tracked_film`` fixture; these tests check the
master's ``EXT-X-MEDIA`` renditions as RFC 8216 and Apple's accessibility characteristics want
them, that ffmpeg itself reads the master and pulls every audio rendition without an error
(``-xerror``), that the package installs, and that bad track specifications are refused.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from appliance.content.hls import parse_master, parse_renditions
from appliance.content.validate import check_package
from appliance.errors import PackageError
from media.tracks import CC_CHARACTERISTICS, parse_track


def test_master_has_every_rendition_with_language_name_and_characteristics(tracked_film: Path) -> None:
    text = (tracked_film / "hls/master.m3u8").read_text()
    r = {(x.type, x.name): x for x in parse_renditions(text, "hls/master.m3u8")}
    assert set(r) == {("AUDIO", "English"), ("AUDIO", "Français"), ("AUDIO", "English (AD)"),
                      ("SUBTITLES", "English"), ("SUBTITLES", "Français"),
                      ("SUBTITLES", "English (CC)")}
    assert r["AUDIO", "English"].default and not r["AUDIO", "Français"].default
    ad = r["AUDIO", "English (AD)"]
    assert ad.characteristics == ("public.accessibility.describes-video",)
    assert not ad.default and not ad.autoselect and ad.language == "en"
    cc = r["SUBTITLES", "English (CC)"]
    assert cc.characteristics == tuple(CC_CHARACTERISTICS.split(","))
    assert r["SUBTITLES", "Français"].language == "fr"
    for v in parse_master(text, "hls/master.m3u8"):
        assert "mp4a.40.2" in v.codecs
    assert text.count('AUDIO="aud",SUBTITLES="subs"') == len(parse_master(text, "x"))
    # the subtitle converted from SubRip is WebVTT with its cue
    fr = (tracked_film / "hls/s-fr/captions.vtt").read_text()
    assert fr.startswith("WEBVTT") and "Un gros lapin" in fr


def test_ffmpeg_reads_the_master_and_every_audio_rendition(tracked_film: Path) -> None:
    probe = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
                            str(tracked_film / "hls/master.m3u8")],
                           capture_output=True, text=True, check=True)
    kinds = [s["codec_type"] for s in json.loads(probe.stdout)["streams"]]
    assert kinds.count("video") >= 2 and kinds.count("audio") >= 3
    for d in ("a-en", "a-fr", "ad-en"):
        res = subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i",
                              str(tracked_film / "hls" / d / "index.m3u8"), "-f", "null", "-"],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, (d, res.stderr)
    checked = check_package(tracked_film)
    uris = {u for u, _ in checked.playlists}
    assert {"hls/a-fr/index.m3u8", "hls/cc-en/index.m3u8", "hls/ad-en/index.m3u8"} <= uris


def test_a_missing_rendition_playlist_or_group_is_refused(tracked_film: Path, tmp_path: Path) -> None:
    text = (tracked_film / "hls/master.m3u8").read_text()
    with pytest.raises(PackageError, match="SUBTITLES group 'subs' is not defined"):
        parse_renditions("\n".join(ln for ln in text.splitlines()
                                   if "TYPE=SUBTITLES" not in ln), "m")
    with pytest.raises(PackageError, match="lacks URI"):
        parse_renditions(text.replace(',URI="a-fr/index.m3u8"', ""), "m")
    with pytest.raises(PackageError, match="two DEFAULT=YES"):
        parse_renditions(text.replace('NAME="Français",DEFAULT=NO', 'NAME="Français",DEFAULT=YES'), "m")


@pytest.mark.parametrize("kind,spec,message", [
    ("subtitles", "english=x.vtt", "is not LANG=FILE"),
    ("subtitles", "en", "is not LANG=FILE"),
    ("subtitles", "en={missing}", "does not exist"),
    ("captions", "en={txt}", "is not WebVTT"),
    ("audio", "fr={txt}#x", "must be a number"),
])
def test_bad_track_specifications_are_refused(tmp_path: Path, kind: str, spec: str,
                                              message: str) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match=message):
        parse_track(kind, spec.format(missing=tmp_path / "nope.vtt", txt=txt))  # type: ignore[arg-type]
