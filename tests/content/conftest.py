"""Fixtures: real packages cut by ffmpeg, a store with them installed, the sendfile media server.

The video is the real Big Buck Bunny when the Makefile fetched it, else a synthetic clip.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance.content.catalog import Catalog
from appliance.content.media import MediaFiles
from appliance.content.mediaserver import MediaServer
from appliance.content.store import ContentStore
from appliance.content.usage import UsageJournal
from appliance.modes.policy import Mode, PolicyTable
from appliance.store.engine import make_engine
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from media.cli import main as media_main

REPO = Path(__file__).resolve().parents[2]
BBB = REPO / "var" / "cache" / "content" / "bigbuckbunny.mp4"
NOW = 1_720_249_163.0  # 2024-07-06T06:59:23Z, the recorded flight's take-off

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                  reason="ffmpeg not installed (Debian: apt-get install ffmpeg)")


def frames(path: Path | str) -> int:
    """Video packets in ``path`` (a file or URL), counted by ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=120)
    return int(out.stdout.split()[0].split(",")[0])


@pytest.fixture(scope="session")
def video_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (Debian: apt-get install ffmpeg)")
    if BBB.exists():
        return BBB
    out = tmp_path_factory.mktemp("src") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "9", "-c:v", "libx264",
                    "-preset", "veryfast", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def package(src: Path, out: Path, *args: str) -> Path:
    rc = media_main(["package", str(src), "--out", str(out), *args])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def video_pkg(video_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package(video_src, tmp_path_factory.mktemp("pkg") / "film", "--id", "film",
                   "--title", "The Film", "--licence", "CC-BY-3.0", "--attribution",
                   "Blender Foundation", "--rating", "G")


@pytest.fixture(scope="session")
def book_pkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("text") / "book.txt"
    src.write_text("A short preface.\n\nChapter 1\n\nIt begins.\n\nChapter 2\n\nIt ends.\n")
    return package(src, tmp_path_factory.mktemp("pkg") / "book", "--id", "book", "--title",
                   "A Book", "--licence", "Public domain")


def copy_pkg(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@dataclass
class Env:
    """A journal, a writer, the store, a catalog whose mode and UTC the test sets."""

    root: Path
    db: Path
    writer: Writer
    store: ContentStore
    mode: Mode = Mode.GROUND
    utc: float = NOW
    catalog: Catalog = field(init=False)
    usage: UsageJournal = field(init=False)
    files: MediaFiles = field(init=False)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.store, PolicyTable.default(), lambda: self.mode, lambda: self.utc)
        self.usage = UsageJournal(self.writer, "F-TEST", lambda: (self.utc, "avionics"), idle_s=0.0)
        self.files = MediaFiles(self.catalog, self.usage)

    def install(self, pkg: Path) -> Any:
        res = asyncio.run(self.store.install(pkg))
        self.refresh()
        return res

    def refresh(self) -> None:
        changed = self.catalog.read()
        if changed is not None:
            self.catalog.load(*changed)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    db = tmp_path / "journal.db"
    upgrade(make_engine(db), db)
    writer = Writer(make_engine(db))
    writer.start()
    store = ContentStore(tmp_path / "content", writer, make_engine(db, readonly=True))
    store.prepare()
    e = Env(tmp_path, db, writer, store)
    yield e
    e.catalog.close()
    writer.stop()


class ServerThread:
    """The media server on its own event loop in a thread (as in the service, one loop)."""

    def __init__(self, files: MediaFiles, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = MediaServer(files, "127.0.0.1", 0, **kw)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop (catalog changes) and wait."""
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served(env: Env, video_pkg: Path, book_pkg: Path) -> Iterator[tuple[Env, ServerThread]]:
    env.install(video_pkg)
    env.install(book_pkg)
    srv = ServerThread(env.files)
    yield env, srv
    srv.close()
