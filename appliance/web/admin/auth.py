"""Admin authentication: users with argon2-hashed passwords, roles, sessions, throttling.

Roles: ``crew`` reads everything; ``maintenance`` also acts (override, export, sync now, intake).
A login (``POST /admin/v1/login``) returns a random session token used as ``Bearer``; the configured
``admin_token`` is a service token with the maintenance role. Repeated failures from one client
address (bad password, unknown user, bad token) within ``failure_window_s`` lock that address out
for ``lockout_s`` (HTTP 429), so guessing is throttled. Password checks run in a worker thread
(argon2 is deliberately slow) so the event loop never waits on them.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...settings import AdminAuthSettings, AdminUser

__all__ = ["AdminAuth", "LockedOut", "Principal", "Role", "hash_password"]

_hasher = PasswordHasher()


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
    """Too many failures from this client address; ``retry_after_s`` until it may try again."""

    def __init__(self, retry_after_s: float) -> None:
        """Carry the remaining lockout time (s)."""
        super().__init__(f"too many failed attempts; retry in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class AdminAuth:
    """Users, sessions and per-client failure throttling (all in memory; sessions end on restart)."""

    def __init__(self, users: list[AdminUser], service_token: str | None,
                 cfg: AdminAuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        """Take the configured users and the service token."""
        self._users = {u.name: (u.password_hash, Role[u.role.upper()]) for u in users}
        self._service_token = service_token
        self.cfg = cfg
        self._clock = clock
        self._sessions: dict[str, tuple[Principal, float]] = {}
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}

    def check_lockout(self, client: str) -> None:
        """Raise LockedOut if ``client`` is locked out now."""
        until = self._locked_until.get(client)
        if until is not None:
            left = until - self._clock()
            if left > 0:
                raise LockedOut(left)
            del self._locked_until[client]

    def failure(self, client: str) -> None:
        """Count a failure of ``client``; lock it out when there are too many in the window."""
        now = self._clock()
        q = self._failures[client]
        q.append(now)
        while q and now - q[0] > self.cfg.failure_window_s:
            q.popleft()
        if len(q) >= self.cfg.max_failures:
            self._locked_until[client] = now + self.cfg.lockout_s
            q.clear()

    def verify_password(self, user: str, password: str) -> Principal | None:
        """The principal if the password is right (blocking: call from a worker thread)."""
        entry = self._users.get(user)
        if entry is None:
            _hasher.hash(password)  # same cost as a real check: no user enumeration by timing
            return None
        try:
            _hasher.verify(entry[0], password)
        except (VerificationError, InvalidHashError):
            return None
        return Principal(user, entry[1])

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
