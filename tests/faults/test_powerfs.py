"""Tests of powerfs, the power-cut FUSE filesystem (tests/faults/powerfs/).

(a) it passes file operations through; (b) a cut keeps fsynced data and names made
durable by a directory fsync, and may drop the rest; (c) the key proof: plain SQLite
in WAL mode loses no acknowledged commit across ~20 cuts with ``synchronous=FULL``,
and does lose some with ``synchronous=NORMAL`` (so the harness can fail).

Skipped when /dev/fuse, fusermount3 or pyfuse3/trio are unavailable; install steps are
in tests/faults/powerfs/README.md.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .powerfs import REPO_ROOT, PowerFS, fuse_unavailable
from .powerfs.cut import CutReport, choose_ops, power_cut
from .powerfs.sqlite_probe import create_db, ids_in_db
from .powerfs.state import SECTOR, Op, encode_truncate, encode_write, parse_log

_SKIP_REASON = fuse_unavailable()
needs_fuse = pytest.mark.skipif(_SKIP_REASON is not None, reason=_SKIP_REASON or "")


@pytest.fixture
def powerfs(tmp_path: Path) -> Iterator[PowerFS]:
    """A mounted powerfs over an empty backing dir; checks the FS logged no internal error."""
    fs = PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "state")
    with fs:
        yield fs
    assert "internal error" not in fs.log_text(), fs.log_text()[-3000:]


def _fsync_path(path: Path | str) -> None:
    """Call fsync on a file or directory, by path."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, offset: int = 0, *, sync: bool = False, create: bool = False) -> None:
    """Write ``data`` at byte ``offset`` of ``path``, optionally creating it and fsyncing."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for a directory) of everything under ``root``."""
    out: dict[str, bytes | None] = {}
    for top, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(top, d), root)] = None
        for f in files:
            out[os.path.relpath(os.path.join(top, f), root)] = Path(top, f).read_bytes()
    return out


def _offline_cuts(
    fs: PowerFS, tmp_path: Path, seeds: range
) -> list[tuple[dict[str, bytes | None], CutReport]]:
    """Power off ``fs``, then apply one cut per seed to a copy of its backing and state dirs.

    Valid only when every file was created after mount (copies get new inode numbers).
    """
    fs.power_off()
    outcomes = []
    for seed in seeds:
        backing = tmp_path / f"cut{seed}" / "backing"
        state = tmp_path / f"cut{seed}" / "state"
        shutil.copytree(fs.backing_dir, backing)
        shutil.copytree(fs.state_dir, state)
        report = power_cut(backing, state, random.Random(seed))
        outcomes.append((_tree(backing), report))
    return outcomes


# ------------------------------------------------------------ the cut alone
def test_log_ignores_incomplete_trailing_record() -> None:
    """A log cut short by a kill of the filesystem keeps only its complete records."""
    blob = encode_write(0, b"abc") + encode_truncate(2) + encode_write(4096, b"x" * 100)
    assert parse_log(blob) == [Op("write", 0, b"abc"), Op("truncate", 2), Op("write", 4096, b"x" * 100)]
    for cut_at in range(len(blob) - 116, len(blob)):
        assert parse_log(blob[:cut_at]) == [Op("write", 0, b"abc"), Op("truncate", 2)]


def test_choose_ops_keeps_a_subsequence_and_tears_at_sector_boundaries() -> None:
    """Kept operations stay in order; a torn write is split at a 512-byte boundary."""
    ops = [Op("write", 100 * i, bytes([i]) * 3000) for i in range(10)] + [Op("truncate", 5000)]
    seen_torn = seen_none = seen_all = False
    for seed in range(300):
        kept, torn = choose_ops(ops, random.Random(seed))
        seen_none |= not kept
        seen_all |= kept == ops
        seen_torn |= torn
        pos = 0
        for op in kept:
            match = next(
                i for i in range(pos, len(ops)) if ops[i].kind == op.kind and ops[i].data[:1] == op.data[:1]
            )
            original = ops[match]
            if op != original:
                assert torn and op.kind == "write" and op.data and len(op.data) < len(original.data)
                assert op.offset % SECTOR == 0 or op.end % SECTOR == 0
                assert original.offset <= op.offset and op.end <= original.end
            pos = match + 1
    assert seen_none and seen_all and seen_torn


# --------------------------------------------------------------------------- (a)
@needs_fuse
def test_passthrough_file_and_directory_operations(powerfs: PowerFS) -> None:
    """Reads, writes, truncates, renames, unlinks and directories behave as on a disk."""
    mnt = powerfs.mountpoint
    a = mnt / "a.txt"
    a.write_bytes(b"hello world")
    assert a.read_bytes() == b"hello world"
    _write(a, b"HELLO", 0)
    with open(a, "ab") as f:
        f.write(b"!")
    assert a.read_bytes() == b"HELLO world!"
    os.truncate(a, 5)
    assert a.stat().st_size == 5 and a.read_bytes() == b"HELLO"
    _write(a, b"x", 10)  # a hole reads as zeros
    assert a.read_bytes() == b"HELLO" + b"\0" * 5 + b"x"

    (mnt / "d" / "e").mkdir(parents=True)
    os.rename(a, mnt / "d" / "e" / "b.txt")
    assert not a.exists() and (mnt / "d" / "e" / "b.txt").read_bytes().startswith(b"HELLO")
    (mnt / "c.txt").write_bytes(b"replaced")
    os.replace(mnt / "d" / "e" / "b.txt", mnt / "c.txt")
    assert (mnt / "c.txt").read_bytes().startswith(b"HELLO")
    assert sorted(os.listdir(mnt)) == ["c.txt", "d"]
    with pytest.raises(OSError) as err:
        os.rmdir(mnt / "d")
    assert err.value.errno == errno.ENOTEMPTY
    os.rmdir(mnt / "d" / "e")
    os.rmdir(mnt / "d")
    with pytest.raises(FileExistsError):
        os.open(mnt / "c.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with pytest.raises(PermissionError):
        os.link(mnt / "c.txt", mnt / "hard")

    # An unlinked file stays usable through an open descriptor.
    fd = os.open(mnt / "c.txt", os.O_RDWR)
    try:
        os.unlink(mnt / "c.txt")
        os.pwrite(fd, b"Z", 0)
        assert os.pread(fd, 5, 0) == b"ZELLO"
    finally:
        os.close(fd)
    assert os.listdir(mnt) == []
    assert os.statvfs(mnt).f_bsize > 0

    # Everything went through to the backing dir.
    (mnt / "f").write_bytes(b"through")
    assert (powerfs.backing_dir / "f").read_bytes() == b"through"


@needs_fuse
def test_passthrough_runs_sqlite_wal(powerfs: PowerFS) -> None:
    """SQLite in WAL mode (with its -wal and -shm files) works on the mount."""
    db = str(powerfs.mountpoint / "t.db")
    create_db(db)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for i in range(200):
            con.execute("INSERT INTO journal VALUES (?, ?)", (i, b"x" * 100))
        assert {"t.db-wal", "t.db-shm"} <= set(os.listdir(powerfs.mountpoint))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    ids, integrity = ids_in_db(db)
    assert integrity == "ok" and ids == set(range(200))


# --------------------------------------------------------------------------- (b)
@needs_fuse
def test_cut_keeps_fsynced_data_and_may_drop_unsynced(powerfs: PowerFS, tmp_path: Path) -> None:
    """Synced bytes always survive; later writes survive as a random, possibly torn, subset."""
    mnt = powerfs.mountpoint
    synced = b"A" * 4096
    _write(mnt / "data", synced, create=True, sync=True)
    _fsync_path(mnt)  # makes the name "data" durable
    for i in range(4):  # 8 KiB of unsynced appends, as 4 writes
        _write(mnt / "data", bytes([ord("B") + i]) * 2048, 4096 + 2048 * i)
    _write(mnt / "late", b"L" * 100, create=True, sync=True)  # data synced, name never

    outcomes = _offline_cuts(powerfs, tmp_path, range(40))
    sizes = set()
    torn = 0
    for tree, report in outcomes:
        assert "late" not in tree
        data = tree["data"]
        assert data is not None and data[:4096] == synced
        tail = data[4096:]
        assert len(tail) % SECTOR == 0
        for off in range(0, len(tail), SECTOR):
            sector = tail[off : off + SECTOR]
            assert sector in (bytes([ord("B") + off // 2048]) * SECTOR, b"\0" * SECTOR)
        sizes.add(len(data))
        torn += report.torn
    assert 4096 in sizes, "some cut should drop every unsynced write"
    assert 4096 + 8192 in sizes, "some cut should keep the last unsynced write"
    assert len(sizes) > 2 and torn > 0


@needs_fuse
def test_cut_is_sector_atomic_on_overwrite(powerfs: PowerFS, tmp_path: Path) -> None:
    """An unsynced overwrite of synced data leaves each 512-byte sector old or new."""
    mnt = powerfs.mountpoint
    _write(mnt / "f", b"o" * 8192, create=True, sync=True)
    _fsync_path(mnt)
    _write(mnt / "f", b"n" * 8192)
    kinds = set()
    for tree, _ in _offline_cuts(powerfs, tmp_path, range(40)):
        data = tree["f"]
        assert data is not None and len(data) == 8192
        sectors = {data[i : i + SECTOR] for i in range(0, 8192, SECTOR)}
        assert sectors <= {b"o" * SECTOR, b"n" * SECTOR}
        kinds.add("old" if sectors == {b"o" * SECTOR} else "new" if sectors == {b"n" * SECTOR} else "torn")
    assert kinds == {"old", "new", "torn"}


@needs_fuse
def test_cut_names_follow_directory_fsync(tmp_path: Path) -> None:
    """Create/rename/unlink count only once the directory is fsynced (strict model)."""
    backing = tmp_path / "backing"
    (backing / "sub").mkdir(parents=True)
    (backing / "keep.txt").write_bytes(b"K" * 1000)
    (backing / "gone.txt").write_bytes(b"G" * 3000)
    (backing / "moved.txt").write_bytes(b"M" * 2000)
    (backing / "sub" / "config.json").write_bytes(b'{"v": 1}')
    fs = PowerFS(backing, tmp_path / "mnt", tmp_path / "state")
    with fs:
        mnt = fs.mountpoint
        os.unlink(mnt / "gone.txt")
        os.rename(mnt / "moved.txt", mnt / "moved2.txt")
        _write(mnt / "new.txt", b"N" * 100, create=True, sync=True)
        (mnt / "newdir").mkdir()
        # The safe replace pattern: temp file, fsync, rename, fsync the directory.
        _write(mnt / "sub" / "config.json.tmp", b'{"v": 2}', create=True, sync=True)
        os.rename(mnt / "sub" / "config.json.tmp", mnt / "sub" / "config.json")
        _fsync_path(mnt / "sub")
        # A new directory survives with its parent fsynced, its entries with itself fsynced.
        (mnt / "sub" / "deep").mkdir()
        _write(mnt / "sub" / "deep" / "x", b"X", create=True, sync=True)
        _fsync_path(mnt / "sub" / "deep")
        _fsync_path(mnt / "sub")

        report = fs.cut(random.Random(7))

        assert _tree(mnt) == {
            "keep.txt": b"K" * 1000,
            "gone.txt": b"G" * 3000,
            "moved.txt": b"M" * 2000,
            "sub": None,
            "sub/config.json": b'{"v": 2}',
            "sub/deep": None,
            "sub/deep/x": b"X",
        }
        assert report.restored == ["gone.txt", "moved.txt"]
        assert report.removed == ["moved2.txt", "new.txt", "newdir"]
        # After the cut the new session treats everything as durable again.
        os.unlink(mnt / "keep.txt")
        _fsync_path(mnt)
        fs.cut(random.Random(8))
        assert not (mnt / "keep.txt").exists() and (mnt / "gone.txt").read_bytes() == b"G" * 3000
    assert "internal error" not in fs.log_text()


@needs_fuse
def test_cut_restores_unlinked_file_with_its_synced_data(powerfs: PowerFS, tmp_path: Path) -> None:
    """An unlink not made durable is undone, keeping data fsynced even after the unlink."""
    mnt = powerfs.mountpoint
    _write(mnt / "f", b"1" * 512, create=True, sync=True)
    _fsync_path(mnt)
    fd = os.open(mnt / "f", os.O_RDWR)
    try:
        os.unlink(mnt / "f")
        os.pwrite(fd, b"2" * 512, 512)
        os.fsync(fd)
    finally:
        os.close(fd)
    for tree, _ in _offline_cuts(powerfs, tmp_path, range(5)):
        assert tree == {"f": b"1" * 512 + b"2" * 512}


# --------------------------------------------------------------------------- (c)
@dataclass
class LoopResult:
    """Outcome of :func:`_sqlite_cut_loop`."""

    cuts: int = 0
    acked: int = 0
    lost: set[int] = field(default_factory=set)
    ops_dropped: int = 0
    torn: int = 0
    seconds: float = 0.0


def _run_probe_until_cut(
    fs: PowerFS, db: str, synchronous: str, first_id: int, rng: random.Random, err: Path
) -> list[int]:
    """Start the SQLite probe, cut the power after a random delay, return the acknowledged ids."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    cmd = [sys.executable, "-m", "tests.faults.powerfs.sqlite_probe", db, "--synchronous", synchronous]
    cmd += ["--first-id", str(first_id)]
    acked: list[int] = []
    ready = threading.Event()
    with open(err, "ab") as err_file:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=err_file)
    assert proc.stdout is not None
    stdout = proc.stdout

    def read() -> None:
        for line in stdout:
            if line == b"ready\n":
                ready.set()
            elif line.endswith(b"\n"):
                acked.append(int(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(15):
            pytest.fail(f"sqlite probe not ready: {err.read_text(errors='replace')[-2000:]}")
        time.sleep(rng.uniform(0.02, 0.35))
        fs.power_off()  # the storage dies first: whatever was acknowledged by now reached it
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        stdout.close()
    return acked


def _sqlite_cut_loop(
    fs: PowerFS, synchronous: str, cuts: int, seed: int, *, stop_on_loss: bool
) -> LoopResult:
    """Insert-and-cut rounds; after each cut check integrity and count missing acknowledged ids."""
    rng = random.Random(seed)
    db = str(fs.mountpoint / "journal.db")
    create_db(db)
    result = LoopResult()
    acked_all: set[int] = set()
    start = time.monotonic()
    for n in range(1, cuts + 1):
        acked_all.update(
            _run_probe_until_cut(fs, db, synchronous, n * 10_000_000, rng, fs.state_dir / "probe.err")
        )
        report = fs.cut(rng)
        result.cuts += 1
        result.ops_dropped += report.ops_logged - report.ops_kept
        result.torn += report.torn
        ids, integrity = ids_in_db(db)
        assert integrity == "ok", f"cut {n}: {integrity}"
        result.lost |= acked_all - ids
        if stop_on_loss and result.lost:
            break
    result.acked = len(acked_all)
    result.seconds = time.monotonic() - start
    return result


@needs_fuse
def test_sqlite_wal_full_loses_no_acknowledged_commit(powerfs: PowerFS) -> None:
    """THE proof: WAL + synchronous=FULL keeps every acknowledged row across 20 cuts."""
    r = _sqlite_cut_loop(powerfs, "FULL", cuts=20, seed=20240706, stop_on_loss=False)
    print(
        f"\nWAL+FULL: {r.cuts} cuts, {r.acked} acknowledged, {len(r.lost)} lost, "
        f"{r.ops_dropped} unsynced ops dropped, {r.torn} torn writes, {r.seconds:.1f} s"
    )
    assert r.acked >= 20 * r.cuts, "too few commits between cuts to prove anything"
    assert not r.lost, f"acknowledged rows lost: {sorted(r.lost)[:20]}"


@needs_fuse
def test_sqlite_wal_normal_loses_acknowledged_commits(powerfs: PowerFS) -> None:
    """The harness can fail: WAL + synchronous=NORMAL acknowledges rows a cut then loses."""
    r = _sqlite_cut_loop(powerfs, "NORMAL", cuts=12, seed=20240707, stop_on_loss=True)
    print(
        f"\nWAL+NORMAL: {r.cuts} cuts, {r.acked} acknowledged, {len(r.lost)} lost, "
        f"{r.ops_dropped} unsynced ops dropped, {r.torn} torn writes, {r.seconds:.1f} s"
    )
    assert r.lost, "synchronous=NORMAL should lose acknowledged rows on a power cut"
