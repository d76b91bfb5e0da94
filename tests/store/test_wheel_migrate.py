"""An installed wheel migrates: the top-level ``migrations/`` folder ships inside it.

The repo's two packages are built into wheels (no network: no build isolation, no dependencies) and
installed into a fresh venv that sees the development venv's site-packages for the third-party
dependencies only. The installed package then migrates, from a working directory outside the repo
(so the source tree cannot be imported), (a) a fresh journal through ``appliance.store.migrate`` and
(b) a journal left at revision 0003 with rows in it through the ``appliance migrate`` CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from appliance.store.engine import make_engine
from appliance.store.migrate import MIGRATIONS, alembic_config

REPO = Path(__file__).resolve().parents[2]
# What the wheels are built from (a copy, so that the build never writes into the work tree).
SOURCES = {
    "appliance": ["pyproject.toml", "setup.py", "appliance", "media", "migrations"],
    "firmware-bridge": ["firmware-bridge/pyproject.toml", "firmware-bridge/firmware_bridge"],
}
OLD = "0003"


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the two wheels built from this tree; returns its ``bin`` folder."""
    base = tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name, paths in SOURCES.items():
        for rel in paths:
            src, dst = REPO / rel, base / "src" / name / Path(rel).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=ignore)
            else:
                shutil.copy2(src, dst)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-cache-dir",
          "-w", str(base / "wheels"), str(base / "src" / "firmware-bridge"), str(base / "src" / "appliance")],
         cwd=base, timeout=180)
    wheels = sorted((base / "wheels").glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["appliance", "firmware_bridge"]

    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    _run([*pip, "--python", str(py), "install", "--quiet", "--no-deps", "--no-index",
          *map(str, wheels)], cwd=base)
    # Third-party dependencies from the development venv; its editable finders (.pth files in it)
    # are not run for a folder named in a .pth line, so the source tree stays out of reach.
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        cwd=base).stdout.strip())
    (purelib / "zz_dev_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir / "bin"


def _env(data_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PYTHON"))}
    return {**keep, "APPLIANCE_DATA_DIR": str(data_dir)}


def _revision(db: Path) -> str:
    with sqlite3.connect(db) as c:
        (rev,) = c.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(rev)


def test_installed_package_is_the_wheel(installed: Path, tmp_path: Path) -> None:
    probe = ("import json, appliance, appliance.migrations, firmware_bridge\n"
             "from appliance.store.migrate import MIGRATIONS\n"
             "print(json.dumps([appliance.__file__, firmware_bridge.__file__, str(MIGRATIONS),"
             " sorted(p.name for p in (MIGRATIONS / 'versions').glob('*.py'))]))")
    out = _run([str(installed / "python"), "-c", probe], cwd=tmp_path, env=_env(tmp_path)).stdout
    app, bridge, migrations, versions = json.loads(out)
    venv_dir = str(installed.parent)
    assert app.startswith(venv_dir) and bridge.startswith(venv_dir), (app, bridge)
    assert migrations.startswith(venv_dir) and Path(migrations).name == "migrations"
    assert versions == sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))


def test_wheel_migrates_a_fresh_journal(installed: Path, tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    script = ("import sys\nfrom pathlib import Path\n"
              "from appliance.store.engine import make_engine\nfrom appliance.store.migrate import upgrade\n"
              "db = Path(sys.argv[1])\nprint(upgrade(make_engine(db), db))")
    out = _run([str(installed / "python"), "-c", script, str(db)], cwd=tmp_path, env=_env(tmp_path)).stdout
    assert out.strip() == "None"  # nothing to back up in a new database
    assert _revision(db) == _head()
    with sqlite3.connect(db) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"journal", "outbox", "sync_stream"} <= tables


def test_wheel_migrates_an_old_journal(installed: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = data / "journal.db"
    engine = make_engine(db)
    command.upgrade(alembic_config(engine), OLD)  # the old schema, from the source tree
    with engine.begin() as c:
        for i, kind in enumerate(["mode", "phase", "bite"], start=1):
            c.exec_driver_sql(
                "INSERT INTO journal (kind, t_card, utc, time_source, summary, data, created) "
                "VALUES (?, ?, ?, 'gps', ?, ?, ?)",
                (kind, 10.0 * i, 1_720_249_163.0 + i, f"{kind} row {i}", json.dumps({"n": i}), 1000.0 + i))
        c.exec_driver_sql(
            "INSERT INTO outbox (stream, seq, idempotency_key, priority, payload, created) "
            "VALUES ('events', 1, 'F-TEST/events/1', 1, ?, 1001.0)", (json.dumps({"journal_id": 1}),))
    engine.dispose()
    assert _revision(db) == OLD
    head = _head()
    assert head != OLD

    out = _run([str(installed / "appliance"), "migrate"], cwd=tmp_path, env=_env(data)).stdout
    assert f"backup journal.db.pre-{head}.bak" in out, out
    assert _revision(db) == head
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT id, kind, summary FROM journal ORDER BY id").fetchall()
        keys = c.execute("SELECT stream, seq, idempotency_key FROM outbox").fetchall()
    assert rows == [(1, "mode", "mode row 1"), (2, "phase", "phase row 2"), (3, "bite", "bite row 3")]
    assert keys == [("events", 1, "F-TEST/events/1")]
    assert _revision(data / f"journal.db.pre-{head}.bak") == OLD  # the backup is the old journal
