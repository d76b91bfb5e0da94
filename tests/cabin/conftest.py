"""Cabin network tests: a journal per test, asyncio as the anyio backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import Journal


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A migrated journal database with a running writer (stopped at the end)."""
    j = Journal(tmp_path / "journal.db")
    yield j
    j.close()
