"""The unit under a real systemd (252) booted with systemd-nspawn: READY, restart, watchdog, STATUS.

The container is the host's own tree, cheaply: ``--volatile=yes`` gives a tmpfs root with the host's
/usr read-only; bind-mounted read-only into it are the repository (same path; its venv runs the
service), the Python the venv points to, and the shipped files: the unit, its sysusers/tmpfiles
entries and a test config. A drop-in changes only what the test environment needs: ExecStart (the
repo venv instead of /opt/appliance/current), the paths to see through ProtectHome/PrivateTmp,
WatchdogSec=3s and RestartSec=1s (the shipped 10 s / 2 s would make the test slow), and the test-only
hang hook. Every other line, the hardening included, is the shipped unit.

Skips when systemd-nspawn is missing or cannot boot here. About 30 s; ``make test-systemd`` runs
this directory alone.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.nspawn import Container, unavailable, wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = "appliance.service"
HANG = "/run/appliance-test/hang"
TOKEN = "nspawn-token-0123456789"
CONFIG = f"""
aircraft_id = "F-NSPAWN"
admin_token = "{TOKEN}"
[passenger]
host = "127.0.0.1"
port = 8080
[admin]
host = "127.0.0.1"
port = 8081
[serial]
enabled = false
"""

pytestmark = [pytest.mark.systemd, pytest.mark.system,
              pytest.mark.skipif(unavailable() is not None, reason=f"nspawn: {unavailable()}")]


def _needed_paths() -> list[Path]:
    """What the venv's ``appliance`` needs that the container's host /usr does not have."""
    paths: list[Path] = []
    for p in (REPO, Path(sys.prefix), Path(sys.base_prefix)):
        p = p.resolve()
        if p.is_relative_to("/usr") or any(p.is_relative_to(q) for q in paths):
            continue
        paths = [q for q in paths if not q.is_relative_to(p)] + [p]
    return paths


def _dropin(paths: list[Path]) -> str:
    hidden = [p for p in paths if p.parts[1] in ("root", "home", "tmp", "var")]
    lines = ["[Service]", "ExecStart=",
             f"ExecStart={REPO / '.venv/bin/appliance'} run --config %E/appliance/appliance.toml",
             "WatchdogSec=3s", "RestartSec=1s",
             f"Environment=APPLIANCE_TEST_HANG_FILE={HANG}"]
    if any(p.parts[1] in ("root", "home") for p in hidden):
        lines.append("ProtectHome=tmpfs")
    if any(p.parts[1] == "tmp" for p in hidden):
        lines.append("PrivateTmp=no")
    lines += [f"BindReadOnlyPaths={p}" for p in hidden]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    if not (REPO / ".venv/bin/appliance").exists():
        pytest.skip("no .venv/bin/appliance (make deps)")
    d = tmp_path_factory.mktemp("nspawn")
    (d / "test.conf").write_text(_dropin(_needed_paths()))
    (d / "appliance.toml").write_text(CONFIG)
    (d / "appliance-test.target").write_text(
        "[Unit]\nDescription=appliance test boot\nRequires=basic.target\nAfter=basic.target\n")
    etc = "/etc/systemd/system"
    binds = [(SYSTEMD / "appliance.service", f"{etc}/{UNIT}"),
             (d / "test.conf", f"{etc}/{UNIT}.d/test.conf"),
             (d / "appliance-test.target", f"{etc}/appliance-test.target"),
             (SYSTEMD / "appliance.sysusers", "/etc/sysusers.d/appliance.conf"),
             (SYSTEMD / "appliance.tmpfiles", "/etc/tmpfiles.d/appliance.conf"),
             (d / "appliance.toml", "/etc/appliance/appliance.toml")]
    binds += [(p, str(p)) for p in _needed_paths()]
    box = Container(Path("/"), f"appliance-test-{d.name[-6:]}", d / "console.log", bind_ro=binds,
                    kernel_args=["systemd.unit=appliance-test.target"])
    try:
        try:
            box.boot_s = box.start(timeout=40)  # type: ignore[attr-defined]
        except (TimeoutError, RuntimeError) as e:
            pytest.skip(f"systemd-nspawn cannot boot here: {e}\n{box.console()}")
        box.run("mkdir", "-p", str(Path(HANG).parent))
        yield box
    finally:
        box.stop()


def _state(box: Container) -> dict[str, str]:
    return box.show(UNIT, "ActiveState", "SubState", "MainPID", "NRestarts", "Result",
                    "ExecMainStatus", "StatusText", "ExecMainStartTimestampMonotonic",
                    "ActiveEnterTimestampMonotonic")


def _active(box: Container) -> dict[str, str] | None:
    st = _state(box)
    return st if st["ActiveState"] == "active" and st["SubState"] == "running" else None


def test_boots_fast_enough(box: Container) -> None:
    assert box.boot_s < 20  # type: ignore[attr-defined]
    assert _state(box)["ActiveState"] == "inactive"  # the test target does not pull it in


def test_active_only_after_ready(box: Container) -> None:
    """Hold the main process before it could say READY=1: the unit stays 'activating'."""
    box.run("systemctl", "start", "--no-block", UNIT)
    pid = wait_for("a main PID", lambda: int(_state(box)["MainPID"]) or None, 10, every=0.01)
    box.run("kill", "-STOP", str(pid))
    try:
        st = _state(box)
        assert st["ActiveState"] == "activating", f"too late to test (python started in <50 ms?): {st}"
        time.sleep(2.5)
        st = _state(box)
        assert (st["ActiveState"], st["SubState"]) == ("activating", "start"), st
        assert box.http(8080, "/api/v1/flight", timeout=0.5) is None  # no READY, no port either
    finally:
        box.run("kill", "-CONT", str(pid))
    st = wait_for("active", lambda: _active(box), 30)
    waited = int(st["ActiveEnterTimestampMonotonic"]) - int(st["ExecMainStartTimestampMonotonic"])
    assert waited >= 2_500_000, st
    assert box.http(8080, "/api/v1/flight") is not None
    assert "ready: passenger http://127.0.0.1:8080" in box.journal(UNIT)


def test_status_shows_the_status_line(box: Container) -> None:
    wait_for("active", lambda: _active(box), 30)
    def status() -> str | None:
        out = box.run("systemctl", "status", "--no-pager", "--lines=0", UNIT, check=False).stdout
        return out if "Status:" in out else None

    out = wait_for("a STATUS= line", status, 10)
    assert 'Status: "mode GROUND, ' in out, out
    assert re.search(r"phase \w+; BITE (green|amber|red)\b.*; \d+ events pending", out), out
    assert "journal red" not in out, out  # the journal is healthy (BITE names only what is not green)


def test_sigkill_is_followed_by_a_restart(box: Container) -> None:
    before = wait_for("active", lambda: _active(box), 30)
    box.run("kill", "-KILL", before["MainPID"])
    after = wait_for("a restart", lambda: (st := _active(box)) and
                     int(st["NRestarts"]) == int(before["NRestarts"]) + 1 and st, 30)
    assert after["MainPID"] != before["MainPID"]
    assert box.http(8080, "/api/v1/flight") is not None
    assert "Main process exited, code=killed, status=9/KILL" in box.journal(UNIT)


def test_an_exit_systemd_did_not_ask_for_is_restarted(box: Container) -> None:
    """Issue 14: the old software activation SIGTERMed its own process, which then exits 0.

    systemd did not ask for that stop, yet ``Restart=on-failure`` ignores a clean exit: the cabin
    server stayed down until the next power cycle. ``Restart=always`` restarts it (``systemctl
    stop`` still stops it for good: test_stop_is_clean; exit 78 is still not retried).
    """
    before = wait_for("active", lambda: _active(box), 30)
    box.run("kill", "-TERM", before["MainPID"])  # what the old activator did to itself
    after = wait_for("a restart after a clean exit", lambda: (st := _active(box)) and
                     st["MainPID"] != before["MainPID"] and st, 15)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert box.http(8080, "/api/v1/flight") is not None


def test_a_hung_main_loop_is_caught_by_the_watchdog(box: Container) -> None:
    before = wait_for("active", lambda: _active(box), 30)
    box.run("touch", HANG)
    try:
        wait_for("the watchdog", lambda: "Watchdog timeout" in box.journal(UNIT), 15, every=0.25)
    finally:
        box.run("rm", "-f", HANG)
    after = wait_for("a restart", lambda: (st := _active(box)) and
                     int(st["NRestarts"]) >= int(before["NRestarts"]) + 1 and
                     st["MainPID"] != before["MainPID"] and st, 30)
    journal = box.journal(UNIT)
    assert "test hang hook" in journal
    assert "Failed with result 'watchdog'" in journal, journal
    assert after["ActiveState"] == "active"


def test_invalid_config_stops_without_restart_loop(box: Container,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    cfg = next(p for p in Path(tmp_path_factory.getbasetemp()).glob("nspawn*/appliance.toml"))
    box.run("systemctl", "stop", UNIT)
    cfg.write_text(CONFIG + "\nno_such_key = 1\n")  # same inode: the bind mount sees it
    try:
        box.run("systemctl", "start", UNIT, check=False)
        st = wait_for("failed", lambda: (s := _state(box))["ActiveState"] == "failed" and s, 15)
        time.sleep(2.5)  # longer than RestartSec
        st = _state(box)
        assert st["ActiveState"] == "failed" and st["ExecMainStatus"] == "78", st
        assert st["NRestarts"] == "0"  # a manual start resets it; no automatic restart followed
    finally:
        cfg.write_text(CONFIG)
        box.run("systemctl", "reset-failed", UNIT, check=False)


def test_stop_is_clean(box: Container) -> None:
    box.run("systemctl", "start", UNIT)  # returns once READY=1 arrived
    assert _state(box)["ActiveState"] == "active"
    box.run("systemctl", "stop", UNIT)
    st = _state(box)
    assert (st["ActiveState"], st["Result"], st["ExecMainStatus"]) == ("inactive", "success", "0"), st
    assert "Deactivated successfully" in box.journal(UNIT)
