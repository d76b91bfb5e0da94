"""The links' flight-hour budgets across restarts and mode changes (table ``sync_link_budget``).

The budget itself (:class:`~appliance.sync.policy.FlightHourBudget`) is pure; here it is read
at start, saved after each batch over a budgeted link and at stop, and moved on by mode changes:
a take-off starts every budget afresh, a landing ends the flight hours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..modes.policy import Mode
from .policy import FlightHourBudget
from .tables import sync_link_budget

__all__ = ["budget_writer", "load_budgets", "mode_changed"]


def mode_changed(budget: FlightHourBudget, previous: str | None, current: str,
                 now: float) -> None:
    """A take-off starts the flight-hour budget afresh; a landing ends the flight hours.

    ``previous`` and ``current`` are :class:`~appliance.modes.policy.Mode` values (or their text).
    """
    if current == Mode.FLIGHT and previous != Mode.FLIGHT:
        budget.take_off(now)
    elif previous == Mode.FLIGHT and current != Mode.FLIGHT:
        budget.landed(now)


def budget_writer(link: str, budget: FlightHourBudget) -> Callable[[Connection], None]:
    """Writer function: save ``budget`` of ``link`` as it is now."""
    values = {"anchor": budget.anchor, "window": budget.window, "used": budget.used}

    def write(conn: Connection) -> None:
        conn.execute(sqlite_insert(sync_link_budget).values(link=link, **values)
                     .on_conflict_do_update(index_elements=["link"], set_=values))
    return write


def load_budgets(engine: Engine, budgets: Mapping[str, FlightHourBudget]) -> None:
    """Restore the saved state of ``budgets`` (by link name); blocking, call from a thread."""
    with engine.connect() as conn:
        for row in conn.execute(sync_link_budget.select()):
            b = budgets.get(str(row.link))
            if b is not None:
                b.anchor, b.window, b.used = float(row.anchor), int(row.window), int(row.used)
