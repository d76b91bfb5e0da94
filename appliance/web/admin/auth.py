"""Admin authentication: users with argon2-hashed passwords, roles, sessions, throttling.

Roles: ``crew`` reads everything; ``maintenance`` also acts (override, export, sync now, intake).
A login (``POST /admin/v1/login``) returns a random session token used as ``Bearer``; the configured
``admin_token`` is a service token with the maintenance role.

Throttling (settings in :class:`~appliance.settings.AdminAuthSettings`) has two keys:

- per client address: ``max_failures`` failed attempts (bad password, unknown user, bad token,
  malformed login) within ``failure_window_s`` lock the address out for ``lockout_s``;
- per account (a configured user name): ``account_max_failures`` failed logins from any address
  within the window lock that user name for ``lockout_s`` (the service token still works).

A login counts as it **starts** (:meth:`AdminAuth.begin`): checks still running count against
both limits, so parallel guesses are throttled like sequential ones; a login that succeeds is
uncounted when it ends, one refused before any check (busy, account locked) is dropped. A locked
or full key raises :class:`LockedOut` (HTTP 429 with Retry-After).

Password checks (argon2 is deliberately slow and takes 64 MiB each) run on a dedicated pool of
``hash_concurrency`` threads, never on the event loop; at most ``hash_queue`` more wait, past
that :meth:`AdminAuth.check_password` raises :class:`HashingBusy` (HTTP 503 with Retry-After).
Everything but the pool's threads runs on the event loop thread (no locks needed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...settings import AdminAuthSettings, AdminUser

__all__ = ["AdminAuth", "Attempt", "HashingBusy", "LockedOut", "Principal", "Role", "hash_password"]

_hasher = PasswordHasher()

#: Retry-After (s) when a key is full of checks still running (they end within a hash or two).
BUSY_RETRY_S = 2.0


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for the config file."""
    return _hasher.hash(password)


class Role(enum.IntEnum):
    """Admin roles, ordered: a higher role can do what a lower one can."""

    CREW = 1
    MAINTENANCE = 2


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: user name and role."""

    user: str
    role: Role


class LockedOut(Exception):
    """Too many failures from this address or on this account; ``retry_after_s`` until retry."""

    def __init__(self, retry_after_s: float, what: str = "this address") -> None:
        """Carry the remaining lockout time (s) and what is locked."""
        super().__init__(f"too many failed attempts from {what}; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class HashingBusy(Exception):
    """Every password-check slot and queue place is taken; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float) -> None:
        """Carry the suggested wait (s)."""
        super().__init__(f"too many logins at once; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class _Throttle:
    """Failures (and attempts still running) per key within a window; a lock past the limit."""

    def __init__(self, limit: int, cfg: AdminAuthSettings, clock: Callable[[], float],
                 what: str) -> None:
        self.limit, self.cfg, self.clock, self.what = limit, cfg, clock, what
        self.failures: dict[str, deque[float]] = {}
        self.running: dict[str, int] = {}
        self.locked_until: dict[str, float] = {}

    def _recent(self, key: str, now: float) -> int:
        q = self.failures.get(key)
        if q is None:
            return 0
        while q and now - q[0] > self.cfg.failure_window_s:
            q.popleft()
        if not q:
            del self.failures[key]
            return 0
        return len(q)

    def check(self, key: str) -> None:
        """Raise LockedOut if ``key`` is locked, or full with failures and running attempts."""
        now = self.clock()
        until = self.locked_until.get(key)
        if until is not None:
            if until > now:
                raise LockedOut(until - now, self.what)
            del self.locked_until[key]
        if self._recent(key, now) + self.running.get(key, 0) >= self.limit:
            raise LockedOut(BUSY_RETRY_S, self.what)

    def start(self, key: str) -> None:
        """Check ``key`` and count an attempt as running."""
        self.check(key)
        self.running[key] = self.running.get(key, 0) + 1
        if len(self.running) + len(self.failures) > self.cfg.max_tracked:
            self._forget()

    def end(self, key: str) -> None:
        """An attempt of ``key`` stopped running (success, refusal or failure)."""
        n = self.running.get(key, 0) - 1
        if n > 0:
            self.running[key] = n
        else:
            self.running.pop(key, None)

    def fail(self, key: str) -> None:
        """Count a failure of ``key``; lock it when the window holds ``limit`` of them."""
        now = self.clock()
        self._recent(key, now)
        q = self.failures.setdefault(key, deque())
        q.append(now)
        if len(q) >= self.limit:
            self.locked_until[key] = now + self.cfg.lockout_s
            del self.failures[key]

    def _forget(self) -> None:
        now = self.clock()
        for key in list(self.failures):
            self._recent(key, now)
        self.locked_until = {k: t for k, t in self.locked_until.items() if t > now}


@dataclass(slots=True)
class Attempt:
    """A login in progress: its client address and, once known, the account it counts against."""

    client: str
    account: str | None = None
    done: bool = field(default=False)


class AdminAuth:
    """Users, sessions, throttling and the bounded password checks (in memory; sessions end on restart)."""

    def __init__(self, users: list[AdminUser], service_token: str | None,
                 cfg: AdminAuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """Take the configured users and the service token."""
        self._users = {u.name: (u.password_hash, Role[u.role.upper()]) for u in users}
        self._service_token = service_token
        self.cfg = cfg
        self._clock = clock
        self._sessions: dict[str, tuple[Principal, float]] = {}
        self._addresses = _Throttle(cfg.max_failures, cfg, clock, "this address")
        self._accounts = _Throttle(cfg.account_max_failures, cfg, clock, "this account")
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._hashing = 0  #: checks submitted to the pool and not finished (queued or running)
        self.busy_refusals = 0  #: logins refused because every slot and queue place was taken

    # -- throttling ------------------------------------------------------------------------------
    def check_lockout(self, client: str) -> None:
        """Raise LockedOut if ``client`` is locked out now (or full of running login checks)."""
        self._addresses.check(client)

    def failure(self, client: str) -> None:
        """Count a failure of ``client`` (a bad token, say); lock it out when there are too many."""
        self._addresses.fail(client)

    def begin(self, client: str) -> Attempt:
        """Start a login from ``client``: counted from now on. Raises LockedOut."""
        self._addresses.start(client)
        return Attempt(client)

    def begin_account(self, attempt: Attempt, user: str) -> None:
        """Count ``attempt`` against ``user`` too, if it is a configured user.

        Raises LockedOut when the account is locked (the attempt then ends uncounted: no password
        was tried).
        """
        if user not in self._users:
            return
        try:
            self._accounts.start(user)
        except LockedOut:
            self.cancel(attempt)
            raise
        attempt.account = user

    def _end(self, attempt: Attempt, failed: bool) -> None:
        if attempt.done:
            return
        attempt.done = True
        self._addresses.end(attempt.client)
        if attempt.account is not None:
            self._accounts.end(attempt.account)
        if failed:
            self._addresses.fail(attempt.client)
            if attempt.account is not None:
                self._accounts.fail(attempt.account)

    def succeeded(self, attempt: Attempt) -> None:
        """The login succeeded: it does not count."""
        self._end(attempt, failed=False)

    def failed(self, attempt: Attempt) -> None:
        """The login failed (bad input, wrong password, unknown user): it counts as a failure."""
        self._end(attempt, failed=True)

    def cancel(self, attempt: Attempt) -> None:
        """The login was refused before any check (busy, account locked): it does not count."""
        self._end(attempt, failed=False)

    # -- passwords -------------------------------------------------------------------------------
    def verify_password(self, user: str, password: str) -> Principal | None:
        """The principal if the password is right (blocking: call from a worker thread)."""
        entry = self._users.get(user)
        try:
            if entry is None:
                _hasher.hash(password)  # same cost as a real check: no user enumeration by timing
                return None
            _hasher.verify(entry[0], password)
        except (VerificationError, InvalidHashError, UnicodeEncodeError):
            return None
        return Principal(user, entry[1])

    async def check_password(self, user: str, password: str) -> Principal | None:
        """:meth:`verify_password` on the bounded pool; raises HashingBusy when it is full."""
        cfg = self.cfg
        with self._lock:
            if self._hashing >= cfg.hash_concurrency + cfg.hash_queue:
                self.busy_refusals += 1
                raise HashingBusy(BUSY_RETRY_S)
            self._hashing += 1
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(cfg.hash_concurrency, "argon2")

        def run() -> Principal | None:
            try:
                return self.verify_password(user, password)
            finally:
                with self._lock:
                    self._hashing -= 1
        try:
            fut = self._pool.submit(run)
        except RuntimeError:  # the pool is shut down: the service is stopping
            with self._lock:
                self._hashing -= 1
            raise HashingBusy(BUSY_RETRY_S) from None
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        """Stop the password-check pool (checks not started yet are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- sessions --------------------------------------------------------------------------------
    def open_session(self, who: Principal) -> str:
        """A new session token for ``who``."""
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (who, self._clock() + self.cfg.session_ttl_s)
        return token

    def close_session(self, token: str) -> None:
        """End a session (logout)."""
        self._sessions.pop(token, None)

    def principal(self, token: str) -> Principal | None:
        """Who holds ``token`` (a live session or the service token), or None."""
        if self._service_token is not None and secrets.compare_digest(
                token.encode(), self._service_token.encode()):
            return Principal("service", Role.MAINTENANCE)
        entry = self._sessions.get(token)
        if entry is None:
            return None
        who, expires = entry
        if self._clock() > expires:
            del self._sessions[token]
            return None
        return who
