"""tests/hostile: the real service under hostile passengers and small faults (issue 13)."""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import HostileService


@pytest.fixture(autouse=True)
def _enough_fds() -> Iterator[None]:
    """The slow-client tests hold ~1,500 sockets in the test process (limit restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., HostileService]]:
    """Start the real service (own config, loopback ports, fake watchdog); stopped at teardown."""
    started: list[HostileService] = []

    def make(extra_config: str = "", **kw: object) -> HostileService:
        svc = HostileService(tmp_path, extra_config=extra_config, **kw)  # type: ignore[arg-type]
        started.append(svc)
        svc.start()
        return svc

    yield make
    for svc in started:
        svc.close()
