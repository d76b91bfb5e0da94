"""What runs: this process's appliance version and the software slot it was started from.

:func:`running` answers ``{"version", "slot", "prefix", "current", "slot_file"}``:

- ``version``: the installed distribution's version (``importlib.metadata``: the wheel's, so a
  slot built from a bumped wheel shows the bumped version);
- ``slot``: ``"dev"`` when the ``appliance`` package is imported from a source checkout (a
  ``pyproject.toml`` beside the package: an editable install or ``PYTHONPATH``); else the name of
  the slot directory the interpreter's virtualenv is (``sys.prefix``, e.g. ``/opt/appliance/
  slots/a`` -> ``"a"``) when it sits in a ``slots/`` folder or holds a ``SLOT`` file (written by
  ``image-build/customize.sh``) or a ``slot.json`` (written by the intake's slot installer); else
  ``"unslotted"`` (a plain virtualenv);
- ``prefix``: ``sys.prefix``;
- ``current``: True when the install's ``current`` link (``<slots>/../current``) points at this
  slot, False when it points elsewhere (the process runs the previous slot, e.g. mid-switch),
  None when there is no such link (dev, unslotted);
- ``slot_file``: the first line of the slot's ``SLOT`` file (``appliance 0.1.0``), or None.

Reads a few small files; never raises for a missing or unreadable one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from . import __version__

__all__ = ["running", "version_line"]


def _slot_of(prefix: Path) -> str | None:
    if prefix.parent.name == "slots" or (prefix / "SLOT").is_file() \
            or (prefix / "slot.json").is_file():
        return prefix.name
    return None


def _is_checkout(package_dir: Path) -> bool:
    return (package_dir.parent / "pyproject.toml").is_file()


def running(prefix: Path | None = None, package_dir: Path | None = None) -> dict[str, Any]:
    """This process's version and slot (see the module docstring); tests pass the two paths."""
    prefix = (Path(sys.prefix) if prefix is None else prefix).resolve()
    package_dir = Path(__file__).resolve().parent if package_dir is None else package_dir
    slot_file: str | None = None
    current: bool | None = None
    if _is_checkout(package_dir):
        slot = "dev"
    else:
        found = _slot_of(prefix)
        slot = found or "unslotted"
        if found is not None:
            try:
                slot_file = (prefix / "SLOT").read_text().splitlines()[0].strip() or None
            except (OSError, IndexError):
                slot_file = None
            link = prefix.parent.parent / "current"
            try:
                target = os.readlink(link)
                current = (link.parent / target).resolve() == prefix
            except OSError:
                current = None
    return {"version": __version__, "slot": slot, "prefix": str(prefix), "current": current,
            "slot_file": slot_file}


def version_line() -> str:
    """``appliance VERSION (slot S)``, what ``appliance --version`` prints."""
    r = running()
    where = "" if r["current"] is not False else ", not the current slot"
    return f"appliance {r['version']} (slot {r['slot']}{where})"
