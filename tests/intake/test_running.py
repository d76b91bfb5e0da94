"""Issue 14: ``appliance --version`` and the admin status say which version and slot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from appliance import __version__
from appliance.running import running

REPO = Path(__file__).resolve().parents[2]


def install(tmp: Path) -> tuple[Path, Path]:
    """An install as the image lays it out: slots/a (SLOT file), slots/b (slot.json), current."""
    root = tmp / "opt"
    (root / "slots" / "a").mkdir(parents=True)
    (root / "slots" / "a" / "SLOT").write_text("appliance 0.1.0\nbuilt 2026-12-01T00:00:00Z\n")
    (root / "slots" / "b").mkdir()
    (root / "slots" / "b" / "slot.json").write_text("{}")
    os.symlink("slots/a", root / "current")
    pkg = tmp / "site-packages" / "appliance"
    pkg.mkdir(parents=True)
    return root, pkg


def test_slot_from_the_install(tmp_path: Path) -> None:
    root, pkg = install(tmp_path)
    a = running(root / "slots" / "a", pkg)
    assert a == {"version": __version__, "slot": "a", "prefix": str(root / "slots" / "a"),
                 "current": True, "slot_file": "appliance 0.1.0"}
    # Started through the link (…/current/bin/python): the same slot.
    assert running(root / "current", pkg)["slot"] == "a"
    b = running(root / "slots" / "b", pkg)
    assert b["slot"] == "b" and b["current"] is False and b["slot_file"] is None
    os.replace(root / "current", root / "old")
    os.symlink("slots/b", root / "current")
    assert running(root / "slots" / "b", pkg)["current"] is True


def test_checkout_is_dev_and_a_plain_venv_unslotted(tmp_path: Path) -> None:
    root, pkg = install(tmp_path)
    assert running(root / "slots" / "a", REPO / "appliance")["slot"] == "dev"
    plain = running(tmp_path / "venv", pkg)
    assert plain["slot"] == "unslotted" and plain["current"] is None


def test_version_option_from_the_checkout() -> None:
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--version"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"appliance {__version__} (slot dev)"
