"""The appliance: the cabin server's one long-running service (see DESIGN.md)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    #: The installed distribution's version (``pyproject.toml``'s at build/install time).
    __version__ = _dist_version("appliance")
except PackageNotFoundError:  # a bare source tree on sys.path, never installed
    __version__ = "0.0.0+unknown"
