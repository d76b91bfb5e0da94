"""Ground → aircraft (issue 17, acceptance 4): a fleet configuration reaches 50 aircraft.

Before: nothing flowed from the ground to the aircraft. Now the ground publishes one signed
fleet configuration (a satcom budget, the priority streams) for the whole fleet; 50 simulated
aircraft — each the real uplink (its own Ed25519 key, its own downlink state directory, its own
mode) on loopback — get it on their watermarks probe while the receiver is stopped and
restarted under them (links that come and go). Aircraft in flight defer it (the policy does not
let the configuration change in FLIGHT) and apply it when they land. At the end each aircraft
applied version 1 exactly once, in GROUND or MAINTENANCE, and the ground shows it per aircraft.
Also: a forged or misaddressed document is refused and never applied.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.modes.policy import Mode, PolicyTable
from appliance.settings import Settings
from appliance.sync.downlink import Downlink, FleetConfig
from appliance.sync.identity import AircraftKey
from appliance.sync.queue import OutboxReader
from appliance.sync.uplink import Uplink
from ground_receiver.downlink import Downlink as GroundDownlink
from ground_receiver.downlink import public_b64
from ground_receiver.identity import KeyRing

from .helpers import Journal, Receiver

N = 50
CONFIG = {"link_budgets": {"satcom": 3_000_000}, "priority_streams": ["orders", "usage",
                                                                      "events", "flight_track"]}


def _sync(tmp: Path, url: str, key_file: Path, ground_pub: str) -> Any:
    link = {"interfaces": ["lo"]}
    return Settings(aircraft_id="X", data_dir=tmp, serial={"enabled": False}, sync={
        "enabled": True, "receiver_url": url, "signing_key_file": str(key_file),
        "ground_public_key": ground_pub, "links": {"gatelink": link, "satcom": link},
        "retry_initial_s": 0.05, "retry_max_s": 0.3, "retry_attempts": 2,
        "probe_interval_s": 0.3, "request_timeout_s": 5.0, "connect_timeout_s": 1.0,
        "summaries": False}).sync


@pytest.mark.timeout(240)
def test_fleet_config_reaches_50_aircraft_over_links_that_come_and_go(tmp_path: Path) -> None:
    ground_key = Ed25519PrivateKey.generate()
    j = Journal(tmp_path / "journal.db")  # empty outbox shared by all: the uplinks only probe
    reader = OutboxReader(j.reader)
    policy = PolicyTable.default()
    rx = Receiver(f"sqlite:///{tmp_path}/ground.db", downlink_key_file=None)
    ground = GroundDownlink(rx.engine, ground_key)
    ring = KeyRing(rx.engine)
    modes: dict[str, Mode] = {}
    uplinks: dict[str, Uplink] = {}
    applied_calls: dict[str, list[FleetConfig]] = {}
    for i in range(N):
        ac = f"F-T{i:03d}"
        key_file = tmp_path / f"{ac}.pem"
        ring.register(ac, AircraftKey.generate(key_file).public_b64)
        modes[ac] = Mode.FLIGHT if i % 3 == 0 else (Mode.MAINTENANCE if i % 3 == 1 else Mode.GROUND)
        up = Uplink(_sync(tmp_path, rx.url, key_file, public_b64(ground_key)), ac, j.writer,
                    reader, policy, lambda ac=ac: modes[ac], downlink_dir=tmp_path / ac)
        assert up.downlink is not None
        calls = applied_calls[ac] = []
        inner = up.downlink.on_config
        up.downlink.on_config = lambda c, inner=inner, calls=calls: (calls.append(c), inner(c))
        uplinks[ac] = up
    versions = ground.publish("config", CONFIG)
    assert versions == {ac: 1 for ac in uplinks}

    async def run() -> None:
        tasks = [asyncio.create_task(u.run()) for u in uplinks.values()]
        try:
            for cycle in range(3):  # the links come and go: the receiver up, then down
                await rx.start()
                await asyncio.sleep(1.2)
                await rx.stop()
                await asyncio.sleep(0.4)
                if cycle == 1:  # the aircraft in flight land: the deferred config applies now
                    for ac, m in modes.items():
                        if m is Mode.FLIGHT:
                            dl = uplinks[ac].downlink
                            assert dl is not None and "config" in dl.deferred, ac
                            assert not applied_calls[ac], f"{ac} applied it in flight"
                            modes[ac] = Mode.GROUND
                            uplinks[ac].on_mode("FLIGHT", "GROUND", 0.0)
            await rx.start()
            for _ in range(100):
                st = ground.status()
                if all(st.get(ac, {}).get("config", {}).get("applied_version") == 1
                       for ac in uplinks):
                    break
                await asyncio.sleep(0.2)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            for u in uplinks.values():
                await u.close(1.0)
            await rx.stop()

    asyncio.run(run())
    status = ground.status()
    for ac, up in uplinks.items():
        st = status[ac]["config"]
        assert st["applied_version"] == 1 and st["status"] == "applied", (ac, st)
        assert st["applied_mode"] in ("GROUND", "MAINTENANCE"), (ac, st)
        assert len(applied_calls[ac]) == 1, f"{ac} applied the config {len(applied_calls[ac])}x"
        assert up.budgets["satcom"].per_hour == 3_000_000
        assert "flight_track" in up._priority_streams()
        saved = json.loads((tmp_path / ac / "config.json").read_text())
        assert saved["version"] == 1 and saved["mode"] in ("GROUND", "MAINTENANCE")
    assert ground.pending("F-T000") == []
    j.close()


def test_forged_or_misaddressed_documents_are_refused(tmp_path: Path) -> None:
    ground_key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    from ground_receiver.db import init_db, make_engine
    engine = make_engine(f"sqlite:///{tmp_path}/g.db")
    init_db(engine)
    real = GroundDownlink(engine, ground_key)
    fake = GroundDownlink(engine, forger)
    dl = Downlink("F-A", tmp_path / "dl", public_b64(ground_key), PolicyTable.default(),
                  lambda: Mode.GROUND)
    fake.publish("config", {"link_budgets": {"satcom": 1}}, ["F-A"])
    real.publish("config", {"link_budgets": {"satcom": 2}}, ["F-B"])
    docs = fake.pending("F-A") + real.pending("F-B")
    acks = dl.take(docs)
    assert [a.status for a in acks] == ["refused", "refused"]
    assert "signature" in acks[0].detail and "not F-A" in acks[1].detail
    assert dl.version("config") == 0 and not (tmp_path / "dl" / "config.json").exists()
    real.publish("config", {"link_budgets": {"satcom": "lots"}}, ["F-A"])  # v2: bad body
    acks = dl.take(real.pending("F-A"))
    assert acks[0].status == "refused" and "bad fleet configuration" in acks[0].detail
    doc = real.pending("F-A")[0]
    doc["body"] = {"link_budgets": {"satcom": 5}}  # altered on the way
    assert dl.take([doc])[0].status == "refused"
    assert base64.b64decode(public_b64(ground_key))  # the key the aircraft is configured with
