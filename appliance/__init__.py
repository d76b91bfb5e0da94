"""The appliance: the cabin server's one long-running service (see DESIGN.md)."""

import os as _os
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    #: The installed distribution's version (``pyproject.toml``'s at build/install time).
    __version__ = _dist_version("appliance")
except PackageNotFoundError:  # a bare source tree on sys.path, never installed
    __version__ = "0.0.0+unknown"

if _os.environ.get("APPLIANCE_PURE_PYTHON") == "1":  # the hot path's source, not its compiled build
    from . import compiled as _compiled

    _compiled.use_source()
