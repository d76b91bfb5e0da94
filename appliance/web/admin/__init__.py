"""The admin port's HTTP edge (maintenance network only).

Status, signals, journal, override, export, metrics, the dashboard, and the admin routes of the
sync, the cabin network and the intake.

``create_app(deps)`` builds the FastAPI app from :class:`AdminDeps`; ``require(auth, role)`` is the
dependency that guards a route. Each feature's routes live in their own module here (``sync.py``,
``cabin.py``, ``intake.py``) and take the service they need; domain errors are mapped to status
codes here, never in the features.
"""

from .app import AdminDeps, create_app, require

__all__ = ["AdminDeps", "create_app", "require"]
