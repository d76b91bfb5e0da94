"""Activation of a content bundle: every package of the bundle in one catalog transaction.

Used by the hangar intake through the daemon (``appliance.daemon.build.content_activator``), so
the intake never imports the content feature.

A content bundle's files are ``<package dir>/...``; each top-level directory is one content
package (``package.json`` and its files). :class:`ContentActivator` copies each into the
content store (the store's own staging + rename, so a package directory is whole or absent) and
then, in **one** writer transaction together with the caller's rows (intake state, journal,
outbox), replaces every title's ``content`` row and bumps the catalog generation once. A power
cut before that commit leaves the previous catalog serving (the new directories are unreferenced
and pruned by a later install); after it, the new one. Never a mix.

Hook wanted in ``ContentStore`` (until then this module uses its private ``_stage``): a public
``stage(src) -> (manifest, version, final_dir)`` and ``apply(conn, staged) -> list[previous dirs]``
that writes the rows and bumps the generation inside the caller's transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from ..errors import BundleRefused, PackageError
from ..store.models import state
from ..store.writer import Writer
from .tables import content

__all__ = ["ContentActivator", "StoreLike"]


class StoreLike(Protocol):
    """What this module needs of :class:`appliance.content.store.ContentStore`."""

    writer: Writer

    def _stage(self, src: Path) -> tuple[Any, str, Path]:
        """Check and copy ``src`` into the store: (manifest, version, final directory)."""


def package_dirs(root: Path, files: list[str]) -> list[str]:
    """The top-level directories of ``files`` (sorted); BundleRefused if a file is at the top."""
    tops = set()
    for f in files:
        head, sep, _ = f.partition("/")
        if not sep:
            raise BundleRefused(f"{f}: a content bundle's files must be inside package directories")
        tops.add(head)
    return sorted(tops)


class ContentActivator:
    """Install the packages of a staged content bundle into the store, atomically as a set."""

    def __init__(self, store: StoreLike, generation_key: str = "content.generation") -> None:
        """Work on ``store`` (its staging and packages directories, its writer)."""
        self.store = store
        self.generation_key = generation_key

    async def activate(self, staged: Path, files: list[str],
                       extra: Callable[[Connection, dict[str, Any]], Any]) -> list[str]:
        """Stage every package, then commit all rows and ``extra(conn, detail)`` in one transaction.

        ``detail`` is ``{"titles": [ids]}``.

        Returns the titles (ids) now installed. Raises BundleRefused if a package is refused by
        the store (its reason), StoreError if the journal cannot commit.
        """
        staged_pkgs = []
        for d in package_dirs(staged, files):
            try:
                m, version, final = await asyncio.to_thread(self.store._stage, staged / d)
            except PackageError as e:
                raise BundleRefused(f"package {d}: {e}") from e
            staged_pkgs.append((m, version, final))
        now = time.time()
        key = self.generation_key

        def write(conn: Connection) -> list[str]:
            changed = False
            for m, version, final in staged_pkgs:
                row = conn.execute(select(content.c.version).where(content.c.id == m.id)).first()
                values = {"version": version, "dir": final.name,
                          "manifest": m.model_dump(mode="json"), "installed_at": now}
                if row is None:
                    conn.execute(insert(content).values(id=m.id, **values))
                    changed = True
                elif row.version != version:
                    conn.execute(update(content).where(content.c.id == m.id).values(**values))
                    changed = True
            if changed:
                cur = conn.execute(select(state.c.value).where(state.c.key == key)).scalar()
                if cur is None:
                    conn.execute(insert(state).values(key=key, value=1))
                else:
                    conn.execute(update(state).where(state.c.key == key).values(value=int(cur) + 1))
            titles = [m.id for m, _, _ in staged_pkgs]
            extra(conn, {"titles": titles})
            return titles

        return await self.store.writer.run(write)
