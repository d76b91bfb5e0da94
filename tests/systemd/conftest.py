"""tests/systemd: the unit, the notify protocol, a real systemd under nspawn, the built image."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd: boots a real systemd in a systemd-nspawn container")
    config.addinivalue_line("markers", "image: boots the built image (make test-image)")
