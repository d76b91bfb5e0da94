"""The job queue with the in-process twin: idempotency, restart recovery, staleness, outcomes."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from appliance.cabin.device import Faults, SimDevice
from appliance.cabin.events import JobFinished
from appliance.cabin.manager import CabinNetwork, Device
from appliance.cabin.model import ApConfig, ConfigSpec, Ssid
from appliance.cabin.runner import JobRunner
from appliance.cabin.sim_driver import SimulatedAccessPoint
from appliance.cabin.store import Job, JobStore, KeyConflict
from appliance.modes.policy import Mode

from .helpers import FLIGHT, Journal, fast_settings, service


def twin(name: str = "ap1", password: str = "pw", **faults: Any,
         ) -> tuple[SimDevice, Device, list[dict[str, Any]]]:
    log: list[dict[str, Any]] = []
    faults.setdefault("rng", random.Random(f"{name}-{sorted(faults.items())}"))  # repeatable draws
    sim = SimDevice(name, ApConfig(ssids=(Ssid("CREW"), Ssid("PAX", False))), password="pw",
                    faults=Faults(**faults), log=log.append)

    def make() -> SimulatedAccessPoint:
        return SimulatedAccessPoint(name, sim, "admin", password)
    return sim, Device(name, make(), make, f"sim:{name}", background=sim.run), log


def effects(log: list[dict[str, Any]], tag: str) -> list[str]:
    return [r["effect"] for r in log if r.get("tag") == tag]


async def until(cond: Any, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_submit_is_idempotent_by_key(journal: Journal) -> None:
    _, dev, _ = twin()
    svc = service(fast_settings(), [dev], journal)
    a, created_a = await svc.submit("ap1", "reboot", None, "bob", "k-1")
    b, created_b = await svc.submit("ap1", "reboot", None, "bob", "k-1")
    assert created_a and not created_b and a.id == b.id and len(dev.queue) == 1
    with pytest.raises(KeyConflict):
        await svc.submit("ap1", "apply", {"channel": 40}, "bob", "k-1")
    with pytest.raises(ValueError):
        await svc.submit("ap1", "apply", {}, "bob")
    with pytest.raises(KeyError):
        await svc.submit("nope", "reboot", None, "bob")


@pytest.mark.anyio
async def test_a_job_cut_between_commit_and_confirm_is_resumed_and_takes_effect_once(
        journal: Journal) -> None:
    sim, dev, log = twin()
    cfg = fast_settings(confirm_timeout_s=5.0)
    store = JobStore(journal.writer, journal.reader, "F-WAP")
    job, _ = await store.submit("ap1", "apply", "k-cut", ConfigSpec(channel=40).to_json(), "bob", None)
    # The old process got as far as the commit, then the power went.
    await store.mark_running(job, time.time() + 10)
    await dev.ap.put_config(ConfigSpec(channel=40).apply_to(sim.running), by="k-cut")
    await dev.ap.commit("k-cut", cfg.confirm_timeout_s)
    assert sim.pending is not None
    svc = service(cfg, [dev], journal)  # the restart: a new service on the same journal
    await svc.start()
    try:
        await until(lambda: not dev.queue)
    finally:
        await svc.stop()
    [row] = [r for r in await asyncio.to_thread(store.query, "ap1") if r["key"] == "k-cut"]
    assert row["state"] == "done" and row["resumed"] == 1, row
    assert "confirmed" in row["detail"]
    assert effects(log, "k-cut") == ["commit", "confirm"]


@pytest.mark.anyio
async def test_a_reboot_already_done_before_the_cut_is_not_done_again(journal: Journal) -> None:
    sim, dev, log = twin(boot_s=0.2)
    store = JobStore(journal.writer, journal.reader, "F-WAP")
    job, _ = await store.submit("ap1", "reboot", "k-rb", {}, "bob", None)
    await store.mark_running(job, time.time() + 10)
    life = asyncio.create_task(sim.run())
    await dev.ap.reboot("k-rb")  # sent by the old process, which died before writing "done"
    svc = service(fast_settings(), [Device("ap1", dev.ap, dev.fresh, "sim")], journal)
    await svc.start()
    try:
        await until(lambda: not svc.devices["ap1"].queue)
    finally:
        await svc.stop()
        life.cancel()
    [row] = [r for r in await asyncio.to_thread(store.query, "ap1") if r["key"] == "k-rb"]
    assert row["state"] == "done" and row["resumed"] == 1
    assert effects(log, "k-rb") == ["reboot"]


@pytest.mark.anyio
async def test_stale_jobs(journal: Journal) -> None:
    _, dev, _ = twin()
    store = JobStore(journal.writer, journal.reader, "F-WAP")
    cfg = fast_settings(job_stale_after_s=60)
    spec = ConfigSpec.from_json(FLIGHT).to_json()
    await store.submit("ap1", "reconcile", "r-old-mode", spec, "reconciler", "FLIGHT")
    old, _ = await store.submit("ap1", "reboot", "rb-old", {}, "bob", None)
    await store.submit("gone", "reboot", "rb-gone", {}, "bob", None)
    await journal.writer.run(lambda conn: conn.exec_driver_sql(
        f"UPDATE wap_job SET created = created - 3600 WHERE id = {old.id}"))
    svc = service(cfg, [dev], journal, mode=Mode.GROUND)
    ends: list[JobFinished] = []
    svc.listeners.append(lambda ev: ends.append(ev) if isinstance(ev, JobFinished) else None)
    await svc.start()
    try:
        await until(lambda: len(ends) >= 3)
    finally:
        await svc.stop()
    why = {e.key: (e.state, e.detail) for e in ends}
    assert why["rb-gone"] == ("stale", "the device is no longer configured")
    assert why["r-old-mode"] == ("stale", "superseded: the mode is now GROUND")
    assert why["rb-old"] == ("stale", "queued for more than 60 s")


def job(kind: str, key: str, spec: dict[str, Any] | None = None) -> Job:
    return Job(1, "ap1", kind, key, "queued", None, spec or {}, "test", time.time())


@pytest.mark.anyio
async def test_outcomes_are_classified() -> None:
    cfg = fast_settings(confirm_timeout_s=2.0, retry_attempts=20)
    runner = JobRunner(cfg)
    # busy and lossy: retried until done
    _, dev, log = twin(busy_p=0.3, loss=0.2)
    out = await runner.run(dev.ap, dev.fresh, job("apply", "k1", {"channel": 40}))
    assert out.state == "done", out
    assert effects(log, "k1").count("confirm") == 1
    # credentials refused: needs attention, not retried
    _, dev, log = twin(password="wrong")
    out = await runner.run(dev.ap, dev.fresh, job("apply", "k2", {"channel": 40}))
    assert (out.state, out.failure) == ("needs_attention", "auth_failed")
    assert sum(1 for r in log if r.get("path") == "/api/v1/login") == 1
    # refused by the device (too many SSIDs): failed, not retried
    sim, dev, _ = twin()
    sim.running = ApConfig(ssids=tuple(Ssid(f"S{i}") for i in range(8)))
    out = await runner.run(dev.ap, dev.fresh, job("apply", "k3", {"ssids": {"NINTH": True}}))
    assert (out.state, out.failure) == ("failed", "error") and "400" in out.detail
    # never answers: not ready, retried, then failed
    sim, dev, _ = twin()
    sim.up = False
    out = await JobRunner(fast_settings(retry_attempts=3)).run(dev.ap, dev.fresh, job("reboot", "k4"))
    assert (out.state, out.failure) == ("failed", "not_ready")


@pytest.mark.anyio
async def test_unreachable_device_keeps_its_job_queued_until_it_returns(journal: Journal) -> None:
    sim, dev, _ = twin()
    sim.up = False
    svc = service(fast_settings(), [dev], journal, mode=Mode.FLIGHT)
    await svc.start()
    try:
        await until(lambda: dev.state == "unreachable" and dev.queue)
        assert dev.queue[0].kind == "reconcile" and dev.queue[0].state == "queued"
        assert svc.status()["state"] == "red"
        sim.up = True
        await until(lambda: svc.converged(dev))
        assert svc.status()["state"] == "green"
    finally:
        await svc.stop()
    assert sim.running.channel == 44


@pytest.mark.anyio
async def test_poll_with_refused_credentials_needs_attention(journal: Journal) -> None:
    _, dev, _ = twin(password="wrong")
    svc: CabinNetwork = service(fast_settings(), [dev], journal)
    await svc.start()
    try:
        await until(lambda: dev.state == "needs_attention")
        st = svc.status()
        assert st["state"] == "amber" and st["needs_attention"] == ["ap1"]
    finally:
        await svc.stop()
