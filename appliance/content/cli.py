"""``appliance content ...``: install, list and remove content packages in the data directory.

- ``appliance content install DIR [--config FILE]``: check the package at DIR and install it
  (exit 0; 1 with the reason if refused; 78 on invalid configuration). Works while the service
  runs: the service notices the new catalog generation within ``content.catalog_poll_s``.
- ``appliance content list [--config FILE]``: the installed titles.
- ``appliance content remove ID [--config FILE]``: take a title out of the catalog.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from ..errors import PackageError, StoreError

__all__ = ["add_parser"]


def _open(config: str | None) -> tuple[Any, Any, Any]:
    from ..settings import load_settings
    from ..store.engine import make_engine
    from ..store.migrate import upgrade
    from ..store.writer import Writer
    from .store import ContentStore

    settings = load_settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = settings.journal_path
    upgrade(make_engine(db), db)
    writer = Writer(make_engine(db))
    store = ContentStore(settings.data_dir / "content", writer, make_engine(db, readonly=True))
    return settings, writer, store


def _install(args: argparse.Namespace) -> int:
    _, writer, store = _open(args.config)
    writer.start()
    try:
        store.packages.mkdir(parents=True, exist_ok=True)
        store.staging.mkdir(parents=True, exist_ok=True)
        res = asyncio.run(store.install(args.dir))
    except PackageError as e:
        print(f"appliance content: refused {args.dir}: {e}", file=sys.stderr)
        return 1
    except (StoreError, OSError) as e:
        print(f"appliance content: cannot install {args.dir}: {e}", file=sys.stderr)
        return 1
    finally:
        writer.stop()
    inst = res.installed
    state = "already installed" if res.already else "installed"
    print(f"{inst.id} ({inst.manifest.kind}, version {inst.version[:16]}) {state} in {inst.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    _, _, store = _open(args.config)
    for inst in store.installed():
        m = inst.manifest
        window = f"{m.not_before or '-'} .. {m.not_after or '-'}"
        print(f"{inst.id:24} {m.kind:5} {inst.version[:16]} {'flight-only ' if m.flight_only else ''}"
              f"{window}  {m.title}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    _, writer, store = _open(args.config)
    writer.start()
    try:
        removed = asyncio.run(store.remove(args.id))
    finally:
        writer.stop()
    print(f"{args.id}: {'removed' if removed else 'not installed'}")
    return 0 if removed else 1


def add_parser(sub: Any) -> None:
    """Add the ``content`` command to the ``appliance`` subparsers ``sub``."""
    p = sub.add_parser("content", help="install, list or remove content packages",
                       description="Install, list or remove content packages in the data "
                                   "directory (works while the service runs).")
    csub = p.add_subparsers(dest="content_cmd", required=True, metavar="COMMAND")
    for name, fn, helptext in (
            ("install", _install, "check a package directory (made by media package) and "
                                  "install it; refused with the reason when bad"),
            ("list", _list, "list installed titles"),
            ("remove", _remove, "remove a title from the catalog")):
        c = csub.add_parser(name, help=helptext, description=helptext)
        c.add_argument("--config", help="the service's TOML config file (default: "
                                        "$APPLIANCE_CONFIG); its data_dir holds the content")
        if name == "install":
            c.add_argument("dir", type=Path, help="the package directory (with package.json)")
        elif name == "remove":
            c.add_argument("id", help="the title's content id (see content list)")
        c.set_defaults(fn=fn)
