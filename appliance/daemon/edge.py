"""The daemon's side of the limits at the edge: port configs, descriptor budget, accept errors.

- :func:`web_config` wraps an app in :class:`~appliance.web.limits.BodyLimit` with the port's
  route rules and gives uvicorn the guarded protocol (:mod:`appliance.web.connections`), the
  head size, keep-alive and concurrency bounds;
- :func:`check_fd_budget` compares what the connection caps may hold with ``RLIMIT_NOFILE`` at
  start (raising the soft limit to the hard one if that is what it takes);
- :class:`AcceptErrorLog` is the loop's exception handler: "out of system resource" errors of
  ``accept()`` (asyncio retries a second later, per listening socket) are counted and logged once
  per interval with their count, so running out of descriptors cannot flood the log; any other
  error goes to the default handler.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import resource
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from ..settings import PortLimits, Settings
from ..web.connections import PortGuard, guarded_protocol
from ..web.limits import BodyLimit, BodyRule

__all__ = ["AcceptErrorLog", "WebPort", "admin_rules", "check_fd_budget", "fd_budget",
           "run_loop", "warm_imports", "web_config"]

log = logging.getLogger(__name__)
#: Descriptors a media connection may hold while it sends: socket, its dup for sendfile, the file.
MEDIA_FDS_PER_CONNECTION = 3


@dataclass
class WebPort:
    """One uvicorn port's config with its edge state (guard and body limit, for status/metrics)."""

    config: uvicorn.Config
    guard: PortGuard
    body_limit: BodyLimit


def admin_rules(settings: Settings) -> list[BodyRule]:
    """The admin port's route body limits: login, intake metadata and upload chunks."""
    e = settings.edge
    chunk = settings.intake.chunk_bytes + e.intake_chunk_slack_bytes
    timeout = e.admin.body_timeout_s
    return [BodyRule("POST", "/admin/v1/login", e.login_body_bytes, timeout),
            BodyRule("POST", "/admin/v1/intake/uploads", e.intake_metadata_bytes, timeout),
            # The stalled-upload deadline is the intake's own (it resumes uploads).
            BodyRule("PUT", "/admin/v1/intake/uploads/", chunk, None)]


def web_config(app: FastAPI, host: str, port: int, limits: PortLimits,
               rules: list[BodyRule] | None = None, http: str = "httptools") -> WebPort:
    """The uvicorn config of one port: ``app`` behind its body limits and connection guard.

    ``http``: the request parser, "httptools" (llhttp) or "h11" (``[edge] http``).
    """
    guard = PortGuard(limits.connections_per_client, limits.max_connections,
                      limits.header_timeout_s)
    body = BodyLimit(app, limits.body_bytes, rules or (), limits.body_timeout_s)
    config = uvicorn.Config(
        body, host=host, port=port, lifespan="off", access_log=False, log_level="warning",
        timeout_graceful_shutdown=3, http=guarded_protocol(guard, http, limits.header_bytes),
        timeout_keep_alive=int(max(1, round(limits.keepalive_s))),
        h11_max_incomplete_event_size=limits.header_bytes,
        # A backstop: the guard keeps connections within max_connections; this bounds requests in
        # progress too (one per connection, plus ones whose client left: 503 over it).
        limit_concurrency=limits.max_connections + 1)
    return WebPort(config, guard, body)


#: Modules Starlette and anyio import on the first request through an HTTP middleware (measured:
#: 40-150 ms on the loop); imported at start instead, so a first hostile request does not pay it.
LAZY_IMPORTS = ("anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.stapled",
                "anyio.streams.tls", "anyio._core._sockets", "anyio._core._streams")


def warm_imports() -> None:
    """Import :data:`LAZY_IMPORTS` now (call before serving)."""
    for name in LAZY_IMPORTS:
        importlib.import_module(name)


def fd_budget(settings: Settings) -> int:
    """Descriptors the service may need at its connection caps (see EdgeSettings)."""
    e, c = settings.edge, settings.content
    media = c.media_max_connections * MEDIA_FDS_PER_CONNECTION \
        if c.enabled and c.media_port is not None else 0
    return e.passenger.max_connections + e.admin.max_connections + media + e.fd_reserve


def check_fd_budget(settings: Settings) -> tuple[int, int]:
    """Make sure ``RLIMIT_NOFILE`` covers :func:`fd_budget`: (budget, soft limit now).

    Raises the soft limit towards the hard one when short; logs a warning if still short.
    """
    need = fd_budget(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(hard, need)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError) as e:
            log.warning("cannot raise RLIMIT_NOFILE to %d: %s", new, e)
        if soft < need:
            log.warning("RLIMIT_NOFILE %d is below the %d descriptors the connection caps may need "
                        "(lower [edge] and [content] caps or raise LimitNOFILE)", soft, need)
    return need, soft


class AcceptErrorLog:
    """A loop exception handler that aggregates ``accept()`` resource errors (see the module)."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, interval_s: float = 60.0) -> None:
        """Log at most once per ``interval_s`` seconds."""
        self.interval_s = interval_s
        self.count = 0  #: accept errors seen in all
        self._unlogged = 0
        self._last = -float("inf")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The handler: count accept errors, log them in aggregate; anything else as usual."""
        if context.get("message") != self.MESSAGE:
            loop.default_exception_handler(context)
            return
        self.count += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            exc = context.get("exception")
            log.error("cannot accept connections (%d time(s) since the last report, %d in all): %s",
                      self._unlogged, self.count, exc)
            self._last = now
            self._unlogged = 0


def run_loop(main: Coroutine[Any, Any, int], event_loop: str) -> int:
    """Run the daemon's ``main`` coroutine to its end on ``event_loop`` ("uvloop" or "asyncio").

    uvloop (libuv) wakes and dispatches with fewer CPU cycles than the standard selector loop;
    without it installed this warns once and uses asyncio.
    """
    if event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: running on the asyncio event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)

