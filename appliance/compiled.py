"""The avionics hot path compiled to C with mypyc, and how to tell (or refuse) the compiled build.

The chain's per-frame and per-tick modules (:data:`MODULES`) are ordinary, fully typed Python.
``setup.py`` compiles them with mypyc when the package is installed (``make deps``, the image's
wheel); the extension module sits beside its ``.py`` and Python imports it first. Nothing else
changes: the same source is the specification, and the test suite runs on the compiled build
(what the aircraft runs) and, for the avionics tests, on the pure-Python source as well.

- :func:`status`: each module and whether it runs compiled (BITE's versions, ``appliance version``).
- :func:`stale`: compiled modules older than their source (an edit not yet rebuilt with
  ``make deps``): the tests refuse to run on them.
- :func:`use_source`: import the pure-Python source instead (``APPLIANCE_PURE_PYTHON=1``); must
  run before the modules are first imported.

This module imports nothing of the appliance: ``setup.py`` reads :data:`MODULES` from it at build
time, before any dependency is installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["BRIDGE_MODULES", "MODULES", "PURE_ENV", "source_path", "stale", "status", "use_source"]

#: The appliance's compiled modules: the chain's hot path (per frame, per parameter, per tick).
MODULES = (
    "appliance.avionics.decode",
    "appliance.avionics.params",
    "appliance.avionics.chain",
    "appliance.avionics.stages",
    "appliance.avionics.redundancy",
    "appliance.avionics.position",
    "appliance.avionics.clock",
    "appliance.modes.airground",
    "appliance.modes.phase",
)
#: The firmware bridge's compiled modules (its own setup.py): the card's frame decoder.
BRIDGE_MODULES = ("firmware_bridge.frame",)
#: Set to 1 to run the pure-Python source of every compiled module.
PURE_ENV = "APPLIANCE_PURE_PYTHON"
_ALL = MODULES + BRIDGE_MODULES


def _spec_origin(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return None if spec is None else spec.origin


def source_path(name: str) -> Path | None:
    """The ``.py`` file of module ``name`` (beside its compiled extension), or None."""
    origin = _spec_origin(name)
    if origin is None:
        return None
    p = Path(origin)
    return p if p.suffix == ".py" else p.parent / (name.rsplit(".", 1)[1] + ".py")


def status() -> dict[str, bool]:
    """Module name -> True if it is imported (or would be) from a compiled extension."""
    out = {}
    for name in _ALL:
        mod = sys.modules.get(name)
        origin = getattr(mod, "__file__", None) if mod is not None else _spec_origin(name)
        out[name] = bool(origin) and not str(origin).endswith(".py")
    return out


def stale(names: Sequence[str] = _ALL) -> list[str]:
    """Compiled modules whose extension is older than their source (rebuild: ``make deps``)."""
    out = []
    for name in names:
        origin = _spec_origin(name)
        if origin is None or origin.endswith(".py"):
            continue
        src = Path(origin).parent / (name.rsplit(".", 1)[1] + ".py")
        if src.exists() and src.stat().st_mtime > Path(origin).stat().st_mtime:
            out.append(name)
    return out


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' ``.py`` source ahead of their extension."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _ALL or not path:
            return None
        leaf = fullname.rsplit(".", 1)[1] + ".py"
        for d in path:
            f = os.path.join(d, leaf)
            if os.path.exists(f):
                return importlib.util.spec_from_file_location(fullname, f)
        return None


def use_source() -> None:
    """Import the compiled modules from their ``.py`` source from now on.

    Raises RuntimeError if one of them was already imported compiled (too late to switch).
    """
    done = [n for n, c in status().items() if c and n in sys.modules]
    if done:
        raise RuntimeError(f"already imported compiled: {', '.join(done)}")
    if not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder())
