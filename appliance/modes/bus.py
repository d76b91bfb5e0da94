"""An event bus: ``unsub = bus.connect(target)``; ``bus.send(ev)`` calls every target, isolated.

As Home Assistant's ``helpers/dispatcher.py``: a subscriber is a plain callable; ``connect``
returns the function that removes it again (calling it twice is harmless); ``send`` calls the
targets connected at the time of the call, in connection order, each inside its own
``try/except``: an exception is logged with its traceback and counted (``errors``, and per target
in ``errors_by_target``), never raised into the producer, so a broken subscriber cannot stop the
avionics chain that sends.

Pure: no I/O but logging; no asyncio (a target that must reach the loop does so itself, e.g. with
``queue.put_nowait`` or ``loop.call_soon``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["EventBus", "Unsubscribe"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Unsubscribe = Callable[[], None]


def _target_name(target: Callable[..., object]) -> str:
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    module = getattr(target, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class EventBus(Generic[T]):
    """Subscribers of one kind of value (events, or the evaluation tick's card time)."""

    def __init__(self, name: str) -> None:
        """``name`` appears in the log line of a failing subscriber and in metrics."""
        self.name = name
        self._targets: list[Callable[[T], None]] = []
        self.errors = 0  #: subscriber exceptions caught so far
        self.errors_by_target: Counter[str] = Counter()
        self.sent = 0  #: values sent so far

    def connect(self, target: Callable[[T], None]) -> Unsubscribe:
        """Subscribe ``target``; returns the function that unsubscribes it (idempotent)."""
        self._targets.append(target)

        def unsubscribe() -> None:
            try:
                self._targets.remove(target)
            except ValueError:
                pass  # already gone
        return unsubscribe

    def __len__(self) -> int:
        """How many subscribers are connected."""
        return len(self._targets)

    def send(self, value: T) -> None:
        """Call every subscriber with ``value``; an exception is logged and counted, not raised."""
        self.sent += 1
        for target in tuple(self._targets):
            try:
                target(value)
            except Exception:  # isolation boundary: one subscriber never stops the producer
                name = _target_name(target)
                self.errors += 1
                self.errors_by_target[name] += 1
                log.exception("%s: subscriber %s failed on %r", self.name, name, value)
