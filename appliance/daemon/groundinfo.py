"""What the appliance tells the ground's fleet view about itself, beside its backlog.

:func:`ground_info` returns the function the sync service calls (on the event loop, at each
status refresh) for the ``status`` object of every batch (wire format v1, ``ground_receiver.wire``):
``{"bite": {subsystem: "green"|"amber"|"red", "overall": ...}, "software": "<appliance version>",
"content": "<content version>" or absent}``. Subsystem names are cut to 64 characters and at
most 63 subsystems plus ``overall`` are sent (the receiver's bounds).
"""

from __future__ import annotations

from collections.abc import Callable

from .. import __version__
from .bite import Bite

__all__ = ["ground_info"]

_MAX_SUBSYSTEMS = 63


def ground_info(bite: Bite, content_version: Callable[[], str | None],
                software: str = __version__) -> Callable[[], dict[str, object]]:
    """The status source over ``bite`` and ``content_version()`` (None: no content installed)."""
    def info() -> dict[str, object]:
        assessed = bite.assess()
        colours = {k[:64]: str(v["state"])[:64] for k, v in assessed.items()
                   if k != "overall" and isinstance(v, dict) and "state" in v}
        out_bite = dict(sorted(colours.items())[:_MAX_SUBSYSTEMS])
        out_bite["overall"] = str(assessed.get("overall", "red"))
        out: dict[str, object] = {"bite": out_bite, "software": software[:64]}
        content = content_version()
        if content:
            out["content"] = content[:64]
        return out
    return info
