"""Debian's ffmpeg as an HLS client (``-xerror``) pulls the master playlist from the sendfile server.

The frames it gets equal the packaged source's. A missing segment is noticed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import Env, ServerThread, frames, needs_ffmpeg

pytestmark = needs_ffmpeg


def pull(url: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-y", "-i", url, "-c", "copy",
                           str(out)], capture_output=True, text=True, timeout=120, check=False)


def test_ffmpeg_pulls_every_frame(served: tuple[Env, ServerThread], video_src: Path,
                                  tmp_path: Path) -> None:
    env, srv = served
    url = srv.base + env.catalog.titles["film"].url("hls/master.m3u8")
    res = pull(url, tmp_path / "out.ts")
    assert res.returncode == 0, res.stderr
    assert frames(tmp_path / "out.ts") == frames(video_src)
    assert srv.server.stats.send_errors == 0 and srv.server.stats.bytes_sent > 0


def test_ffmpeg_sees_a_missing_segment(served: tuple[Env, ServerThread], video_src: Path,
                                       tmp_path: Path) -> None:
    env, srv = served
    t = env.catalog.titles["film"]
    for rel in t.manifest.files:
        if rel.endswith("seg_00000.ts"):
            (t.path / rel).unlink()  # the package is now corrupt on disk (every rendition)
    res = pull(srv.base + t.url("hls/master.m3u8"), tmp_path / "out.ts")
    # ffmpeg exits non-zero, or (a missing segment it skips) delivers fewer frames
    assert res.returncode != 0 or frames(tmp_path / "out.ts") < frames(video_src)
    assert srv.server.stats.open >= 0 and env.files.stats.corrupt > 0
