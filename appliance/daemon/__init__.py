"""The composition root: ``Daemon(settings).run()`` builds, starts, serves and stops every part.

``service.py`` holds the lifecycle (one ``AsyncExitStack``), ``build.py`` the construction of the
features with their routes, ``bite.py`` the built-in test. Nothing imports this package but the
command line (``appliance.cli``).
"""

from .bite import sync_bite
from .edge import run_loop
from .service import TICK_S, Daemon, watchdog_period

__all__ = ["TICK_S", "Daemon", "run_loop", "sync_bite", "watchdog_period"]
