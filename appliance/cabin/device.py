"""A simulated access point: the device's behaviour, shared by the simulator process and the twin.

:class:`SimDevice` answers the JSON API of :mod:`.driver` (login sessions, status, candidate,
commit with a rollback timer, confirm, reboot) and injects faults (:class:`Faults`): latency, slow
answers, lost requests and lost answers, "busy" answers, spontaneous reboots, a boot time during
which it is down and a ready time during which it answers ``not_ready``.

Like a real device it does one command at a time: a command that arrives while another is being
processed is answered ``busy`` and logged with ``"overlap": true`` — the tests read the log to
prove that the manager never sent two commands (two jobs) at once.

A configuration whose ``mgmt_allow`` does not contain the manager's address cuts it off: the
device stops answering it. A commit with ``confirm_timeout_s`` rolls back by itself unless it is
confirmed in time, and on a reboot before that. Tags of committed-and-kept changes and of reboots
are remembered (``recent_tags``, kept across reboots), so a repeated tagged command is a no-op.

Log records (``log`` callback, one dict each; times ``time.monotonic()`` s, comparable across
processes on Linux): requests ``{"t0", "t1", "by", "method", "path", "status", "outcome",
"overlap"}`` with outcome ok, lost_request, lost_answer, cut_off; effects ``{"t", "effect":
commit|confirm|rollback|reboot|boot, "tag", "rev", "why"}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .model import ApConfig, DeviceStatus, Pending

__all__ = ["Answer", "Faults", "SimDevice"]

#: (HTTP status, JSON body), or None: no answer at all (the connection is cut).
Answer = tuple[int, Any] | None
_CHANGING = ("PUT", "POST")


@dataclass(slots=True)
class Faults:
    """Fault injection: latency and slow (s), probabilities per request (0..1), reboots (s)."""

    latency_s: float = 0.0
    slow_p: float = 0.0
    slow_s: float = 0.0
    #: A lost request never reaches the device; a lost answer was processed. Half of each.
    loss: float = 0.0
    busy_p: float = 0.0
    #: Mean time between spontaneous reboots (exponential); 0 = never.
    reboot_every_s: float = 0.0
    boot_s: float = 1.0
    ready_s: float = 0.3
    rng: random.Random = field(default_factory=random.Random)

    def delay(self) -> float:
        """This request's processing time (s)."""
        return self.latency_s + (self.slow_s if self.rng.random() < self.slow_p else 0.0)


@dataclass(slots=True)
class _PendingChange:
    tag: str
    deadline: float
    previous: tuple[ApConfig, str | None]


class SimDevice:
    """One simulated access point (see the module doc). Methods run on one asyncio loop."""

    MODEL = "AeroCell AC-200 (simulated)"
    FIRMWARE = "4.2.1-sim"

    def __init__(self, name: str, config: ApConfig, *, user: str = "admin", password: str = "admin",
                 faults: Faults | None = None, clients: int = 0,
                 log: Callable[[dict[str, Any]], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """A device running ``config``, up and ready; ``log`` receives the records described above."""
        self.name = name
        self.user, self.password = user, password
        self.faults = faults or Faults()
        self.log = log or (lambda rec: None)
        self.on_change = on_change or (lambda: None)
        self.clock = clock
        self.running = config
        self.rev = 1
        self.tag: str | None = None
        self.candidate: ApConfig | None = None
        self.pending: _PendingChange | None = None
        self.recent: collections.deque[str] = collections.deque(maxlen=64)
        self.sessions: set[str] = set()
        self.clients = clients
        self.errors = 0
        self.up = True
        self.boot_id = secrets.token_hex(4)
        self.booted_at = clock()
        self.ready_at = self.booted_at
        self.inflight = 0
        self.overlaps = 0
        #: Called when the device goes down / comes back (the process closes / reopens its socket).
        self.on_down: Callable[[], None] = lambda: None
        self.on_up: Callable[[], None] = lambda: None
        self._reboot_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the request pipeline
    async def serve(self, method: str, path: str, token: str | None, body: Any, by: str,
                    peer: str) -> Answer:
        """Process one request from ``peer`` (IP address) with faults; None means no answer."""
        t0 = self.clock()
        rec: dict[str, Any] = {"t0": t0, "by": by, "method": method, "path": path}
        f = self.faults
        if not self.up:
            return self._done(rec, None, "down")
        if f.rng.random() < f.loss / 2:
            return self._done(rec, None, "lost_request")
        if not self.reachable_from(peer):
            return self._done(rec, None, "cut_off")
        if self.inflight:
            self.overlaps += 1
            rec["overlap"] = True
            return self._done(rec, (409, {"error": "busy", "detail": "another command in progress",
                                          "retry_after_s": 0.2}), "ok")
        self.inflight += 1
        boot = self.boot_id
        try:
            await asyncio.sleep(f.delay())
            if not self.up or self.boot_id != boot:
                return self._done(rec, None, "lost_request")
            if method in _CHANGING and not path.endswith("/login") and f.rng.random() < f.busy_p:
                answer: Answer = (409, {"error": "busy", "detail": "radio calibration in progress",
                                        "retry_after_s": 0.3})
            else:
                answer, reboot = self.handle(method, path, token, body)
                if reboot:
                    self.reboot_later("requested")
        finally:
            self.inflight -= 1
        if f.rng.random() < f.loss / 2:
            return self._done(rec, None, "lost_answer")
        return self._done(rec, answer, "ok")

    def _done(self, rec: dict[str, Any], answer: Answer, outcome: str) -> Answer:
        rec.update(t1=self.clock(), outcome=outcome, status=None if answer is None else answer[0])
        self.log(rec)
        return answer

    def reachable_from(self, peer: str) -> bool:
        """True if the running configuration lets ``peer`` (an IP address) manage the device."""
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(c, strict=False) for c in self.running.mgmt_allow)

    # ------------------------------------------------------------------ the API (no faults)
    def handle(self, method: str, path: str, token: str | None, body: Any,
               ) -> tuple[tuple[int, Any], bool]:
        """Answer one API request: ((status, body), reboot requested)."""
        now = self.clock()
        self.expire()
        if now < self.ready_at:
            return (503, {"error": "not_ready", "detail": "booting",
                          "retry_after_s": round(self.ready_at - now, 3)}), False
        b = body if isinstance(body, dict) else {}
        route = (method, path)
        if route == ("POST", "/api/v1/login"):
            if b.get("user") != self.user or b.get("password") != self.password:
                return (401, {"error": "auth_failed", "detail": "bad user or password"}), False
            tok = secrets.token_hex(8)
            self.sessions.add(tok)
            return (200, {"token": tok}), False
        if token not in self.sessions:
            return (401, {"error": "session_expired", "detail": "log in again"}), False
        if route == ("GET", "/api/v1/status"):
            return (200, self.status().to_json()), False
        if route == ("GET", "/api/v1/config"):
            return (200, {"running": self.running.to_json(), "rev": self.rev, "tag": self.tag,
                          "candidate": None if self.candidate is None else self.candidate.to_json()}
                    ), False
        if route == ("PUT", "/api/v1/config/candidate"):
            try:
                self.candidate = ApConfig.from_json(b.get("config"))
            except ValueError as e:
                return (400, {"error": "invalid", "detail": str(e)}), False
            return (200, {"ok": True}), False
        tag = str(b.get("tag") or "")
        if route == ("POST", "/api/v1/commit"):
            return self._commit(tag, b.get("confirm_timeout_s")), False
        if route == ("POST", "/api/v1/confirm"):
            return self._confirm(tag), False
        if route == ("POST", "/api/v1/reboot"):
            if tag and tag in self.recent:
                return (200, {"already": True}), False
            if tag:
                self.recent.append(tag)
            self._effect("reboot", tag or None, "requested")
            return (202, {"rebooting": True, "down_s": self.faults.boot_s}), True
        return (404, {"error": "invalid", "detail": f"no route {method} {path}"}), False

    def _commit(self, tag: str, timeout: Any) -> tuple[int, Any]:
        if not tag:
            return 400, {"error": "invalid", "detail": "tag required"}
        if tag in self.recent or (self.pending is not None and self.pending.tag == tag):
            return 200, {"already": True, "rev": self.rev, "tag": self.tag,
                         "pending": self.pending is not None}
        if self.pending is not None:
            left = self.pending.deadline - self.clock()
            return 409, {"error": "busy", "detail": "a change awaits confirmation",
                         "retry_after_s": round(max(left, 0.1), 3)}
        if self.candidate is None:
            return 409, {"error": "conflict", "detail": "no candidate configuration"}
        previous = (self.running, self.tag)
        self.running, self.candidate, self.tag = self.candidate, None, tag
        self.rev += 1
        if isinstance(timeout, (int, float)) and timeout > 0:
            self.pending = _PendingChange(tag, self.clock() + float(timeout), previous)
            self._effect("commit", tag, "pending confirmation")
        else:
            self.recent.append(tag)
            self._effect("commit", tag, "kept")
        return 200, {"rev": self.rev, "tag": tag, "pending": self.pending is not None}

    def _confirm(self, tag: str) -> tuple[int, Any]:
        if self.pending is not None and self.pending.tag == tag:
            self.pending = None
            self.recent.append(tag)
            self._effect("confirm", tag, "kept")
            return 200, {"rev": self.rev, "tag": tag}
        if tag and tag in self.recent:
            return 200, {"already": True, "rev": self.rev, "tag": self.tag}
        return 409, {"error": "conflict", "detail": f"no pending change {tag!r} (rolled back?)"}

    def _rollback(self, why: str) -> None:
        p = self.pending
        if p is None:
            return
        self.pending = None
        self.running, self.tag = p.previous
        self.rev += 1
        self._effect("rollback", p.tag, why)

    def _effect(self, effect: str, tag: str | None, why: str) -> None:
        self.log({"t": self.clock(), "effect": effect, "tag": tag, "rev": self.rev, "why": why,
                  "boot_id": self.boot_id})
        self.on_change()

    def status(self) -> DeviceStatus:
        """The status as the API reports it."""
        now = self.clock()
        p = self.pending
        return DeviceStatus(self.MODEL, self.FIRMWARE, self.boot_id, now - self.booted_at,
                            now >= self.ready_at, self.running, self.rev, self.tag,
                            None if p is None else Pending(p.tag, max(0.0, p.deadline - now)),
                            self.clients, self.errors, tuple(self.recent))

    # ------------------------------------------------------------------ time passing
    def expire(self) -> None:
        """Roll back an unconfirmed change whose time is up."""
        if self.pending is not None and self.clock() >= self.pending.deadline:
            self._rollback("not confirmed in time")

    def tick(self) -> None:
        """:meth:`expire`, and let clients and errors drift."""
        self.expire()
        rng = self.faults.rng
        serving = self.running.radio_on and any(s.enabled for s in self.running.ssids)
        self.clients = max(0, min(60, self.clients + rng.choice((-1, 0, 1)))) if serving else 0
        if rng.random() < 0.01:
            self.errors += 1

    def shutdown(self, why: str) -> None:
        """Power down: unconfirmed change rolled back, candidate and sessions lost."""
        self._rollback(f"reboot ({why})")
        self.candidate = None
        self.sessions.clear()
        self.up = False
        self.on_down()
        self.on_change()

    def boot(self) -> None:
        """Power up with a new boot id; ``not_ready`` for ``faults.ready_s``."""
        self.boot_id = secrets.token_hex(4)
        self.booted_at = self.clock()
        self.ready_at = self.booted_at + self.faults.ready_s
        self.errors = 0
        self.up = True
        self._effect("boot", None, "up")
        self.on_up()

    def reboot_later(self, why: str) -> None:
        """Reboot in the background: down at once, back after ``faults.boot_s``."""
        if self._reboot_task is not None and not self._reboot_task.done():
            return

        async def cycle() -> None:
            await asyncio.sleep(0.05)  # let the answer to the reboot request go out
            self.shutdown(why)
            await asyncio.sleep(self.faults.boot_s)
            self.boot()
        self._reboot_task = asyncio.get_running_loop().create_task(cycle())

    async def run(self, tick_s: float = 0.1) -> None:
        """Background life (until cancelled): ticks, and spontaneous reboots if configured."""
        f = self.faults
        next_reboot = (self.clock() + f.rng.expovariate(1 / f.reboot_every_s)
                       if f.reboot_every_s > 0 else None)
        try:
            while True:
                await asyncio.sleep(tick_s)
                if self.up:
                    self.tick()
                if next_reboot is not None and self.clock() >= next_reboot:
                    self.reboot_later("spontaneous")
                    next_reboot = self.clock() + f.boot_s + f.rng.expovariate(1 / f.reboot_every_s)
        finally:
            if self._reboot_task is not None:
                self._reboot_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reboot_task

    def snapshot(self) -> dict[str, Any]:
        """The device's state for its state file: up, boot id, running config, tag, pending."""
        return {"name": self.name, "up": self.up, "boot_id": self.boot_id, "rev": self.rev,
                "tag": self.tag, "config": self.running.to_json(),
                "pending": None if self.pending is None else self.pending.tag,
                "recent_tags": list(self.recent), "overlaps": self.overlaps}
