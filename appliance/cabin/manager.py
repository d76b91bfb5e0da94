"""CabinNetwork: the access points as one part of the service (built by ``appliance.daemon.build``).

``await start()``, ``await stop()``, ``status()`` (BITE: ``{"state": green|amber|red, "reason",
...}``), ``set_mode(mode)`` (also fed by the chain's ModeChanged events), ``submit(...)`` (admin
jobs), and views for the admin API.

One asyncio task per access point does everything that touches it, one thing at a time — so a
device never gets two commands (two jobs) at once: poll (radio, channel, clients, errors, the
running configuration), drop stale jobs, run the next queued job (the task is then the device's
*busy holder*, with the job's expected end), or — if the device does not run the current mode's
desired configuration and nothing is queued — queue a *reconcile* job. Jobs of an unreachable
device wait in the queue until it answers again. After a failed reconcile job the next one waits
(exponential backoff); an admin ``apply`` holds reconciliation off that device for ``hold_s``.

At start the inventory is written, and jobs left ``running`` by a stop or a power cut are queued
again: every job checks the device first (its key among the device's recent tags means the effect
is there), so none takes effect twice. Queued jobs older than ``job_stale_after_s``, reconcile
jobs of another mode, and jobs of devices no longer configured become ``stale``.

Device states: unknown (not polled yet), ok, converging (reachable, not in the desired
configuration yet), held (not in it, but an admin change holds reconciliation off), not_ready
(answers, booting), unreachable (``unreachable_after`` polls in a row without an answer),
needs_attention (credentials refused).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ..modes.bus import Unsubscribe
from ..modes.events import Event, ModeChanged
from ..modes.policy import Mode
from ..modes.state import FlightState
from ..settings import CabinNetworkSettings
from .driver import AccessPoint
from .errors import AuthFailedError, BusyError, DeviceError, NotReadyError
from .events import CabinEvent, DeviceStateChanged, JobFinished, ModeApplied
from .model import ConfigSpec, DeviceStatus
from .runner import JobRunner
from .store import Job, JobState, JobStore

__all__ = ["CabinNetwork", "Device", "Holder"]

log = logging.getLogger(__name__)
INVENTORY_REFRESH_S = 60.0


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a device: the running job, since when and its expected end (epoch s)."""

    job_id: int
    key: str
    kind: str
    requested_by: str
    since: float
    expected_end: float


class Device:
    """One access point at run time: its drivers, last poll, state, queue and holder."""

    def __init__(self, name: str, ap: AccessPoint, fresh: Callable[[], AccessPoint], address: str,
                 background: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Hold the drivers.

        ``fresh()`` makes a new driver (new session) for reachability checks; ``background``
        runs alongside (the in-process simulator's life).
        """
        self.name, self.ap, self.fresh, self.address = name, ap, fresh, address
        self.background = background
        self.reachable: bool | None = None
        self.poll_failures = 0
        self.status: DeviceStatus | None = None
        self.last_seen: float | None = None
        self.last_error: str | None = None
        self.attention: str | None = None
        self.not_ready: str | None = None
        self.holder: Holder | None = None
        self.queue: list[Job] = []
        self.hold_until = 0.0  #: monotonic s; reconciliation waits until then
        self.reconcile_failures = 0
        self.reconcile_not_before = 0.0  #: monotonic s
        self.not_converged_since: float | None = None  #: monotonic s
        self.converged_at: float | None = None  #: epoch s
        self.state = "unknown"
        self.reason = "not polled yet"
        self.persisted_at = -INVENTORY_REFRESH_S
        self.wake = asyncio.Event()


class CabinNetwork:
    """The cabin network service (see the module doc)."""

    def __init__(self, cfg: CabinNetworkSettings, devices: list[Device], store: JobStore,
                 desired: dict[Mode, ConfigSpec], mode: Mode = Mode.GROUND, *,
                 flight: FlightState | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        """Nothing runs before :meth:`start`.

        ``flight``: the flight state; its mode is read at :meth:`start`, and a ModeChanged on
        its bus drives :meth:`set_mode` from then on.
        """
        self.cfg = cfg
        self.devices = {d.name: d for d in devices}
        self.store = store
        self.desired = desired
        self.mode = mode
        self.mode_changed_at = wall()
        self._flight = flight
        self._unsubscribe: Unsubscribe | None = None
        self.clock, self.wall = clock, wall
        self.runner = JobRunner(cfg, on_attempt=self._on_attempt, clock=clock, wall=wall)
        self.events: collections.deque[CabinEvent] = collections.deque(maxlen=200)
        self.listeners: list[Callable[[CabinEvent], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._holders: dict[int, Device] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Write the inventory, recover the job queue, start one task per device."""
        if self._flight is not None:
            self.mode = self._flight.mode
        await self.store.sync_inventory([(d.name, d.ap.driver, d.address)
                                         for d in self.devices.values()])
        for job in await asyncio.to_thread(self.store.load_active):
            dev = self.devices.get(job.device)
            if dev is None:
                await self._finish(job, JobState.STALE, None, "the device is no longer configured")
                continue
            if job.state is JobState.RUNNING:
                await self.store.requeue(job, "interrupted by a restart; resumed (device checked "
                                              "first)")
            dev.queue.append(job)
        if self._flight is not None:
            self._unsubscribe = self._flight.subscribe(self.on_event)
        for dev in self.devices.values():
            self._tasks.append(asyncio.create_task(self._device_loop(dev), name=f"wap-{dev.name}"))
            if dev.background is not None:
                self._tasks.append(asyncio.create_task(dev.background(), name=f"wap-sim-{dev.name}"))

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the device tasks (a running job stays ``running``: resumed at the next start)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks.clear()
        for dev in self.devices.values():
            with contextlib.suppress(Exception):
                await dev.ap.close()

    # ------------------------------------------------------------------ inputs
    def on_event(self, ev: Event) -> None:
        """A flight-state subscriber: a ModeChanged sets the mode."""
        if isinstance(ev, ModeChanged):
            self.set_mode(ev.current)

    def set_mode(self, mode: Mode) -> None:
        """Take ``mode``: its desired configuration is reconciled on every device from now."""
        if mode is self.mode:
            return
        previous, self.mode = self.mode, mode
        self.mode_changed_at = self.wall()
        log.info("cabin network: mode %s -> %s", previous, mode)
        self._emit(ModeApplied(str(previous), str(mode), self.mode_changed_at))
        for dev in self.devices.values():
            dev.reconcile_failures, dev.reconcile_not_before = 0, 0.0
            dev.wake.set()

    async def submit(self, device: str, kind: str, spec: dict[str, Any] | None, requested_by: str,
                     key: str | None = None, hold_s: float | None = None) -> tuple[Job, bool]:
        """Queue an ``apply`` or ``reboot`` job; returns (job, created).

        Raises KeyError (unknown device), ValueError (bad spec or kind), KeyConflict (the key
        names another job).
        """
        dev = self.devices[device]
        if kind not in ("apply", "reboot"):
            raise ValueError(f"unknown job kind {kind!r}")
        body = ConfigSpec.from_json(spec or {}).to_json() if kind == "apply" else {}
        if kind == "apply" and not body:
            raise ValueError("an apply job needs at least one configuration field")
        job, created = await self.store.submit(device, kind, key or f"{kind}:{device}:{uuid.uuid4()}",
                                               body, requested_by, None)
        known = next((j for j in dev.queue if j.id == job.id), None)
        if known is not None:
            return known, False
        if created:
            dev.queue.append(job)
            if kind == "apply":
                dev.hold_until = self.clock() + (self.cfg.admin_hold_s if hold_s is None else hold_s)
            dev.wake.set()
        return job, created

    # ------------------------------------------------------------------ the device task
    async def _device_loop(self, dev: Device) -> None:
        while True:
            try:
                await self._step(dev)
            except asyncio.CancelledError:
                raise
            except Exception:  # supervisor boundary: log, wait, go on
                log.exception("%s: device task failed; again in %.1f s", dev.name,
                              self.cfg.poll_interval_s)
                await asyncio.sleep(self.cfg.poll_interval_s)

    async def _step(self, dev: Device) -> None:
        dev.wake.clear()
        await self._poll(dev)
        job = await self._next_job(dev)
        if job is None:
            job = await self._maybe_reconcile(dev)
        if job is not None and dev.reachable and dev.attention is None:
            await self._run(dev, job)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dev.wake.wait(), self.cfg.poll_interval_s)

    async def _poll(self, dev: Device) -> None:
        try:
            st = await dev.ap.status()
        except AuthFailedError as e:
            dev.reachable, dev.attention, dev.last_error = True, e.detail, e.detail
        except BusyError as e:
            dev.reachable, dev.not_ready, dev.poll_failures = True, e.detail, 0
        except NotReadyError as e:
            dev.poll_failures += 1
            dev.last_error = e.detail
            if dev.reachable is None or dev.poll_failures >= self.cfg.unreachable_after:
                dev.reachable = False
        except DeviceError as e:
            dev.poll_failures += 1
            dev.last_error = e.detail
        else:
            dev.status, dev.reachable, dev.poll_failures = st, True, 0
            dev.attention, dev.not_ready = None, None if st.ready else "booting"
            dev.last_seen = self.wall()
        await self._update(dev)

    def converged(self, dev: Device) -> bool:
        """True if ``dev`` answers and runs the current mode's desired configuration (kept)."""
        spec = self.desired.get(self.mode)
        st = dev.status
        return bool(dev.reachable and st is not None and st.pending is None
                    and (spec is None or spec.matches(st.config)))

    async def _update(self, dev: Device) -> None:
        spec = self.desired.get(self.mode)
        converged = self.converged(dev)
        if converged:
            if dev.not_converged_since is not None or dev.converged_at is None:
                dev.converged_at = self.wall()
            dev.not_converged_since = None
        elif dev.not_converged_since is None:
            dev.not_converged_since = self.clock()
        if dev.attention:
            state, reason = "needs_attention", dev.attention
        elif dev.reachable is None:
            state, reason = "unknown", "not polled yet"
        elif not dev.reachable:
            state, reason = "unreachable", dev.last_error or "no answer"
        elif dev.not_ready:
            state, reason = "not_ready", dev.not_ready
        elif not converged and spec is not None and dev.status is not None:
            diff = spec.diff(dev.status.config)
            held = dev.hold_until - self.clock()
            state = "held" if held > 0 else "converging"
            reason = (f"{self.mode}: " + ", ".join(f"{k} {a}->{w}" for k, (a, w) in diff.items())
                      if diff else "a change awaits confirmation")
            if held > 0:
                reason += f"; reconciliation held {held:.0f} s more after an admin change"
        else:
            state, reason = "ok", f"in the {self.mode} configuration" if spec else "reachable"
        previous = dev.state
        dev.state, dev.reason = state, reason
        if previous != state:
            log.info("%s: %s -> %s (%s)", dev.name, previous, state, reason)
            self._emit(DeviceStateChanged(dev.name, previous, state, reason, self.wall()))
        if previous != state or self.clock() - dev.persisted_at >= INVENTORY_REFRESH_S:
            dev.persisted_at = self.clock()
            await self.store.device_state(dev.name, state, reason, dev.last_seen,
                                          None if dev.status is None else dev.status.to_json(),
                                          previous)

    def _stale_reason(self, job: Job) -> str | None:
        if job.kind == "reconcile":
            if job.mode != str(self.mode):
                return f"superseded: the mode is now {self.mode}"
            spec = self.desired.get(self.mode)
            if spec is None or spec.to_json() != job.spec:
                return "superseded: the desired configuration changed"
        if self.wall() - job.created > self.cfg.job_stale_after_s:
            return f"queued for more than {self.cfg.job_stale_after_s:.0f} s"
        return None

    async def _next_job(self, dev: Device) -> Job | None:
        while dev.queue:
            job = dev.queue[0]
            why = self._stale_reason(job)
            if why is None:
                return job
            dev.queue.pop(0)
            await self._finish(job, JobState.STALE, None, why)
        return None

    async def _maybe_reconcile(self, dev: Device) -> Job | None:
        spec = self.desired.get(self.mode)
        now = self.clock()
        st = dev.status
        if (spec is None or dev.attention or dev.queue or now < dev.hold_until
                or now < dev.reconcile_not_before or self.converged(dev)
                or (dev.reachable and st is None)):
            return None
        if not dev.reachable and st is not None and st.pending is None and spec.matches(st.config):
            return None  # it ran the wanted configuration when last seen: check when it is back
        key = f"reconcile:{dev.name}:{self.mode}:{spec.digest()}:{uuid.uuid4().hex[:12]}"
        job, _ = await self.store.submit(dev.name, "reconcile", key, spec.to_json(), "reconciler",
                                         str(self.mode))
        dev.queue.append(job)
        return job

    async def _run(self, dev: Device, job: Job) -> None:
        expected = self.wall() + self.runner.estimate_s(job.kind)
        dev.holder = Holder(job.id, job.key, job.kind, job.requested_by, self.wall(), expected)
        self._holders[job.id] = dev
        try:
            await self.store.mark_running(job, expected)
            outcome = await self.runner.run(dev.ap, dev.fresh, job)
            await self._finish(job, outcome.state, outcome.failure, outcome.detail)
        finally:
            dev.holder = None
            self._holders.pop(job.id, None)
        with contextlib.suppress(ValueError):
            dev.queue.remove(job)
        if outcome.failure == "auth_failed":
            dev.attention = outcome.detail
        if job.kind == "reconcile":
            if outcome.state is JobState.DONE:
                dev.reconcile_failures = 0
            else:
                dev.reconcile_failures += 1
                wait = min(self.cfg.reconcile_backoff_max_s,
                           self.cfg.reconcile_backoff_s * 2 ** (dev.reconcile_failures - 1))
                dev.reconcile_not_before = self.clock() + wait

    async def _on_attempt(self, job: Job, attempts: int, expected_end: float) -> None:
        await self.store.attempt(job, attempts, expected_end)
        dev = self._holders.get(job.id)
        if dev is not None and dev.holder is not None:
            dev.holder = dataclasses.replace(dev.holder, expected_end=expected_end)

    async def _finish(self, job: Job, state: str, failure: str | None, detail: str) -> None:
        await self.store.finish(job, state, failure, detail)
        self._emit(JobFinished(job.id, job.device, job.kind, job.key, state, failure, detail,
                               self.wall()))

    def _emit(self, ev: CabinEvent) -> None:
        self.events.append(ev)
        for fn in self.listeners:
            fn(ev)

    # ------------------------------------------------------------------ views
    def device_view(self, dev: Device) -> dict[str, Any]:
        """One access point for the admin API: state, last poll, desired vs actual, holder, queue."""
        st, spec = dev.status, self.desired.get(self.mode)
        h = dev.holder
        return {
            "name": dev.name, "driver": dev.ap.driver, "address": dev.address,
            "state": dev.state, "reason": dev.reason, "reachable": dev.reachable,
            "last_seen": dev.last_seen, "last_error": dev.last_error,
            "status": None if st is None else st.to_json(),
            "desired": None if spec is None else spec.to_json(),
            "differences": {} if st is None or spec is None else
            {k: {"actual": a, "desired": w} for k, (a, w) in spec.diff(st.config).items()},
            "converged": self.converged(dev), "converged_at": dev.converged_at,
            "busy": None if h is None else dataclasses.asdict(h),
            "queued": [j.id for j in dev.queue if j.state is JobState.QUEUED],
            "reconcile_hold_s": round(max(0.0, dev.hold_until - self.clock()), 1),
            "reconcile_backoff_s": round(max(0.0, dev.reconcile_not_before - self.clock()), 1),
            "driver_stats": dev.ap.stats.as_dict()}

    def devices_view(self) -> list[dict[str, Any]]:
        """Every access point (see :meth:`device_view`)."""
        return [self.device_view(d) for d in self.devices.values()]

    def busy_view(self) -> list[dict[str, Any]]:
        """The busy holders: device, job, kind, requested by, since and expected end (epoch s)."""
        return [{"device": d.name, **dataclasses.asdict(d.holder)}
                for d in self.devices.values() if d.holder is not None]

    def active_jobs(self) -> list[dict[str, Any]]:
        """Queued and running jobs of every device (from memory)."""
        return [j.as_dict() for d in self.devices.values() for j in d.queue]

    def status(self) -> dict[str, Any]:
        """BITE: ``{"state": green|amber|red, "reason", "mode", counts, names}``."""
        devs = list(self.devices.values())
        n = len(devs)
        unreachable = [d.name for d in devs if d.reachable is False]
        attention = [d.name for d in devs if d.attention]
        converged = [d.name for d in devs if self.converged(d)]
        late = [d.name for d in devs if d.reachable and d.not_converged_since is not None
                and d.state != "held"
                and self.clock() - d.not_converged_since > self.cfg.converge_grace_s]
        running = sum(1 for d in devs if d.holder is not None)
        queued = sum(1 for d in devs for j in d.queue if j.state is JobState.QUEUED)
        if not self.cfg.enabled:
            state, reason = "green", "cabin network management disabled"
        elif n == 0:
            state, reason = "green", "no access points configured"
        elif len(unreachable) * 2 > n:
            state, reason = "red", f"{len(unreachable)} of {n} access points unreachable"
        elif attention:
            state, reason = "amber", "needs attention (credentials refused): " + ", ".join(attention)
        elif unreachable:
            state, reason = "amber", "unreachable: " + ", ".join(unreachable)
        elif late:
            state, reason = "amber", (f"not in the {self.mode} configuration after "
                                      f"{self.cfg.converge_grace_s:.0f} s: " + ", ".join(late))
        else:
            state, reason = "green", f"{len(converged)} of {n} access points in the {self.mode} " \
                                     "configuration"
        return {"state": state, "reason": reason, "mode": str(self.mode), "devices": n,
                "converged": len(converged), "unreachable": unreachable,
                "needs_attention": attention, "jobs": {"running": running, "queued": queued}}
