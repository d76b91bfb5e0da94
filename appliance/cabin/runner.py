"""Running one job on one access point: retries with backoff, classified failures, confirm-or-revert.

:meth:`JobRunner.run` never raises a device error; it returns an :class:`Outcome`:

- ``not_ready`` errors (no answer, busy, booting, a change rolled back by a reboot) are retried
  with exponential backoff and jitter (tenacity; a device's ``retry_after_s`` hint is honoured),
  up to ``retry_attempts`` tries within ``job_deadline_s``; then the job *fails* (not_ready);
- ``auth_failed`` ends the job as *needs_attention* at once (not retried);
- anything else (rejected configuration, cut off, device error) *fails* it.

Every attempt starts by reading the device: if the job's key is among the device's recent tags,
its effect is already there (a lost answer, or a restart of the service mid-job) and the job is
done without sending it again — so a job never takes effect twice.

Configuration changes (kinds ``apply`` and ``reconcile``) are confirm-or-revert:

1. stage the candidate (the device's configuration with the job's spec applied) and commit it
   with ``confirm_timeout_s``: the device rolls back by itself unless confirmed in time;
2. check reachability over a *new* session and connection: the device answers and runs the change;
3. confirm. If the check does not succeed before the rollback deadline (less a margin), do not
   confirm: wait for the device's own rollback, verify it, and fail the job as ``cut_off`` (or
   retry it, if the device rebooted meanwhile: a reboot also rolls back).

Reboots: send it (tagged), then wait up to ``reboot_wait_s`` for a new boot id and ``ready``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from ..settings import CabinNetworkSettings
from .driver import AccessPoint
from .errors import (
    BusyError,
    ConflictError,
    CutOffError,
    DeviceError,
    NotReadyError,
    UnreachableError,
    classify,
)
from .model import ConfigSpec, DeviceStatus
from .store import Job, JobState

__all__ = ["JobRunner", "Outcome"]

log = logging.getLogger(__name__)
_STATE_OF = {"not_ready": JobState.FAILED, "auth_failed": JobState.NEEDS_ATTENTION,
             "cut_off": JobState.FAILED, "error": JobState.FAILED}


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended: ``state`` done | failed | needs_attention; ``failure`` its class or None."""

    state: JobState
    failure: str | None
    detail: str


class JobRunner:
    """Runs jobs (see the module doc); ``on_attempt(job, n, expected_end)`` is awaited per try."""

    def __init__(self, cfg: CabinNetworkSettings,
                 on_attempt: Callable[[Job, int, float], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        """Timing and retry limits from ``cfg`` (s)."""
        self.cfg = cfg
        self.on_attempt = on_attempt
        self.clock = clock
        self.wall = wall
        self._exp = (wait_exponential(multiplier=cfg.retry_initial_s, max=cfg.retry_max_s)
                     + wait_random(0, cfg.retry_initial_s))

    def estimate_s(self, kind: str) -> float:
        """How long one try of a ``kind`` job is expected to take at most (s)."""
        if kind == "reboot":
            return self.cfg.reboot_wait_s + self.cfg.request_timeout_s
        return self.cfg.confirm_timeout_s + 2 * self.cfg.request_timeout_s

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome is not None else None
        hint = exc.retry_after_s if isinstance(exc, NotReadyError) else 0.0
        return float(min(max(self._exp(rs), hint), self.cfg.retry_max_s))

    async def run(self, ap: AccessPoint, fresh: Callable[[], AccessPoint], job: Job) -> Outcome:
        """Run ``job`` on ``ap`` (``fresh()`` makes a new driver for the reachability check)."""
        cfg = self.cfg
        try:
            async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(NotReadyError),
                    stop=stop_after_attempt(cfg.retry_attempts) | stop_after_delay(cfg.job_deadline_s),
                    wait=self._wait, reraise=True):
                with attempt:
                    n = attempt.retry_state.attempt_number
                    if self.on_attempt is not None:
                        await self.on_attempt(job, job.attempts + 1,
                                              self.wall() + self.estimate_s(job.kind))
                    if n > 1:
                        log.info("%s: job %d (%s) try %d", ap.name, job.id, job.kind, n)
                    detail = await self._once(ap, fresh, job)
            return Outcome(JobState.DONE, None, detail)
        except DeviceError as e:
            failure = classify(e)
            log.warning("%s: job %d (%s) %s: %s", ap.name, job.id, job.kind, failure, e)
            return Outcome(_STATE_OF[failure], failure, e.detail)

    async def _once(self, ap: AccessPoint, fresh: Callable[[], AccessPoint], job: Job) -> str:
        if job.kind == "reboot":
            return await self._reboot(ap, job.key)
        try:
            spec = ConfigSpec.from_json(job.spec)
        except ValueError as e:
            raise DeviceError(ap.name, f"bad job spec: {e}") from e
        return await self._apply(ap, fresh, job.key, spec)

    # ------------------------------------------------------------------ configuration changes
    async def _apply(self, ap: AccessPoint, fresh: Callable[[], AccessPoint], key: str,
                     spec: ConfigSpec) -> str:
        st = await ap.status(by=key)
        if key in st.recent_tags:
            return "applied (the device already has this job's change)"
        if st.pending is not None:
            if st.pending.tag != key:
                raise BusyError(ap.name, f"change {st.pending.tag} awaits confirmation",
                                st.pending.rollback_in_s)
            # Ours, committed before (its answer lost, or a restart since): check and confirm.
            return await self._confirm(ap, fresh, key, st.boot_id,
                                       self.clock() + st.pending.rollback_in_s)
        target = spec.apply_to(st.config)
        if target == st.config:
            return "no change needed (the device runs the wanted configuration)"
        await ap.put_config(target, by=key)
        t_commit = self.clock()
        await ap.commit(key, self.cfg.confirm_timeout_s)
        return await self._confirm(ap, fresh, key, st.boot_id, t_commit + self.cfg.confirm_timeout_s)

    async def _confirm(self, ap: AccessPoint, fresh: Callable[[], AccessPoint], key: str,
                       boot_id: str, deadline: float) -> str:
        """Check reachability over a new session, then confirm; else let the device roll back."""
        margin = max(0.5, 0.2 * self.cfg.confirm_timeout_s)
        probe = fresh()
        delay = min(0.2, self.cfg.retry_initial_s)

        async def pause(e: NotReadyError) -> bool:
            """Wait a little if there is time before the margin; False if there is none."""
            nonlocal delay
            if self.clock() + delay >= deadline - margin:
                return False
            await asyncio.sleep(max(delay, min(e.retry_after_s, 1.0)))
            delay = min(delay * 2, 1.0)
            return True

        answered = False  # any answer over the new session since the change
        try:
            while True:
                try:
                    st = await probe.status(by=key)
                    answered = True
                    if key in st.recent_tags:
                        return f"applied and confirmed (rev {st.config_rev})"
                    if st.pending is None or st.pending.tag != key:
                        rolled_back = self._rolled_back(ap, st, boot_id)
                    else:
                        await probe.confirm(key)
                        return f"applied and confirmed (rev {st.config_rev}, over a new session)"
                except ConflictError:
                    continue  # nothing to confirm: read the status again to see what happened
                except NotReadyError as e:
                    answered = answered or not isinstance(e, UnreachableError)
                    if await pause(e):
                        continue
                    if not answered:
                        break
                    # It answers but could not confirm in time: it rolls back; the job is tried again.
                    raise NotReadyError(ap.name, f"could not confirm in time ({e.detail})") from e
                raise rolled_back
        finally:
            await probe.close()
        # No answer since the change: do not confirm. The device rolls back at the deadline.
        log.warning("%s: unreachable after change %s; waiting for the device's rollback", ap.name, key)
        await asyncio.sleep(max(0.0, deadline - self.clock()) + 0.5)
        until = self.clock() + self.cfg.confirm_timeout_s + 2 * self.cfg.request_timeout_s
        while True:
            try:
                st = await ap.status(by=key)
            except NotReadyError as e:
                if self.clock() >= until:
                    raise CutOffError(ap.name, "unreachable after the change and since; the device "
                                      "rolls it back by itself") from e
                await asyncio.sleep(0.5)
                continue
            if key in st.recent_tags:
                return "applied (confirmed by an earlier answer that was lost)"
            raise self._rolled_back(ap, st, boot_id, cut=True)

    @staticmethod
    def _rolled_back(ap: AccessPoint, st: DeviceStatus, boot_id: str, cut: bool = False,
                     ) -> DeviceError:
        if st.boot_id != boot_id:
            return NotReadyError(ap.name, "the device rebooted and rolled the change back; again")
        if cut:
            return CutOffError(ap.name, "the change cut the device off; it rolled back by itself "
                               f"to rev {st.config_rev} (tag {st.config_tag})")
        return NotReadyError(ap.name, "the change was rolled back before it was confirmed; again")

    # ------------------------------------------------------------------ reboots
    async def _reboot(self, ap: AccessPoint, key: str) -> str:
        st = await ap.status(by=key)
        old: str | None = st.boot_id
        if key not in st.recent_tags:
            await ap.reboot(key)
        else:
            old = None  # rebooted already (a lost answer or a restart): wait until it is ready
        t0 = self.clock()
        until = t0 + self.cfg.reboot_wait_s
        while self.clock() < until:
            await asyncio.sleep(min(1.0, self.cfg.retry_initial_s))
            try:
                st = await ap.status(by=key)
            except NotReadyError:
                continue
            if st.ready and (old is None or st.boot_id != old):
                return f"rebooted; ready after {self.clock() - t0:.1f} s (boot {st.boot_id})"
        raise DeviceError(ap.name, f"not back within {self.cfg.reboot_wait_s:.0f} s of the reboot")
