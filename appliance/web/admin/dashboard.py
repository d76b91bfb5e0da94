"""The maintenance dashboard page: one self-contained HTML file (no external assets)."""

from __future__ import annotations

from importlib import resources

__all__ = ["dashboard_html"]


def dashboard_html() -> str:
    """The page's HTML, read from the package (``static/dashboard.html``)."""
    return resources.files(__package__).joinpath("static/dashboard.html").read_text()
