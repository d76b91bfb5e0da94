"""The packaging pipeline (real ffmpeg) and install: good packages in, bad ones refused with the reason."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from appliance.content.hls import parse_master, parse_media
from appliance.content.manifest import MANIFEST
from appliance.content.validate import check_package, file_sha256
from appliance.errors import PackageError
from media.cli import main as media_main

from .conftest import Env, copy_pkg, frames, needs_ffmpeg

pytestmark = needs_ffmpeg


def test_video_package_shape(video_pkg: Path, video_src: Path) -> None:
    pkg = check_package(video_pkg)
    m = pkg.manifest
    assert m.kind == "video" and m.poster == "poster.jpg" and m.licence == "CC-BY-3.0"
    assert (video_pkg / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    # responsive sizes for the catalog's srcset (issue 16), each the width and height it says
    assert [p.w for p in m.posters] == [320, 480, 640] and m.posters[-1].path == "poster.jpg"
    for p in m.posters:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height",
                              "-of", "csv=p=0", str(video_pkg / p.path)],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == f"{p.w},{p.h}", p
    sizes = [(video_pkg / p.path).stat().st_size for p in m.posters]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] / 2
    assert len(pkg.variants) >= 2
    assert all(v.bandwidth > 0 and v.codecs.startswith("avc1.") and "mp4a" in v.codecs
               for v in pkg.variants)
    heights = sorted(v.resolution[1] for v in pkg.variants)
    assert heights[0] < heights[-1]
    src_frames = frames(video_src)
    counts = {len(pl.segments) for _, pl in pkg.playlists}
    assert len(counts) == 1  # renditions cut on the same boundaries
    for uri, pl in pkg.playlists:
        durations = [d for _, d in pl.segments]
        assert all(4.0 <= d <= 6.0 for d in durations[:-1]) and 0 < durations[-1] <= 6.0
        first = video_pkg / pl.segments[0][0]
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "packet=flags", "-of", "csv=p=0", "-read_intervals", "%+#1",
                              str(first)], capture_output=True, text=True, check=True)
        assert out.stdout.strip().startswith("K"), uri  # each segment starts on a keyframe
        for seg, _ in pl.segments[1:]:
            out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0",
                                  "-show_entries", "packet=flags", "-of", "csv=p=0",
                                  "-read_intervals", "%+#1", str(video_pkg / seg)],
                                 capture_output=True, text=True, check=True)
            assert out.stdout.strip().startswith("K"), seg
    total = sum(frames(video_pkg / seg) for seg, _ in pkg.playlists[0][1].segments)
    assert total == src_frames


def test_book_package(book_pkg: Path) -> None:
    pkg = check_package(book_pkg)
    assert pkg.manifest.kind == "book" and pkg.manifest.entry == "book/index.html"
    toc = json.loads((book_pkg / "book" / "toc.json").read_text())
    assert [t["title"] for t in toc] == ["Preface", "Chapter 1", "Chapter 2"]
    assert "It ends." in (book_pkg / "book" / "ch003.html").read_text()


def _rewrite(pkg: Path, rel: str, data: bytes) -> None:
    """Change a file and its manifest entry, so only the content check can object."""
    (pkg / rel).write_bytes(data)
    man = json.loads((pkg / MANIFEST).read_text())
    man["files"][rel] = {"size": len(data), "sha256": file_sha256(pkg / rel)}
    (pkg / MANIFEST).write_text(json.dumps(man))


def _variant(pkg: Path) -> str:
    return parse_master((pkg / "hls/master.m3u8").read_text(), "hls/master.m3u8")[0].uri


def _break_codecs(p: Path) -> None:
    text = (p / "hls/master.m3u8").read_text()
    _rewrite(p, "hls/master.m3u8", text.replace(",CODECS=", ",XCODECS=").encode())


def _break_endlist(p: Path) -> None:
    v = _variant(p)
    _rewrite(p, v, (p / v).read_text().replace("#EXT-X-ENDLIST", "").encode())


def _long_segment(p: Path) -> None:
    v = _variant(p)
    _rewrite(p, v, (p / v).read_text().replace("#EXTINF:4.000000", "#EXTINF:9.5").encode())


def _missing_segment(p: Path) -> None:
    v = _variant(p)
    seg = parse_media((p / v).read_text(), v).segments[0][0]
    (p / seg).unlink()


def _segment_not_listed(p: Path) -> None:
    v = _variant(p)
    seg = parse_media((p / v).read_text(), v).segments[0][0]
    (p / seg).unlink()
    man = json.loads((p / MANIFEST).read_text())
    del man["files"][seg]
    (p / MANIFEST).write_text(json.dumps(man))


def _altered(p: Path) -> None:
    with open(p / "poster.jpg", "r+b") as f:
        f.write(b"XX")


def _extra_file(p: Path) -> None:
    (p / "hls" / "stray.ts").write_bytes(b"x")


def _symlink(p: Path) -> None:
    os.replace(p / "poster.jpg", p / "real.jpg")
    (p / "poster.jpg").symlink_to("/etc/passwd")


def _bad_json(p: Path) -> None:
    (p / MANIFEST).write_text("{not json")


def _traversal(p: Path) -> None:
    man = json.loads((p / MANIFEST).read_text())
    man["files"]["../evil.ts"] = {"size": 1, "sha256": "0" * 64}
    (p / MANIFEST).write_text(json.dumps(man))


def _no_variants(p: Path) -> None:
    _rewrite(p, "hls/master.m3u8", b"#EXTM3U\n#EXT-X-VERSION:6\n")


BAD = [
    (_break_codecs, "lacks CODECS"),
    (_break_endlist, "no #EXT-X-ENDLIST"),
    (_long_segment, "over the target"),
    (_missing_segment, "missing file"),
    (_segment_not_listed, "is missing from the package"),
    (_altered, "SHA-256"),
    (_extra_file, "not in the manifest"),
    (_symlink, "symbolic links"),
    (_bad_json, "invalid manifest"),
    (_traversal, "bad file path"),
    (_no_variants, "no #EXT-X-STREAM-INF"),
]


@pytest.mark.parametrize(("breaker", "reason"), BAD, ids=[b.__name__ for b, _ in BAD])
def test_install_refuses_bad_package(env: Env, video_pkg: Path, tmp_path: Path, breaker,  # type: ignore[no-untyped-def]
                                     reason: str) -> None:
    pkg = copy_pkg(video_pkg, tmp_path / "bad")
    breaker(pkg)
    with pytest.raises(PackageError, match=reason):
        asyncio.run(env.store.install(pkg))
    assert env.store.installed() == [] and env.store.generation() == 0
    assert list(env.store.packages.iterdir()) == [] and list(env.store.staging.iterdir()) == []


def test_media_check_cli_refuses_with_reason(video_pkg: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pkg = copy_pkg(video_pkg, tmp_path / "bad")
    _break_codecs(pkg)
    assert media_main(["check", str(pkg)]) == 1
    assert "lacks CODECS" in capsys.readouterr().err
    assert media_main(["check", str(video_pkg)]) == 0


def test_versions_are_directories_and_install_is_idempotent(env: Env, book_pkg: Path,
                                                            tmp_path: Path) -> None:
    r1 = env.install(book_pkg)
    assert not r1.already and env.store.generation() == 1
    assert r1.installed.path.name == f"book-{r1.installed.version[:16]}"
    again = env.install(book_pkg)
    assert again.already and env.store.generation() == 1
    dirs = []
    for i in range(3):  # each new version gets a new directory; the previous one is kept
        pkg = copy_pkg(book_pkg, tmp_path / f"v{i}")
        man = json.loads((pkg / MANIFEST).read_text())
        man["title"] = f"A Book, edition {i + 2}"
        (pkg / MANIFEST).write_text(json.dumps(man))
        dirs.append(env.install(pkg).installed.path.name)
    assert env.store.generation() == 4
    assert sorted(d.name for d in env.store.packages.iterdir()) == sorted(dirs[-2:])
    (inst,) = env.store.installed()
    assert inst.manifest.title == "A Book, edition 4"
    # a crash mid-copy leaves staging behind: the next start removes it
    (env.store.staging / "book.half").mkdir()
    assert env.store.prepare() == ["book.half"]


def test_content_cli_install(video_pkg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.cli import main

    cfg = tmp_path / "a.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    assert main(["content", "install", "--config", str(cfg), str(video_pkg)]) == 0
    assert "installed" in capsys.readouterr().out
    bad = copy_pkg(video_pkg, tmp_path / "bad")
    _missing_segment(bad)
    assert main(["content", "install", "--config", str(cfg), str(bad)]) == 1
    assert "missing file" in capsys.readouterr().err
    assert main(["content", "list", "--config", str(cfg)]) == 0
    assert "film" in capsys.readouterr().out
