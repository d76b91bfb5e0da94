"""The event bus: connect/unsubscribe, order, isolation (as a table and under hypothesis)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.modes.bus import EventBus


def test_connect_returns_an_idempotent_unsubscribe() -> None:
    bus: EventBus[int] = EventBus("t")
    seen: list[tuple[str, int]] = []
    unsub_a = bus.connect(lambda v: seen.append(("a", v)))
    bus.connect(lambda v: seen.append(("b", v)))
    bus.send(1)
    unsub_a()
    unsub_a()  # twice is harmless
    bus.send(2)
    assert seen == [("a", 1), ("b", 1), ("b", 2)]
    assert len(bus) == 1 and bus.sent == 2


def test_a_raising_subscriber_is_logged_counted_and_isolated(
        caplog: pytest.LogCaptureFixture) -> None:
    bus: EventBus[str] = EventBus("events")
    seen: list[str] = []

    def bad(v: str) -> None:
        raise KeyError(v)

    bus.connect(bad)
    bus.connect(seen.append)
    with caplog.at_level(logging.ERROR):
        bus.send("x")
        bus.send("y")
    assert seen == ["x", "y"]
    assert bus.errors == 2
    assert sum(bus.errors_by_target.values()) == 2
    assert "bad" in next(iter(bus.errors_by_target))
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]


def test_unsubscribing_during_send_does_not_skip_others() -> None:
    bus: EventBus[int] = EventBus("t")
    seen: list[str] = []
    unsub: list[object] = []

    def first(v: int) -> None:
        seen.append("first")
        unsub[0]()  # type: ignore[operator]

    unsub.append(bus.connect(first))
    bus.connect(lambda v: seen.append("second"))
    bus.send(1)
    bus.send(2)
    assert seen == ["first", "second", "second"]


@given(st.lists(st.booleans(), max_size=12), st.lists(st.integers(), max_size=20))
def test_every_healthy_subscriber_gets_every_value_in_order(fails: list[bool],
                                                            values: list[int]) -> None:
    bus: EventBus[int] = EventBus("prop")
    got: list[list[int]] = [[] for _ in fails]
    for i, fail in enumerate(fails):
        def target(v: int, i: int = i, fail: bool = fail) -> None:
            if fail:
                raise RuntimeError("boom")
            got[i].append(v)
        bus.connect(target)
    logging.disable(logging.CRITICAL)
    try:
        for v in values:
            bus.send(v)
    finally:
        logging.disable(logging.NOTSET)
    for i, fail in enumerate(fails):
        assert got[i] == ([] if fail else values)
    assert bus.errors == sum(fails) * len(values)
