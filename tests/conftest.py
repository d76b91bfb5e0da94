"""Shared fixtures: the real recorded flight (fetched once into var/cache)."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_bridge.recording import fetch_default_flight

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def flight_path() -> Path:
    """The AFR34ZG CDG->TLS recording (raw Mode-S JSONL), downloaded on first use."""
    return fetch_default_flight(REPO / "var" / "cache")
