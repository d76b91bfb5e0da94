"""The content store: packages installed as immutable, versioned directories, and their catalog rows.

Layout under ``root`` (``<data_dir>/content``)::

    packages/<id>-<version[:16]>/   one installed package (never modified once renamed into place)
    .staging/<random>/              a package being copied (removed at the next start if left over)

Install: check the source (:func:`~appliance.content.validate.check_package`), copy every file into
a staging directory hashing as it goes (fsync each file and directory), rename the directory into
``packages/`` and fsync that, then — through the single writer, one durable transaction — replace
the title's ``content`` row and bump the catalog generation. A power cut leaves either the previous
version or the new one, never a half-written package that the catalog points at. The previous
version's directory is kept (one step of rollback); older ones are deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from ..errors import PackageError
from ..store.files import ensure_dir, fsync_dir
from ..store.models import state
from ..store.writer import Writer
from .manifest import MANIFEST, Manifest
from .tables import GENERATION_KEY, content
from .validate import check_package

__all__ = ["ContentStore", "InstallResult", "Installed"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Installed:
    """One installed title: id, version (manifest digest), directory, manifest, install time."""

    id: str
    version: str
    path: Path
    manifest: Manifest
    installed_at: float


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What an install did: the title now installed and whether it was already there."""

    installed: Installed
    already: bool
    previous: str | None


def _copy_hashed(src: Path, dst: Path) -> tuple[int, str]:
    """Copy ``src`` to the new file ``dst``, fsync it; returns (size, SHA-256 hex)."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fi, open(dst, "xb") as fo:
        while chunk := fi.read(_CHUNK):
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    os.chmod(dst, 0o444)
    return size, h.hexdigest()


class ContentStore:
    """Installed packages on disk and in the ``content`` table."""

    def __init__(self, root: Path, writer: Writer, reader: Engine) -> None:
        """Keep packages under ``root``; write rows through ``writer``, read through ``reader``."""
        self.root = root
        self.packages = root / "packages"
        self.staging = root / ".staging"
        self.writer = writer
        self.reader = reader

    def prepare(self) -> list[str]:
        """Create the folders; delete staging left by an interrupted install. Returns what it removed."""
        ensure_dir(self.packages)  # durably: a catalog row must never outlive its directory
        ensure_dir(self.staging)
        removed = []
        for d in self.staging.iterdir():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
        if removed:
            log.warning("removed unfinished content installs: %s", ", ".join(removed))
            fsync_dir(self.staging)
        return removed

    def _stage(self, src: Path) -> tuple[Manifest, str, Path]:
        """Check ``src`` and copy it into place; returns (manifest, version, final directory)."""
        pkg = check_package(src, verify_hashes=False)
        m, version = pkg.manifest, pkg.version
        final = self.packages / f"{m.id}-{version[:16]}"
        if final.exists():
            check_package(final, verify_hashes=False)
            return m, version, final
        work = Path(tempfile.mkdtemp(prefix=f"{m.id}.", dir=self.staging))
        try:
            for rel, entry in m.files.items():
                dst = work / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                size, sha = _copy_hashed(src / rel, dst)
                if size != entry.size or sha != entry.sha256:
                    raise PackageError(f"{rel}: SHA-256 or size differs from the manifest")
            shutil.copyfile(src / MANIFEST, work / MANIFEST)
            with open(work / MANIFEST, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(work, 0o755)
            for dirpath, _, _ in os.walk(work, topdown=False):
                fsync_dir(dirpath)
            os.replace(work, final)
            fsync_dir(self.packages)
            fsync_dir(self.staging)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return m, version, final

    async def install(self, src: Path) -> InstallResult:
        """Install the package at ``src``; raises PackageError with the reason if it is refused.

        Durable on return (files, directory rename and catalog row). Raises StoreError if the
        journal cannot commit.
        """
        m, version, final = await asyncio.to_thread(self._stage, src)
        manifest_json = m.model_dump(mode="json")
        now = time.time()

        def write(conn: Connection) -> tuple[bool, str | None]:
            row = conn.execute(select(content.c.version, content.c.dir)
                               .where(content.c.id == m.id)).first()
            if row is not None and row.version == version:
                return True, row.dir
            if row is None:
                conn.execute(insert(content).values(id=m.id, version=version, dir=final.name,
                                                    manifest=manifest_json, installed_at=now))
            else:
                conn.execute(update(content).where(content.c.id == m.id).values(
                    version=version, dir=final.name, manifest=manifest_json, installed_at=now))
            _bump(conn)
            return False, None if row is None else row.dir

        already, previous = await self.writer.run(write)
        if not already:
            await asyncio.to_thread(self._prune, m.id, keep={final.name, previous or ""})
        log.info("content %s version %s %s", m.id, version[:16],
                 "already installed" if already else "installed")
        return InstallResult(Installed(m.id, version, final, m, now), already, previous)

    def _prune(self, cid: str, keep: set[str]) -> None:
        for d in self.packages.iterdir():
            if d.name.startswith(f"{cid}-") and d.name not in keep and \
                    d.name[len(cid) + 1:].isalnum() and len(d.name) == len(cid) + 17:
                shutil.rmtree(d, ignore_errors=True)
        fsync_dir(self.packages)

    async def remove(self, cid: str) -> bool:
        """Take title ``cid`` out of the catalog (its files go at the next install); True if it was in."""
        def write(conn: Connection) -> bool:
            n = conn.execute(delete(content).where(content.c.id == cid)).rowcount
            if n:
                _bump(conn)
            return bool(n)

        return await self.writer.run(write)

    def generation(self) -> int:
        """The catalog generation (bumped by every install or removal); 0 before the first."""
        with self.reader.connect() as conn:
            v = conn.execute(select(state.c.value).where(state.c.key == GENERATION_KEY)).scalar()
        return int(v) if v is not None else 0

    def installed(self) -> list[Installed]:
        """Every installed title (ordered by id). Rows whose directory vanished are logged, skipped."""
        with self.reader.connect() as conn:
            rows = conn.execute(select(content).order_by(content.c.id)).all()
        out = []
        for r in rows:
            path = self.packages / r.dir
            if not path.is_dir():
                log.error("content %s: directory %s is missing; not served", r.id, path)
                continue
            out.append(Installed(r.id, r.version, path, Manifest.model_validate(r.manifest),
                                 r.installed_at))
        return out


def _bump(conn: Connection) -> None:
    cur: Any = conn.execute(select(state.c.value).where(state.c.key == GENERATION_KEY)).scalar()
    if cur is None:
        conn.execute(insert(state).values(key=GENERATION_KEY, value=1))
    else:
        conn.execute(update(state).where(state.c.key == GENERATION_KEY).values(value=int(cur) + 1))
