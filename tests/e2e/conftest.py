"""The e2e package's shared service: the portal with the real packaged content, started once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .service import CHROMIUM, Service

REPO = Path(__file__).resolve().parents[2]
CONTENT = REPO / "var" / "content"
PACKAGES = ("big-buck-bunny", "genesis-kjv", "live-manual-en")
VENDOR = REPO / "var" / "vendor"


@pytest.fixture(scope="package")
def portal_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`appliance run` (no card), the film, the HTML book, the EPUB and the npm vendor files.

    Shared by the browser tests that only read (accessibility, page weight). Skips without
    Debian's Chromium or Playwright.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed")
    pytest.importorskip("playwright")
    tmp = tmp_path_factory.mktemp("portal")
    svc = Service(tmp)
    svc.extra_config = f'[content]\nvendor_dir = "{VENDOR}"\norigin = "LFPG"\ndestination = "LFBO"\n'
    cfg = svc.write_config()
    for name in PACKAGES:
        subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install", "--config",
                        str(cfg), str(CONTENT / name)], check=True, cwd=tmp)
    svc.start()
    yield svc
    svc.stop()
