"""Acceptance 2: a configuration that cuts the device off is reverted automatically.

One simulator process on its own loopback address. The manager connects from 127.0.0.1; an
admin job applies ``mgmt_allow = 10.0.0.0/8`` (and channel 40), which makes the device stop
answering it. The manager commits with a rollback timer, finds the device unreachable over a new
session, does not confirm, and the device rolls the change back by itself: the job fails as
``cut_off``, the device runs its previous configuration again and answers. A change that does not
cut the device off (channel 40 alone) is confirmed and kept.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from appliance.cabin.events import JobFinished
from appliance.cabin.setup import make_device
from appliance.settings import AccessPointSettings

from .helpers import GROUND_FLAGS, PASSWORD, Journal, SimProc, check_log, fast_settings, service, subnet


@pytest.mark.anyio
@pytest.mark.timeout(60)
async def test_a_change_that_cuts_the_device_off_is_rolled_back(tmp_path: Path,
                                                                 journal: Journal) -> None:
    sim = SimProc("ap1", f"{subnet()}.1", tmp_path, *GROUND_FLAGS)
    cfg = fast_settings(confirm_timeout_s=2.0)
    dev = make_device(AccessPointSettings(name="ap1", url=sim.url, password=PASSWORD), cfg)
    svc = service(cfg, [dev], journal)
    ends: list[JobFinished] = []
    svc.listeners.append(lambda ev: ends.append(ev) if isinstance(ev, JobFinished) else None)

    async def finished(key: str, timeout: float = 20.0) -> JobFinished:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            for ev in ends:
                if ev.key == key:
                    return ev
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {key} did not finish; device {dev.state}: {dev.reason}")

    try:
        sim.spawn()
        sim.wait_ready()
        await svc.start()
        await svc.submit("ap1", "apply", {"channel": 40}, "bob", "good")
        ok = await finished("good")
        assert ok.state == "done", ok
        st = sim.state()
        assert st is not None and st["config"]["channel"] == 40 and st["pending"] is None

        t0 = time.monotonic()
        await svc.submit("ap1", "apply", {"channel": 44, "mgmt_allow": ["10.0.0.0/8"]}, "bob", "bad")
        bad = await finished("bad")
        took = time.monotonic() - t0
        assert (bad.state, bad.failure) == ("failed", "cut_off"), bad
        assert "rolled back" in bad.detail
        st = sim.state()
        assert st is not None and st["pending"] is None
        assert st["config"]["mgmt_allow"] == ["127.0.0.0/8"] and st["config"]["channel"] == 40
        t1 = time.monotonic()
        while dev.state != "held" and time.monotonic() - t1 < 5:
            await asyncio.sleep(0.05)
        assert dev.state == "held", dev.reason  # answers again; the admin's channel 40 is held
        print(f"\ncut-off change failed and was rolled back in {took:.1f} s")
    finally:
        await svc.stop()
        status = sim.kill()
    assert status == 0, "the simulator saw two commands at once"
    records = sim.records()
    proof = check_log(records)
    assert proof["effects"]["good"] == {"commit": 1, "confirm": 1}
    assert proof["effects"]["bad"] == {"commit": 1, "rollback": 1}
    assert any(r.get("outcome") == "cut_off" and r["by"] == "bad" for r in records)
    assert proof["overlaps"] == 0 and proof["job_overlaps"] == []
    rollback = next(r for r in records if r.get("effect") == "rollback")
    assert rollback["why"] == "not confirmed in time"
