"""Boot a real systemd in a ``systemd-nspawn`` container and talk to it through ``nsenter``.

The container is started with ``--register=no --keep-unit`` (no machined, no system bus on this
machine), so ``machinectl``/``systemctl -M`` cannot reach it; instead every command runs inside its
namespaces through ``nsenter -t LEADER -a`` (LEADER: the container's PID 1 as the host sees it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def unavailable() -> str | None:
    """Why an nspawn container cannot be booted here, or None if it can be tried."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} missing (apt-get install systemd-container util-linux)"
    return None


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Call ``fn`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Container:
    """One booted container: ``start()``, ``run(...)``, ``stop()`` (always, in a finally)."""

    def __init__(self, root: Path, name: str, log: Path, *, volatile: str = "yes",
                 bind_ro: Sequence[tuple[Path | str, str]] = (),
                 bind: Sequence[tuple[Path | str, str]] = (), kernel_args: Sequence[str] = ()):
        """Nothing starts before :meth:`start`."""
        self.root, self.name, self.log_path = root, name, log
        self.cmd = ["systemd-nspawn", "-D", str(root), "-M", name, f"--volatile={volatile}",
                    "--register=no", "--keep-unit", "--private-network", "-q"]
        self.cmd += [f"--bind-ro={src}:{dst}" for src, dst in bind_ro]
        self.cmd += [f"--bind={src}:{dst}" for src, dst in bind]
        self.cmd += ["-b", "systemd.firstboot=off", *kernel_args]
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0

    def start(self, timeout: float = 30.0) -> float:
        """Boot; return the seconds until systemd had finished starting up (running/degraded)."""
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        self.leader = wait_for("the container's PID 1", self._find_leader, timeout)
        wait_for("systemd to finish booting", lambda: self.run(
            "systemctl", "is-system-running", check=False).stdout.strip() in ("running", "degraded"),
            timeout - (time.monotonic() - t0), every=0.2)
        return time.monotonic() - t0

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console()}")
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        return int(child)
        except OSError:
            return None
        return None

    def run(self, *args: str, check: bool = True, timeout: float = 30.0,
            namespaces: Sequence[str] = ("-a",)) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces by default)."""
        res = subprocess.run(["nsenter", "-t", str(self.leader), *namespaces, *args],
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"{args} exited {res.returncode}:\n{res.stdout}{res.stderr}")
        return res

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` properties of ``unit``."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def http(self, port: int, path: str = "/", timeout: float = 2.0) -> str | None:
        """GET http://127.0.0.1:PORT/PATH inside the container's network; the body, or None."""
        res = self.run("curl", "-sf", "-m", str(timeout), f"http://127.0.0.1:{port}{path}",
                       check=False, timeout=timeout + 5, namespaces=("-n",))
        return res.stdout if res.returncode == 0 else None

    def journal(self, unit: str) -> str:
        """The unit's journal (its own lines and systemd's about it)."""
        return self.run("journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit).stdout

    def console(self) -> str:
        """What the container printed (boot messages)."""
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """Kill the container's PID 1 (the whole PID namespace goes with it); nspawn cleans up."""
        if self.proc is None:
            return
        if self.leader and self.proc.poll() is None:
            try:
                os.kill(self.leader, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
