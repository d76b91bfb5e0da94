"""The shape rules of the design, checked: the import contracts in pyproject.toml and module size.

The contracts (``[tool.importlinter]``): the core and the features never import the web edge;
``appliance.modes`` imports nothing of avionics, store, web or the features; only the CLI imports the
daemon; the features never import each other; firmware_bridge and ground_receiver never import
appliance. ``make imports`` prints the package-level graph and the same check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 500
# Kept before the restructure too (a quick, separate check).
KEPT_TODAY = ("daemon-root", "bridge-receiver-standalone")


def _lint_imports(*contracts: str) -> subprocess.CompletedProcess[str]:
    args = [a for c in contracts for a in ("--contract", c)]
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def oversized_modules() -> list[str]:
    """Product modules over MAX_LINES lines, as ``path: lines``."""
    modules = sorted((REPO / "appliance").rglob("*.py"))
    sizes = ((p, len(p.read_text(encoding="utf-8").splitlines())) for p in modules)
    return [f"{p.relative_to(REPO)}: {n} lines" for p, n in sizes if n > MAX_LINES]


def test_contracts_kept_today_stay_kept() -> None:
    proc = _lint_imports(*KEPT_TODAY)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_contracts_and_module_size() -> None:
    proc = _lint_imports()
    problems = []
    if proc.returncode != 0:
        problems.append("import contracts broken (lint-imports):\n" + proc.stdout + proc.stderr)
    if big := oversized_modules():
        problems.append(f"modules over {MAX_LINES} lines:\n  " + "\n  ".join(big))
    assert not problems, "\n\n".join(problems)
