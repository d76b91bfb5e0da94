"""Turn BACKING_DIR into what a power cut would have left, from powerfs's STATE_DIR.

Run only after the powerfs process is dead (SIGKILL by its PID) and its mount is
detached (``fusermount3 -u -z MOUNTPOINT``): the filesystem must not change
BACKING_DIR or STATE_DIR meanwhile.

    python -m tests.faults.powerfs.cut BACKING_DIR STATE_DIR [--seed N]

What survives (see :mod:`tests.faults.powerfs.powerfs` for the full model):

- The tree is rebuilt from the durable directory listings, starting at the root:
  entries created, renamed or unlinked after their directory's last fsync are
  undone; a directory reachable twice (cross-directory rename half made durable)
  is kept at its first place only, a file reachable twice becomes two copies.
- Each regular file is its durable image plus a random subset of its unsynced
  operations (writes, truncates) applied in their original order. Per file, the
  survival chance of an operation is drawn first: 20 % of files lose all of them,
  20 % keep all, the rest keep each one with a probability drawn uniformly from
  [0, 1). Then, with probability 1/2, one kept write that spans a 512-byte
  boundary is torn there: only the part before, or only the part after, the
  boundary lands. A file never changed since mount is its untouched backing file.
- Permission bits and owner come from the state; timestamps are those of the cut.

STATE_DIR is emptied afterwards (the next mount starts a new session), so a cut
cannot be applied twice by mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .state import (
    ROOT_ID,
    SECTOR,
    DurableState,
    NodeInfo,
    Op,
    StateError,
    apply_op,
    image_path,
    log_path,
    read_log,
    reset_state_dir,
)

STAGING_PREFIX = ".powerfs-cut-"
"""Name prefix of the temporary directory the cut builds files in (inside BACKING_DIR)."""


@dataclass
class CutReport:
    """What one power cut did.

    Attributes:
        files: regular files in the surviving tree.
        dirs: directories in the surviving tree, not counting BACKING_DIR itself.
        ops_logged: unsynced operations (writes and truncates) of the surviving files.
        ops_kept: how many of those were applied (torn ones included).
        torn: writes applied only partly (cut at a 512-byte boundary).
        removed: paths (relative, ``/``-separated) present before the cut and gone after.
        restored: paths absent before the cut and present after (undone unlink/rename).
    """

    files: int = 0
    dirs: int = 0
    ops_logged: int = 0
    ops_kept: int = 0
    torn: int = 0
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """Return the report as one line of JSON."""
        return json.dumps(asdict(self), sort_keys=True)


def choose_ops(ops: Sequence[Op], rng: random.Random) -> tuple[list[Op], bool]:
    """Pick the unsynced operations of one file that reach the disk.

    Args:
        ops: the file's unsynced operations, oldest first.
        rng: source of randomness (the only one used, so a seed replays a cut).

    Returns:
        ``(kept, torn)``: the surviving operations in their original order, one
        write possibly replaced by its part before or after a 512-byte boundary,
        and whether such a tear happened.
    """
    if not ops:
        return [], False
    mode = rng.random()
    if mode < 0.2:
        return [], False
    if mode < 0.4:
        kept = list(ops)
    else:
        p = rng.random()
        kept = [op for op in ops if rng.random() < p]
    if not kept or rng.random() >= 0.5:
        return kept, False
    tearable = [i for i, op in enumerate(kept) if op.kind == "write" and _boundary_count(op) > 0]
    if not tearable:
        return kept, False
    i = rng.choice(tearable)
    op = kept[i]
    boundary = (op.offset // SECTOR + 1 + rng.randrange(_boundary_count(op))) * SECTOR
    split = boundary - op.offset
    if rng.random() < 0.5:
        kept[i] = Op("write", op.offset, op.data[:split])
    else:
        kept[i] = Op("write", boundary, op.data[split:])
    return kept, True


def _boundary_count(op: Op) -> int:
    """Number of 512-byte boundaries strictly inside the byte range of a write."""
    if not op.data:
        return 0
    return (op.end - 1) // SECTOR - op.offset // SECTOR


def _live_inventory(backing: bytes) -> tuple[dict[int, bytes], set[bytes]]:
    """Map inode number -> relative path of every regular file; set of all relative paths."""
    by_ino: dict[int, bytes] = {}
    paths: set[bytes] = set()
    staging_prefix = os.fsencode(STAGING_PREFIX)
    for top, dirs, files in os.walk(backing):
        rel_top = os.path.relpath(top, backing)
        if top == backing:
            dirs[:] = [d for d in dirs if not d.startswith(staging_prefix)]
        for name in dirs:
            paths.add(os.path.normpath(os.path.join(rel_top, name)))
        for name in files:
            rel = os.path.normpath(os.path.join(rel_top, name))
            paths.add(rel)
            st = os.lstat(os.path.join(top, name))
            if stat.S_ISREG(st.st_mode):
                by_ino[st.st_ino] = rel
    return by_ino, paths


def _durable_tree(state: DurableState) -> list[tuple[bytes, int, NodeInfo]]:
    """Walk the durable listings from the root: ``(relative path, node id, facts)``, parents first."""
    out: list[tuple[bytes, int, NodeInfo]] = []
    seen_dirs = {ROOT_ID}

    def walk(dir_id: int, rel: bytes) -> None:
        for name, child in sorted(state.durable.get(dir_id, {}).items()):
            info = state.nodes.get(child)
            if info is None:
                raise StateError(f"durable listing of node {dir_id} names unknown node {child}")
            path = os.path.join(rel, name) if rel else name
            if info.kind == "dir":
                if child in seen_dirs:
                    continue
                seen_dirs.add(child)
                out.append((path, child, info))
                walk(child, path)
            else:
                out.append((path, child, info))

    walk(ROOT_ID, b"")
    return out


def _set_owner_mode(path: bytes, info: NodeInfo) -> None:
    if os.geteuid() == 0:
        os.lchown(path, info.uid, info.gid)
    os.chmod(path, info.mode)


def _stage_file(
    node_id: int,
    info: NodeInfo,
    target: bytes,
    backing: bytes,
    state_dir: Path,
    by_ino: dict[int, bytes],
    rng: random.Random,
    report: CutReport,
) -> None:
    """Write the surviving content of file ``node_id`` to ``target``."""
    image = image_path(state_dir, node_id)
    if image.exists():
        shutil.copyfile(image, os.fsdecode(target))
        ops = read_log(log_path(state_dir, node_id))
        kept, torn = choose_ops(ops, rng)
        fd = os.open(target, os.O_RDWR)
        try:
            for op in kept:
                apply_op(fd, op)
        finally:
            os.close(fd)
        report.ops_logged += len(ops)
        report.ops_kept += len(kept)
        report.torn += int(torn)
    else:
        rel = by_ino.get(info.ino) if info.ino is not None else None
        if rel is None:
            raise StateError(f"file node {node_id} has no durable image and its backing file is gone")
        os.rename(os.path.join(backing, rel), target)


def power_cut(
    backing_dir: str | os.PathLike[str], state_dir: str | os.PathLike[str], rng: random.Random
) -> CutReport:
    """Rewrite ``backing_dir`` to a state that could survive a power cut.

    Preconditions: the powerfs process that used these directories is dead and
    its mount detached; nothing else writes ``backing_dir`` meanwhile.

    Args:
        backing_dir: the BACKING_DIR powerfs served.
        state_dir: the STATE_DIR of that powerfs session.
        rng: decides which unsynced operations survive and which write is torn.

    Returns:
        A summary of the cut.

    Raises:
        StateError: the state is missing (never mounted, or already cut) or does not
            match the backing dir.
        OSError: the directories cannot be read or written.
    """
    backing = os.fsencode(os.path.realpath(backing_dir))
    state_path = Path(state_dir)
    state = DurableState.load(state_path)
    by_ino, live_paths = _live_inventory(backing)
    tree = _durable_tree(state)
    report = CutReport()

    staging = os.path.join(backing, os.fsencode(STAGING_PREFIX + os.urandom(6).hex()))
    os.mkdir(staging, 0o700)
    staged: dict[int, bytes] = {}
    for _, node_id, info in tree:
        if info.kind == "file" and node_id not in staged:
            target = os.path.join(staging, str(node_id).encode())
            _stage_file(node_id, info, target, backing, state_path, by_ino, rng, report)
            staged[node_id] = target

    with os.scandir(backing) as it:
        for entry in it:
            if entry.path == staging:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)

    placed: dict[int, bytes] = {}
    for rel, node_id, info in tree:
        path = os.path.join(backing, rel)
        if info.kind == "dir":
            os.mkdir(path, 0o700)
            report.dirs += 1
        elif node_id in placed:
            shutil.copyfile(placed[node_id], path)
            report.files += 1
        else:
            os.rename(staged[node_id], path)
            placed[node_id] = path
            report.files += 1
        _set_owner_mode(path, info)
    os.rmdir(staging)
    reset_state_dir(state_path)

    durable_paths = {os.path.normpath(rel) for rel, _, _ in tree}
    report.removed = sorted(os.fsdecode(p) for p in live_paths - durable_paths)
    report.restored = sorted(os.fsdecode(p) for p in durable_paths - live_paths)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: cut power on BACKING_DIR using STATE_DIR, print the report as JSON.

    Returns:
        0 on success, 1 if the state is missing or inconsistent.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.powerfs.cut", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("backing_dir", type=Path)
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--seed", type=int, default=None, help="seed of the random choices (default: random)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    try:
        report = power_cut(args.backing_dir, args.state_dir, random.Random(seed))
    except StateError as exc:
        print(f"cut: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"seed": seed, **asdict(report)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
