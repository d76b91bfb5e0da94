"""powerfs: a FUSE pass-through filesystem that remembers what a power cut would keep.

Run (from the repository root)::

    python -m tests.faults.powerfs.powerfs BACKING_DIR MOUNTPOINT --state STATE_DIR

Every operation on MOUNTPOINT is passed through to BACKING_DIR, so while it runs the
mount behaves like the backing directory. Alongside, powerfs records in STATE_DIR what
would survive if the power failed *now*; :func:`tests.faults.powerfs.cut.power_cut`
later rewrites BACKING_DIR to one such survivor state.

What is modelled
----------------
Session start
    At mount, STATE_DIR is reset and everything in BACKING_DIR counts as durable
    (after a cut the backing dir holds exactly the survivor state, so this holds).
File data (regular files)
    Each file has a *durable image* (``STATE_DIR/images/<id>``) and a *log* of the
    writes and truncates made since its last fsync (``STATE_DIR/logs/<id>``).
    ``fsync`` and ``fdatasync`` are treated alike: both make the file's data and
    size durable. On fsync the logged operations are applied to the image in place
    (``os.pwrite``, ``os.ftruncate``), the log is emptied, and only then is the
    fsync answered. Writes through a handle opened with ``O_SYNC``/``O_DSYNC`` are
    durable when they return. A file present at mount gets its image (a copy made
    in a temporary file, then ``os.replace``) just before its first write or
    truncate, or before it is unlinked or replaced by a rename; until then the
    backing file itself is its durable content, which the cut finds by inode number.
    At a cut each file becomes its image plus a random subset of its logged
    operations applied in order, one write possibly torn at a 512-byte boundary.
Names (strict model)
    create, mkdir, unlink, rmdir and rename change only the *live* listing of a
    directory. A directory's *durable listing* (name -> node) is replaced by its
    live listing when the directory itself is fsynced (``fsyncdir``), and is the
    listing a cut restores. So a file created, written and fsynced in a directory
    that is never fsynced is lost on a cut; an unlinked or renamed entry comes back
    under its old name (with its durable data) unless the directory was fsynced
    after the change; a new directory survives only if its parent was fsynced,
    and its entries only if it was fsynced itself. A rename across directories
    is durable per directory: fsyncing only the target keeps the file in both
    places (it comes back as two independent copies), fsyncing only the source
    loses it.
Metadata
    Permission bits and owner are recorded at mount and at each fsyncdir (the last
    known values then) and restored by the cut. Timestamps are not modelled: a
    restored file carries the time of the cut.

What is not modelled
--------------------
- Reordering inside one write beyond a single tear: a write is either dropped,
  applied whole, or (at most one per file) cut at one 512-byte boundary keeping the
  part before or after it. Writes of one file are kept as a random subset applied
  in order, independently of other files.
- Durability of file data is independent of durability of names (no "ordered"
  journalling as in ext4 ``data=ordered``); fsync of a file does not make its name
  durable, as POSIX allows.
- Hard links, symlinks and device nodes: ``link``, ``symlink`` and ``mknod`` fail
  with EPERM, and the mount refuses to start if BACKING_DIR holds anything but
  regular files and directories. ``RENAME_EXCHANGE`` fails with EINVAL. Extended
  attributes and ``fallocate`` are not implemented (ENOSYS/EOPNOTSUPP). File locks
  are handled by the kernel locally (fine for processes of one machine).
- The kernel page cache of the mount is not modelled: applications read their own
  unsynced writes back, as on a real disk before the cut.
- Nothing in STATE_DIR or BACKING_DIR is fsynced to the real disk: the harness
  survives its own SIGKILL (page cache persists), not a real power cut of the host.
- ``forget`` is ignored: the node table of a session only grows.

Robustness of the harness itself
--------------------------------
A SIGKILL of this process at any instruction leaves STATE_DIR readable and loses
no acknowledged fsync. Images are created whole (temporary file + rename) and
afterwards only updated in place with ``os.pwrite``/``os.ftruncate``, never
recreated with ``open(..., "wb")``. A kill inside an fsync (which is then never
acknowledged) leaves the image holding the old durable data with a prefix of the
logged operations applied, and the log intact; the cut then applies its random
subset on top, so every byte holds its durable value or a value written after the
last acknowledged fsync, as a disk with a volatile write cache may also leave it.
An incomplete trailing log record belongs to a write never acknowledged and is
ignored. ``state.json`` is replaced atomically.
"""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3
import trio

from .mounts import is_mounted
from .state import (
    ROOT_ID,
    DurableState,
    NodeInfo,
    NodeKind,
    apply_op,
    encode_truncate,
    encode_write,
    image_path,
    log_path,
    pwrite_all,
    read_log,
    reset_state_dir,
    write_all,
)

log = logging.getLogger("powerfs")

ATTR_TIMEOUT = 1.0
"""Seconds the kernel may cache attributes and names (the mount is the only writer)."""
_COPY_CHUNK = 1 << 20

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

if pyfuse3.ROOT_INODE != ROOT_ID:  # node ids double as inode numbers
    raise ImportError(f"pyfuse3.ROOT_INODE is {pyfuse3.ROOT_INODE}, powerfs needs {ROOT_ID}")


class UnsupportedEntryError(RuntimeError):
    """BACKING_DIR holds something powerfs does not model (symlink, device, fifo...)."""


def _fuse_errors(
    fn: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Turn exceptions of a request handler into ``FUSEError`` (pyfuse3 wants only those).

    ``OSError`` keeps its errno; anything else is a bug of the model: it is logged
    with its traceback (the tests look for ``internal error`` in the log) and the
    request fails with EIO.
    """

    @functools.wraps(fn)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from exc
        except Exception as exc:
            log.exception("internal error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from exc

    return wrapper


@dataclass
class _Node:
    """One file or directory of the session (a FUSE inode).

    ``parent``/``name`` locate it in the live tree (``parent is None``: unlinked).
    """

    id: int
    kind: NodeKind
    parent: int | None
    name: bytes
    mode: int
    uid: int
    gid: int
    ino: int | None = None
    children: dict[bytes, int] = field(default_factory=dict)
    durable: dict[bytes, int] = field(default_factory=dict)
    has_image: bool = False
    handles: set[int] = field(default_factory=set)
    log_fd: int | None = None
    image_fd: int | None = None


@dataclass
class _Handle:
    node: int
    fd: int
    sync: bool


class PowerOperations(pyfuse3.Operations):
    """The pyfuse3 request handlers: pass-through plus durability bookkeeping.

    Handlers never await, so under trio they run one at a time, each to completion:
    the live tree, the backing dir and the state dir change in a single thread.

    Args:
        backing_dir: directory whose content the mount shows (must exist).
        state_dir: where durable images, logs and ``state.json`` are kept (created).
    """

    def __init__(self, backing_dir: Path, state_dir: Path) -> None:
        super().__init__()
        self.backing = os.fsencode(os.path.abspath(backing_dir))
        self.state_dir = Path(state_dir).absolute()
        self.nodes: dict[int, _Node] = {}
        self.handles: dict[int, _Handle] = {}
        self._next_id = ROOT_ID + 1
        self._next_fh = 1
        self.is_root = os.geteuid() == 0

    # ----------------------------------------------------------------- session
    def start_session(self) -> None:
        """Reset STATE_DIR, scan BACKING_DIR (all of it durable) and persist the state.

        Raises:
            UnsupportedEntryError: BACKING_DIR holds a symlink, device, fifo or socket.
            OSError: BACKING_DIR or STATE_DIR cannot be read or written.
        """
        reset_state_dir(self.state_dir)
        st = os.stat(self.backing)
        root = _Node(ROOT_ID, "dir", None, b"", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        self.nodes[ROOT_ID] = root
        self._scan(root, self.backing)
        self._persist()
        log.info("session started: %d nodes under %s", len(self.nodes), os.fsdecode(self.backing))

    def _scan(self, dir_node: _Node, path: bytes) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = self._new_node("dir", dir_node.id, entry.name, st)
                self._scan(child, entry.path)
            elif stat.S_ISREG(st.st_mode):
                child = self._new_node("file", dir_node.id, entry.name, st)
                child.ino = st.st_ino
            else:
                raise UnsupportedEntryError(f"not a regular file or directory: {os.fsdecode(entry.path)}")
            dir_node.children[entry.name] = child.id
        dir_node.durable = dict(dir_node.children)

    def _new_node(self, kind: NodeKind, parent: int, name: bytes, st: os.stat_result) -> _Node:
        node = _Node(self._next_id, kind, parent, name, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        self._next_id += 1
        self.nodes[node.id] = node
        return node

    def _persist(self) -> None:
        state = DurableState(
            nodes={n.id: NodeInfo(n.kind, n.ino, n.mode, n.uid, n.gid) for n in self.nodes.values()},
            durable={n.id: n.durable for n in self.nodes.values() if n.kind == "dir"},
        )
        state.save(self.state_dir)

    def close_all(self) -> None:
        """Close every file descriptor the session holds (handles, logs, images)."""
        for h in self.handles.values():
            _close_quietly(h.fd)
        self.handles.clear()
        for node in self.nodes.values():
            self._close_state_fds(node)

    # ----------------------------------------------------------------- helpers
    def _node(self, inode: int) -> _Node:
        try:
            return self.nodes[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _dir(self, inode: int) -> _Node:
        node = self._node(inode)
        if node.kind != "dir":
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    def _path(self, node: _Node) -> bytes:
        parts: list[bytes] = []
        cur = node
        while cur.id != ROOT_ID:
            if cur.parent is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            parts.append(cur.name)
            cur = self.nodes[cur.parent]
        return os.path.join(self.backing, *reversed(parts))

    def _child_path(self, parent: _Node, name: bytes) -> bytes:
        return os.path.join(self._path(parent), name)

    def _stat(self, node: _Node) -> os.stat_result:
        if node.id == ROOT_ID or node.parent is not None:
            return os.lstat(self._path(node))
        for fh in node.handles:
            return os.fstat(self.handles[fh].fd)
        raise pyfuse3.FUSEError(errno.ENOENT)

    def _attrs(self, node: _Node) -> pyfuse3.EntryAttributes:
        st = self._stat(node)
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = node.id
        attrs.generation = 0
        attrs.entry_timeout = ATTR_TIMEOUT
        attrs.attr_timeout = ATTR_TIMEOUT
        attrs.st_mode = st.st_mode
        attrs.st_nlink = st.st_nlink
        attrs.st_uid = st.st_uid
        attrs.st_gid = st.st_gid
        attrs.st_rdev = st.st_rdev
        attrs.st_size = st.st_size
        attrs.st_blksize = st.st_blksize
        attrs.st_blocks = st.st_blocks
        attrs.st_atime_ns = st.st_atime_ns
        attrs.st_mtime_ns = st.st_mtime_ns
        attrs.st_ctime_ns = st.st_ctime_ns
        return attrs

    def _any_fd(self, node: _Node) -> int | None:
        for fh in node.handles:
            return self.handles[fh].fd
        return None

    def _ensure_image(self, node: _Node, fd: int | None = None) -> None:
        """Give a file present since mount its durable image before it first changes.

        The copy is made whole in a temporary file and renamed into place, so a
        kill mid-copy leaves no image (and the untouched backing file stays the
        durable content, found by its inode number).
        """
        if node.has_image or node.kind != "file":
            return
        own = fd is None
        src = os.open(self._path(node), os.O_RDONLY) if fd is None else fd
        final = image_path(self.state_dir, node.id)
        tmp = final.with_name(final.name + ".tmp")
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            offset = 0
            while chunk := os.pread(src, _COPY_CHUNK, offset):
                pwrite_all(dst, chunk, offset)
                offset += len(chunk)
        finally:
            os.close(dst)
            if own:
                os.close(src)
        os.replace(tmp, final)
        node.has_image = True

    def _log_fd(self, node: _Node) -> int:
        if node.log_fd is None:
            node.log_fd = os.open(
                log_path(self.state_dir, node.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
        return node.log_fd

    def _image_fd(self, node: _Node) -> int:
        if node.image_fd is None:
            node.image_fd = os.open(image_path(self.state_dir, node.id), os.O_RDWR)
        return node.image_fd

    def _journal(self, node: _Node, record: bytes) -> None:
        write_all(self._log_fd(node), record)

    def _sync(self, node: _Node, fd: int) -> None:
        """Make the file's current data durable: apply its log to the image, empty the log."""
        if not node.has_image:
            return  # unchanged since mount: the backing file is the durable content
        ops = read_log(log_path(self.state_dir, node.id))
        img = self._image_fd(node)
        for op in ops:
            apply_op(img, op)
        size = os.fstat(fd).st_size
        if os.fstat(img).st_size != size:
            log.error(
                "internal error: node %d image has %d bytes, file %d after %d ops",
                node.id,
                os.fstat(img).st_size,
                size,
                len(ops),
            )
            os.ftruncate(img, size)
        os.ftruncate(self._log_fd(node), 0)

    def _truncate(self, node: _Node, size: int, fd: int | None) -> None:
        self._ensure_image(node, fd)
        if fd is None:
            os.truncate(self._path(node), size)
        else:
            os.ftruncate(fd, size)
        self._journal(node, encode_truncate(size))

    def _close_state_fds(self, node: _Node) -> None:
        for attr in ("log_fd", "image_fd"):
            fd = getattr(node, attr)
            if fd is not None:
                _close_quietly(fd)
                setattr(node, attr, None)

    def _detach(self, node: _Node) -> None:
        """Drop ``node`` from the live tree (its backing entry is already gone)."""
        node.parent = None
        if not node.handles:
            self._close_state_fds(node)

    def _open_handle(self, node: _Node, fd: int, flags: int) -> pyfuse3.FileInfo:
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = _Handle(node.id, fd, bool(flags & (os.O_SYNC | os.O_DSYNC)))
        node.handles.add(fh)
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh))

    def _chown_new(self, path: bytes, ctx: pyfuse3.RequestContext) -> None:
        if self.is_root:
            os.lchown(path, ctx.uid, ctx.gid)

    # ------------------------------------------------------------ name lookups
    @_fuse_errors
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """Find ``name`` in directory ``parent_inode`` (ENOENT if absent)."""
        parent = self._dir(parent_inode)
        if name == b".":
            return self._attrs(parent)
        if name == b"..":
            return self._attrs(self.nodes[parent.parent if parent.parent is not None else ROOT_ID])
        child = parent.children.get(name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(self.nodes[child])

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        """Ignore lookup-count decrements: nodes live for the whole session."""

    @_fuse_errors
    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """Return the attributes of ``inode`` (those of its backing file)."""
        return self._attrs(self._node(inode))

    @_fuse_errors
    async def setattr(
        self,
        inode: pyfuse3.InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: pyfuse3.FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """Change size (journalled like a write), mode, owner or times of ``inode``."""
        node = self._node(inode)
        fd = self.handles[fh].fd if fh is not None and fh in self.handles else self._any_fd(node)
        target: int | bytes = fd if fd is not None else self._path(node)
        if fields.update_size:
            if node.kind != "file":
                raise pyfuse3.FUSEError(errno.EISDIR)
            self._truncate(node, attr.st_size, fd)
        if fields.update_mode:
            os.chmod(target, stat.S_IMODE(attr.st_mode))
            node.mode = stat.S_IMODE(attr.st_mode)
        if fields.update_uid or fields.update_gid:
            uid = attr.st_uid if fields.update_uid else -1
            gid = attr.st_gid if fields.update_gid else -1
            os.chown(target, uid, gid)
            node.uid = attr.st_uid if fields.update_uid else node.uid
            node.gid = attr.st_gid if fields.update_gid else node.gid
        if fields.update_atime or fields.update_mtime:
            st = self._stat(node)
            atime = attr.st_atime_ns if fields.update_atime else st.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns
            os.utime(target, ns=(atime, mtime))
        return self._attrs(node)

    # ---------------------------------------------------------- name changes
    @_fuse_errors
    async def mkdir(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """Create directory ``name``; durable only after its parent is fsynced."""
        parent = self._dir(parent_inode)
        if name in parent.children:
            raise pyfuse3.FUSEError(errno.EEXIST)
        path = self._child_path(parent, name)
        os.mkdir(path, stat.S_IMODE(mode) & ~ctx.umask)
        self._chown_new(path, ctx)
        node = self._new_node("dir", parent.id, name, os.lstat(path))
        parent.children[name] = node.id
        return self._attrs(node)

    @_fuse_errors
    async def create(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        flags: pyfuse3.FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        """Create and open regular file ``name`` (empty durable image, name not durable)."""
        parent = self._dir(parent_inode)
        existing = parent.children.get(name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise pyfuse3.FUSEError(errno.EEXIST)
            info = await self.open(pyfuse3.InodeT(existing), flags, ctx)
            return info, self._attrs(self.nodes[existing])
        path = self._child_path(parent, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, stat.S_IMODE(mode) & ~ctx.umask)
        try:
            self._chown_new(path, ctx)
            node = self._new_node("file", parent.id, name, os.fstat(fd))
            empty_image = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            os.close(os.open(image_path(self.state_dir, node.id), empty_image, 0o600))
            node.has_image = True
        except BaseException:
            os.close(fd)
            raise
        parent.children[name] = node.id
        return self._open_handle(node, fd, flags), self._attrs(node)

    @_fuse_errors
    async def unlink(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        """Remove file ``name``; it comes back on a cut unless the parent is fsynced."""
        parent = self._dir(parent_inode)
        child = parent.children.get(name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = self.nodes[child]
        if node.kind == "dir":
            raise pyfuse3.FUSEError(errno.EISDIR)
        self._ensure_image(node, self._any_fd(node))
        os.unlink(self._child_path(parent, name))
        del parent.children[name]
        self._detach(node)

    @_fuse_errors
    async def rmdir(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        """Remove empty directory ``name``; it comes back on a cut unless the parent is fsynced."""
        parent = self._dir(parent_inode)
        child = parent.children.get(name)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        node = self.nodes[child]
        if node.kind != "dir":
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        if node.children:
            raise pyfuse3.FUSEError(errno.ENOTEMPTY)
        os.rmdir(self._child_path(parent, name))
        del parent.children[name]
        self._detach(node)

    @_fuse_errors
    async def rename(
        self,
        parent_inode_old: pyfuse3.InodeT,
        name_old: pyfuse3.FileNameT,
        parent_inode_new: pyfuse3.InodeT,
        name_new: pyfuse3.FileNameT,
        flags: pyfuse3.FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        """Move an entry (replacing any target); durable per directory on fsyncdir."""
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old_parent = self._dir(parent_inode_old)
        new_parent = self._dir(parent_inode_new)
        src_id = old_parent.children.get(name_old)
        if src_id is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        dst_id = new_parent.children.get(name_new)
        if dst_id == src_id:
            return
        if dst_id is not None:
            if flags & pyfuse3.RENAME_NOREPLACE:
                raise pyfuse3.FUSEError(errno.EEXIST)
            dst = self.nodes[dst_id]
            self._ensure_image(dst, self._any_fd(dst))  # its durable content must outlive the name
        os.rename(self._child_path(old_parent, name_old), self._child_path(new_parent, name_new))
        if dst_id is not None:
            self._detach(self.nodes[dst_id])
        del old_parent.children[name_old]
        new_parent.children[name_new] = src_id
        src = self.nodes[src_id]
        src.parent = new_parent.id
        src.name = name_new

    @_fuse_errors
    async def link(
        self,
        inode: pyfuse3.InodeT,
        new_parent_inode: pyfuse3.InodeT,
        new_name: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """Refuse: hard links are not modelled (EPERM)."""
        raise pyfuse3.FUSEError(errno.EPERM)

    @_fuse_errors
    async def symlink(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        target: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """Refuse: symbolic links are not modelled (EPERM)."""
        raise pyfuse3.FUSEError(errno.EPERM)

    @_fuse_errors
    async def mknod(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        rdev: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        """Refuse: device nodes, fifos and sockets are not modelled (EPERM)."""
        raise pyfuse3.FUSEError(errno.EPERM)

    # ------------------------------------------------------------- file data
    @_fuse_errors
    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        """Open the backing file read-write (the kernel checks permissions)."""
        node = self._node(inode)
        if node.kind != "file":
            raise pyfuse3.FUSEError(errno.EISDIR)
        fd = os.open(self._path(node), os.O_RDWR)
        try:
            if flags & os.O_TRUNC:
                self._truncate(node, 0, fd)
        except BaseException:
            os.close(fd)
            raise
        return self._open_handle(node, fd, flags)

    @_fuse_errors
    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        """Read up to ``size`` bytes at byte offset ``off``."""
        return os.pread(self.handles[fh].fd, size, off)

    @_fuse_errors
    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        """Write ``buf`` at byte offset ``off`` and journal it as unsynced."""
        h = self.handles[fh]
        node = self.nodes[h.node]
        self._ensure_image(node, h.fd)
        pwrite_all(h.fd, buf, off)
        self._journal(node, encode_write(off, bytes(buf)))
        if h.sync:
            self._sync(node, h.fd)
        return len(buf)

    @_fuse_errors
    async def fsync(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        """Handle fsync/fdatasync: the file's data and size become durable before this returns."""
        h = self.handles[fh]
        self._sync(self.nodes[h.node], h.fd)

    @_fuse_errors
    async def flush(self, fh: pyfuse3.FileHandleT) -> None:
        """Handle close(): nothing to do (closing does not make anything durable)."""

    @_fuse_errors
    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        """Last close of a handle: close the backing descriptor."""
        h = self.handles.pop(fh)
        os.close(h.fd)
        node = self.nodes[h.node]
        node.handles.discard(fh)
        if node.parent is None and not node.handles:
            self._close_state_fds(node)

    # ------------------------------------------------------------ directories
    @_fuse_errors
    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        """Open a directory: its handle is its node id."""
        return pyfuse3.FileHandleT(self._dir(inode).id)

    @_fuse_errors
    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        """List the live entries in node-id order (ids never reused, so offsets are stable)."""
        node = self._dir(fh)
        for child_id, name in sorted((c, n) for n, c in node.children.items()):
            if child_id <= start_id:
                continue
            if not pyfuse3.readdir_reply(token, name, self._attrs(self.nodes[child_id]), child_id):
                break

    @_fuse_errors
    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        """Close a directory handle (nothing held)."""

    @_fuse_errors
    async def fsyncdir(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        """Handle fsync of a directory: its current listing becomes its durable listing."""
        node = self._dir(fh)
        node.durable = dict(node.children)
        self._persist()

    @_fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """Report the backing filesystem's statistics."""
        sv = os.statvfs(self.backing)
        data = pyfuse3.StatvfsData()
        data.f_bsize = sv.f_bsize
        data.f_frsize = sv.f_frsize
        data.f_blocks = sv.f_blocks
        data.f_bfree = sv.f_bfree
        data.f_bavail = sv.f_bavail
        data.f_files = sv.f_files
        data.f_ffree = sv.f_ffree
        data.f_favail = sv.f_favail
        data.f_namemax = sv.f_namemax
        return data


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


async def _serve() -> None:
    """Run pyfuse3's request loop until unmounted or SIGTERM/SIGINT."""
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: terminating", signum)
                    pyfuse3.terminate()
                    return

        nursery.start_soon(watch_signals)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Mount powerfs and serve until unmounted (``fusermount3 -u``) or SIGTERM.

    Args:
        argv: command-line arguments without the program name (default: sys.argv).

    Returns:
        Process exit status: 0 after a clean unmount, 2 on bad arguments or an
        unsupported backing dir.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.powerfs.powerfs", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("backing_dir", type=Path, help="directory whose content is shown")
    parser.add_argument("mountpoint", type=Path, help="empty directory to mount on")
    parser.add_argument("--state", required=True, type=Path, help="STATE_DIR for images, logs, state.json")
    parser.add_argument("--debug", action="store_true", help="log every FUSE request (slow)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s powerfs[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not args.backing_dir.is_dir() or not args.mountpoint.is_dir():
        parser.error("BACKING_DIR and MOUNTPOINT must be existing directories")
    backing = args.backing_dir.resolve()
    state = args.state.resolve()
    if state == backing or backing in state.parents:
        parser.error("STATE_DIR must not be inside BACKING_DIR")
    ops = PowerOperations(backing, state)
    try:
        ops.start_session()
    except UnsupportedEntryError as exc:
        log.error("%s", exc)
        return 2
    options = set(pyfuse3.default_options)
    options.add("fsname=powerfs")
    if os.geteuid() == 0:
        options.add("allow_other")
    if args.debug:
        options.add("debug")
    mountpoint = str(args.mountpoint.resolve())
    pyfuse3.init(ops, mountpoint, options)
    log.info("mounted %s on %s (state %s)", backing, mountpoint, state)
    try:
        trio.run(_serve)
    finally:
        still_mounted = is_mounted(mountpoint)
        pyfuse3.close(unmount=still_mounted)
        ops.close_all()
        log.info("stopped (unmounted by %s)", "powerfs" if still_mounted else "fusermount")
    return 0


if __name__ == "__main__":
    sys.exit(main())
