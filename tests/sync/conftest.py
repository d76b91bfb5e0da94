"""Sync tests: soak variants run only when asked (``-m soak`` or ``SYNC_SOAK=1``)."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.option.markexpr or "") or os.environ.get("SYNC_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak run: make test-sync-soak (or -m soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def journal(tmp_path):  # type: ignore[no-untyped-def]
    """A migrated journal database with a running writer (stopped at the end)."""
    from .helpers import Journal

    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()
