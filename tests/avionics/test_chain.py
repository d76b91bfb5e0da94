"""The chain over the real recording: the truth, and robustness to faults (in memory, fast)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from appliance.avionics.chain import AvionicsChain
from appliance.avionics.replay import replay
from appliance.modes.policy import Mode
from firmware_bridge.labels import LabelTable

TAKEOFF = dt.datetime(2024, 7, 6, 6, 59, 17, tzinfo=dt.UTC).timestamp()
LANDING = dt.datetime(2024, 7, 6, 7, 58, 43, tzinfo=dt.UTC).timestamp()


def modes(events: list) -> list[tuple[str | None, str, float, str]]:
    return [(e.previous, e.current, e.utc, e.time_source) for e in events if e.kind == "mode"]


@pytest.mark.parametrize("faults", [
    [],
    ["garbage=0.05", "parity=0.02", "wow-glitch=07:31:00", "dropout=airground@07:29:00/30",
     "ncd=computed_airspeed@07:30:50/20"],
    ["dropout=airground+speeds@07:20:00/120", "wow-glitch=07:10:00", "wow-glitch=07:40:00"],
])
def test_real_flight_transitions(flight_path: Path, faults: list[str]) -> None:
    res = replay(flight_path, faults)
    m = modes(res.events)
    assert [(a, b) for a, b, _, _ in m] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    assert abs(m[0][2] - TAKEOFF) <= 10 and abs(m[1][2] - LANDING) <= 10
    assert all(src == "avionics" for *_, src in m)


def test_without_debounce_the_recording_glitch_would_flip(flight_path: Path) -> None:
    """The harness can fail: with no persistence, debounce or plausibility, glitches flip the mode.

    The raw data's FL350 glitch and an injected one produce extra transitions.
    """
    from appliance.modes.airground import AirGroundConfig

    naive = AirGroundConfig(to_air_s=0, to_ground_s=0, max_ground_cas_kt=1e9,
                            max_ground_gs_kt=1e9, discrete_debounce_s=0)
    res = replay(flight_path, ["wow-glitch=07:31:00"], ag_config=naive)
    assert len(modes(res.events)) > 2


def test_maintenance_only_on_ground() -> None:
    chain = AvionicsChain(LabelTable.default())
    assert chain.set_maintenance(True, "test") is False  # air/ground unknown
    from appliance.modes.airground import AirGround, AirGroundState

    chain.ag = AirGroundState(AirGround.GROUND)
    events: list = []
    chain.subscribe(events.append)
    assert chain.set_maintenance(True, "cabin check") is True
    assert chain.mode is Mode.MAINTENANCE and events[-1].current == "MAINTENANCE"


def test_card_reset_restarts_card_time() -> None:
    """After the card's clock goes back (a card reboot), new values are fresh, not stale."""
    from appliance.avionics.params import Parameter, Validity

    chain = AvionicsChain(LabelTable.default())

    def alt(t: float) -> Parameter:
        return Parameter("pressure_altitude", 1000.0, "ft", Validity.VALID, t, "card")

    chain.feed([alt(4000.0), alt(4000.1)])
    chain.feed([alt(120.0)])  # the card rebooted
    assert chain.store.now == 120.0
    assert chain.store.value("pressure_altitude") == 1000.0
    chain.feed([alt(120.1)])
    assert chain.store.now == 120.1


def test_a_failing_subscriber_does_not_stop_the_avionics(flight_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that raises is logged and counted; the avionics go on.

    One subscriber raises on every event, one on every 1000th tick: the other subscribers still
    see both transitions of the real flight, and /metrics shows the count.
    """
    import logging

    from prometheus_client import CollectorRegistry, generate_latest

    from appliance.store.writer import WriterStats
    from appliance.web.admin.metrics import ApplianceCollector

    chain = AvionicsChain(LabelTable.default())
    calls = {"events": 0, "ticks": 0}

    def broken(ev: object) -> None:
        calls["events"] += 1
        raise RuntimeError("subscriber bug")

    def broken_tick(t: float) -> None:
        calls["ticks"] += 1
        if calls["ticks"] % 1000 == 0:
            raise ValueError("tick subscriber bug")

    chain.subscribe(broken)  # connected first: it runs before the replay's own subscriber
    chain.on_tick(broken_tick)
    with caplog.at_level(logging.ERROR, logger="appliance.modes.bus"):
        res = replay(flight_path, chain=chain)
    m = modes(res.events)
    assert [(a, b) for a, b, _, _ in m] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    assert abs(m[0][2] - TAKEOFF) <= 10 and abs(m[1][2] - LANDING) <= 10
    assert calls["events"] == len(res.events) > 2
    assert chain.events.errors == calls["events"]
    assert chain.ticks.errors == calls["ticks"] // 1000 > 0
    failures = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert len(failures) == chain.subscriber_errors
    assert failures[0].exc_info is not None and "subscriber bug" in str(failures[0].exc_info[1])

    # /metrics: the collector the admin app exposes, rendered as the exposition text
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ApplianceCollector(chain, WriterStats(), None, flight_path.parent))
    text = generate_latest(registry).decode()
    assert f'appliance_subscriber_errors_total{{bus="avionics.events"}} {chain.events.errors}.0' \
        in text
    assert f'appliance_subscriber_errors_total{{bus="avionics.ticks"}} {chain.ticks.errors}.0' \
        in text
