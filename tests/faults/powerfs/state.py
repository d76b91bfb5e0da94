"""On-disk layout of a powerfs STATE_DIR, shared by the filesystem and the cut tool.

The filesystem process (:mod:`tests.faults.powerfs.powerfs`) writes this state while it
runs; the cut tool (:mod:`tests.faults.powerfs.cut`) reads it after that process has
been killed. Everything here must therefore stay readable after a SIGKILL of the
writer at any instruction.

Layout of ``STATE_DIR``::

    state.json        durable directory listings and node facts (atomically replaced)
    images/<id>       durable image of regular file node <id> (bytes a power cut keeps)
    logs/<id>         unsynced operations on node <id> since its last fsync
    powerfs.log       free-form log of the filesystem process (not touched here)

Node ids are small integers assigned per mount session; id 1 is the root directory
(the same number as ``pyfuse3.ROOT_INODE``). They double as FUSE inode numbers.

Log record format (little endian): a 17-byte header ``kind: 1 byte, a: u64, b: u64``
followed by ``b`` data bytes for writes.

- ``kind == b"W"``: write ``b`` bytes of data at byte offset ``a``.
- ``kind == b"T"``: truncate (or extend with zeros) the file to ``a`` bytes; ``b == 0``.

A record cut short at the end of the file (the writer was killed mid-append) is
ignored: the operation it describes was never acknowledged to the application.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

STATE_FILE = "state.json"
IMAGES_DIR = "images"
LOGS_DIR = "logs"
LOG_FILE = "powerfs.log"
ROOT_ID = 1
FORMAT_VERSION = 1
SECTOR = 512
"""Size in bytes of the unit a torn write is cut at."""

_HEADER = struct.Struct("<cQQ")
_WRITE = b"W"
_TRUNCATE = b"T"

NodeKind = Literal["file", "dir"]


class StateError(RuntimeError):
    """The state directory is missing, corrupt, or inconsistent with the backing dir."""


@dataclass(frozen=True)
class Op:
    """One unsynced operation on a regular file.

    Attributes:
        kind: ``"write"`` or ``"truncate"``.
        offset: byte offset of a write, or the new size in bytes for a truncate.
        data: the bytes written (empty for a truncate).
    """

    kind: Literal["write", "truncate"]
    offset: int
    data: bytes = b""

    @property
    def end(self) -> int:
        """Byte offset just past the write (the new size for a truncate)."""
        return self.offset + len(self.data)


def encode_write(offset: int, data: bytes) -> bytes:
    """Return the log record for writing ``data`` at byte ``offset``."""
    return _HEADER.pack(_WRITE, offset, len(data)) + data


def encode_truncate(size: int) -> bytes:
    """Return the log record for truncating (or extending) a file to ``size`` bytes."""
    return _HEADER.pack(_TRUNCATE, size, 0)


def parse_log(blob: bytes) -> list[Op]:
    """Decode a whole log file into operations, in the order they happened.

    Args:
        blob: the log file's content.

    Returns:
        The complete records; an incomplete trailing record is dropped.

    Raises:
        StateError: a record has an unknown kind (the log is corrupt).
    """
    ops: list[Op] = []
    pos = 0
    size = _HEADER.size
    while pos + size <= len(blob):
        kind, a, b = _HEADER.unpack_from(blob, pos)
        pos += size
        if kind == _WRITE:
            if pos + b > len(blob):
                break
            ops.append(Op("write", a, bytes(blob[pos : pos + b])))
            pos += b
        elif kind == _TRUNCATE:
            ops.append(Op("truncate", a))
        else:
            raise StateError(f"corrupt log record kind {kind!r} at byte {pos - size}")
    return ops


def read_log(path: Path) -> list[Op]:
    """Read and decode the log file at ``path``; a missing file means no operations."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return []
    return parse_log(blob)


def pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at byte ``offset`` of ``fd``, retrying short writes.

    Raises:
        OSError: from ``os.pwrite``.
    """
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` at the current position of ``fd`` (or its end with O_APPEND).

    Raises:
        OSError: from ``os.write``.
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def apply_op(fd: int, op: Op) -> None:
    """Apply one operation to the file open (writable) as ``fd``, in place.

    Raises:
        OSError: from ``os.pwrite`` / ``os.ftruncate``.
    """
    if op.kind == "write":
        pwrite_all(fd, op.data, op.offset)
    else:
        os.ftruncate(fd, op.offset)


def image_path(state_dir: Path, node_id: int) -> Path:
    """Path of the durable image of file node ``node_id``."""
    return state_dir / IMAGES_DIR / str(node_id)


def log_path(state_dir: Path, node_id: int) -> Path:
    """Path of the unsynced-operation log of file node ``node_id``."""
    return state_dir / LOGS_DIR / str(node_id)


def reset_state_dir(state_dir: Path) -> None:
    """Forget any previous session: empty ``images/`` and ``logs/``, drop ``state.json``.

    Other files in ``state_dir`` (such as ``powerfs.log``) are left alone.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    for sub in (IMAGES_DIR, LOGS_DIR):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
        (state_dir / sub).mkdir()
    for name in (STATE_FILE, STATE_FILE + ".tmp"):
        (state_dir / name).unlink(missing_ok=True)


@dataclass
class NodeInfo:
    """What the cut tool needs to know about one node.

    Attributes:
        kind: ``"file"`` or ``"dir"``.
        ino: backing-filesystem inode number of a file present at mount time (used
            to find it if it was never modified, i.e. has no durable image), or None.
        mode: permission bits (``st_mode & 0o7777``) as last recorded.
        uid: owner user id as last recorded.
        gid: owner group id as last recorded.
    """

    kind: NodeKind
    ino: int | None
    mode: int
    uid: int
    gid: int


@dataclass
class DurableState:
    """The durable namespace: node facts plus each directory's durable listing.

    Attributes:
        nodes: node id -> facts, for every node the filesystem knows.
        durable: directory node id -> {entry name (bytes) -> node id}, the listing
            that survives a power cut (as of the directory's last fsync, or of mount).
    """

    nodes: dict[int, NodeInfo] = field(default_factory=dict)
    durable: dict[int, dict[bytes, int]] = field(default_factory=dict)

    def save(self, state_dir: Path) -> None:
        """Write ``state.json`` atomically (temporary file, then ``os.replace``).

        Raises:
            OSError: the state directory cannot be written.
        """
        doc = {
            "version": FORMAT_VERSION,
            "nodes": {
                str(i): {"kind": n.kind, "ino": n.ino, "mode": n.mode, "uid": n.uid, "gid": n.gid}
                for i, n in self.nodes.items()
            },
            "durable": {
                str(d): {os.fsdecode(name): child for name, child in listing.items()}
                for d, listing in self.durable.items()
            },
        }
        tmp = state_dir / (STATE_FILE + ".tmp")
        data = json.dumps(doc, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, state_dir / STATE_FILE)

    @classmethod
    def load(cls, state_dir: Path) -> DurableState:
        """Read ``state.json`` from ``state_dir``.

        Raises:
            StateError: the file is missing, of another format version, or malformed.
        """
        try:
            doc = json.loads((state_dir / STATE_FILE).read_bytes())
        except FileNotFoundError as exc:
            raise StateError(f"no {STATE_FILE} in {state_dir}: was powerfs ever mounted?") from exc
        except ValueError as exc:
            raise StateError(f"malformed {STATE_FILE} in {state_dir}: {exc}") from exc
        if doc.get("version") != FORMAT_VERSION:
            raise StateError(f"{STATE_FILE} version {doc.get('version')!r} != {FORMAT_VERSION}")
        try:
            nodes = {
                int(i): NodeInfo(n["kind"], n["ino"], int(n["mode"]), int(n["uid"]), int(n["gid"]))
                for i, n in doc["nodes"].items()
            }
            durable = {
                int(d): {os.fsencode(name): int(child) for name, child in listing.items()}
                for d, listing in doc["durable"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"malformed {STATE_FILE} in {state_dir}: {exc!r}") from exc
        return cls(nodes, durable)
