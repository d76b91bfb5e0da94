"""Power-cut driver: the real service on PowerFS, under load, cut again and again.

One run mounts :class:`~tests.faults.powerfs.PowerFS` with the service's ``data_dir`` on it,
starts the real service (``python -m appliance.cli run --config CFG``: serial off, loopback
ports picked free, a fresh ``NOTIFY_SOCKET`` bound by the driver so that ``READY=1`` is seen for
real) and repeats, for each cut:

1. **load**: several client threads POST orders with unique idempotency keys to
   ``/api/v1/orders`` (bounded in count and time), recording every answer and the moment
   (``time.monotonic``) it was fully received;
2. **cut**, after a random delay: SIGKILL the filesystem process first (``PowerFS.power_off``),
   then SIGKILL the service by its PID; the backing store is rewritten to a random survivor
   state (``PowerFS.cut``) and remounted. A fraction of the cuts (``boot_cut_prob``) instead
   cut the idle service, then cut the next start midway (recovery, migrations), with no load;
3. **restart** the service on the same data and wait (bounded) for ``READY=1``;
4. **check**, with the service up: ``PRAGMA integrity_check`` on a read-only sqlite3
   connection through the mount; every acknowledged key (of every cut so far) has its
   ``orders`` row and its ``outbox`` row (stream ``orders``, ``payload.idempotency_key`` equal,
   outbox key equal to the order's ``outbox_key``); no ``orders`` outbox row lacks its order
   (one transaction); a sample of acknowledged keys re-POSTed gets 200 (known), never 201; the
   admin status's ``bite.journal.state`` is green. (Amber for "slow commits" only is reported
   apart and not a failure: the first commit after a remount waits for PowerFS to copy the
   database into its durable image, a cost of the harness, not of the service.)

The data accumulates across cuts. :meth:`PowerCutDriver.run` returns a :class:`Report`.
The data directory is created in the backing store before the first mount, as an installer
would: the service's own ``mkdir`` of it is not made durable (no fsync of the parent), so on a
fresh mount a cut would take the whole journal with it.

**Which answers count as acknowledged (the race at the cut).** ``t_cut`` is read from
``time.monotonic()`` immediately *before* the SIGKILL of the filesystem process. A client
thread reads ``time.monotonic()`` only *after* it has received the whole response. So an answer
with ``t_received < t_cut`` was sent by the service, hence its commit's fsync was answered by
the filesystem, before the filesystem died: the promise covers it and the driver counts it.
An answer received at or after ``t_cut`` ("late") may have been produced either way from
where the client stands, so it is never counted (it is reported, and checked for information
only). The rule may drop a genuine acknowledgement (a thread descheduled between receiving and
reading the clock), never count a false one. The same clock (``CLOCK_MONOTONIC``) is used by
all threads of the driver process. (In practice a 201 cannot be produced after the filesystem
died, since its fsync would fail; with FULL the late acks have all been found stored so far.)

CLI (from the repository root)::

    python -m tests.faults.driver --cuts 100 [--synchronous NORMAL] [--seed S] [--json]

prints the report and exits 1 if an acknowledged order was lost or any other check failed
(2 if FUSE is unavailable).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .powerfs import PowerFS, fuse_unavailable

__all__ = [
    "CutResult",
    "DriverConfig",
    "PowerCutDriver",
    "Report",
    "fuse_unavailable",
    "main",
    "run_cuts",
]

Synchronous = Literal["FULL", "NORMAL"]
ADMIN_TOKEN = "powercut-admin-token-0123456789"
ACK_STATUSES = frozenset({200, 201})
SEATS = tuple(f"{row}{letter}" for row in range(1, 40) for letter in "ABCDEF")
SKUS = ("COFFEE", "TEA", "WATER", "SANDWICH", "CROISSANT")




def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class DriverConfig:
    """What one run does.

    Attributes:
        cuts: power cuts to perform (each followed by a restart and a check).
        synchronous: the service's ``journal_synchronous`` (FULL keeps the promise).
        seed: seeds the delays, the cut-time choices of PowerFS and the keys' run tag.
        clients: concurrent HTTP clients during the load phase.
        load_s: the cut comes after a delay drawn uniformly from this range (s) of load.
        max_requests: per client and per cut (the load is bounded in count and in time).
        boot_cut_prob: probability that a cut hits the service while it starts instead.
        ready_timeout_s: bound on the wait for ``READY=1`` after each start.
        resubmit_sample: acknowledged keys re-POSTed after each restart (expect 200).
        stop_on_loss: end the run at the first cut after which something is lost.
        request_timeout_s: socket timeout of one HTTP request.
    """

    cuts: int = 10
    synchronous: Synchronous = "FULL"
    seed: int = 0
    clients: int = 8
    load_s: tuple[float, float] = (0.2, 1.0)
    max_requests: int = 5000
    boot_cut_prob: float = 0.1
    ready_timeout_s: float = 30.0
    resubmit_sample: int = 5
    stop_on_loss: bool = False
    request_timeout_s: float = 10.0


# ------------------------------------------------------------------------------ results
@dataclass
class CutResult:
    """One cut: what was acknowledged before it, and what the restart found.

    Attributes:
        index: 1-based cut number.
        at_boot: the cut hit the service while it was starting (no load).
        delay_s: time from the start of the load (or of the service) to the cut.
        requests: requests that got an answer or an error.
        acked: answers 200/201 received before the cut (counted; see the module doc).
        late_acks: answers 200/201 received after ``t_cut`` (not counted).
        errors: requests without an HTTP answer (refused, reset, timeout).
        rejected: other HTTP statuses (503 once the store failed, for example).
        new_lost: counted keys (of any cut) first found missing after this cut.
        late_lost: late acks missing after this cut (information only).
        outbox_missing: present orders whose outbox row is missing or does not match.
        orphan_outbox: ``orders`` outbox rows without their order (a torn transaction).
        resubmit_failures: stored acknowledged keys whose re-POST was not answered 200 with the
            stored outbox key (201 would mean the service did not see the stored order).
        integrity: first line of ``PRAGMA integrity_check`` (``ok`` when sound).
        ready: the restarted service sent ``READY=1`` in time.
        bite: ``bite.journal.state`` of the admin status after the restart.
        bite_reason: its reason.
        cut_s: power off, kill, rewrite and remount (s).
        ready_s: start of the service to ``READY=1`` (s).
        check_s: the checks (s).
        ops_dropped: unsynced operations the cut threw away.
        torn: writes the cut tore at a 512-byte boundary.
    """

    index: int
    at_boot: bool = False
    delay_s: float = 0.0
    requests: int = 0
    acked: int = 0
    late_acks: int = 0
    errors: int = 0
    rejected: int = 0
    new_lost: list[str] = field(default_factory=list)
    late_lost: int = 0
    outbox_missing: list[str] = field(default_factory=list)
    orphan_outbox: list[str] = field(default_factory=list)
    resubmit_failures: list[str] = field(default_factory=list)
    integrity: str = ""
    ready: bool = False
    bite: str = ""
    bite_reason: str = ""
    cut_s: float = 0.0
    ready_s: float = 0.0
    check_s: float = 0.0
    ops_dropped: int = 0
    torn: int = 0


@dataclass
class Report:
    """The outcome of a run (see :meth:`ok` and :meth:`summary`)."""

    synchronous: str
    seed: int
    cuts: list[CutResult] = field(default_factory=list)
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    first_ready: bool = False
    first_ready_s: float = 0.0
    powerfs_internal_errors: int = 0
    aborted: str | None = None
    seconds: float = 0.0
    workdir: str = ""

    @property
    def integrity_failures(self) -> int:
        """Cuts after which ``PRAGMA integrity_check`` was not ``ok``."""
        return sum(c.integrity != "ok" for c in self.cuts)

    @property
    def not_ready(self) -> int:
        """Starts (the first one included) that did not send ``READY=1`` in time."""
        return sum(not c.ready for c in self.cuts) + (not self.first_ready)

    @property
    def bite_not_green(self) -> int:
        """Restarts after which the journal's BITE was not green, slow commits aside (a failure)."""
        return sum(c.ready and c.bite != "green" and not _slow_only(c) for c in self.cuts)

    @property
    def bite_slow(self) -> int:
        """Restarts after which the journal's BITE was amber for slow commits only (reported)."""
        return sum(c.ready and _slow_only(c) for c in self.cuts)

    @property
    def outbox_missing(self) -> int:
        """Order rows found without their outbox row (summed over checks)."""
        return sum(len(c.outbox_missing) for c in self.cuts)

    @property
    def orphan_outbox(self) -> int:
        """Outbox rows of stream ``orders`` found without their order (summed over checks)."""
        return sum(len(c.orphan_outbox) for c in self.cuts)

    @property
    def resubmit_failures(self) -> int:
        """Re-POSTs of stored acknowledged keys not answered 200 with the stored order."""
        return sum(len(c.resubmit_failures) for c in self.cuts)

    @property
    def late_acks(self) -> int:
        """Answers 200/201 received after their cut (not counted as acknowledged)."""
        return sum(c.late_acks for c in self.cuts)

    @property
    def late_lost(self) -> int:
        """Late acks missing after the last check (information: they are not promised)."""
        return self.cuts[-1].late_lost if self.cuts else 0

    def ok(self) -> bool:
        """True if the promise held and every check passed."""
        return not (
            self.lost
            or self.integrity_failures
            or self.not_ready
            or self.bite_not_green
            or self.outbox_missing
            or self.orphan_outbox
            or self.resubmit_failures
            or self.powerfs_internal_errors
            or self.aborted
        )

    def timings(self) -> dict[str, dict[str, float]]:
        """Median and max (s) of each phase over the cuts."""
        out: dict[str, dict[str, float]] = {}
        for name in ("delay_s", "cut_s", "ready_s", "check_s"):
            values = [getattr(c, name) for c in self.cuts]
            if values:
                out[name] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
        return out

    def summary(self) -> str:
        """A human-readable report."""
        boot = sum(c.at_boot for c in self.cuts)
        lines = [
            f"power cuts: {len(self.cuts)} ({boot} during start-up), journal_synchronous={self.synchronous}, "
            f"seed={self.seed}, {self.seconds:.1f} s",
            f"acknowledged (before their cut): {self.acknowledged}; late acks (not counted): "
            f"{self.late_acks}, of which missing after the restart: {self.late_lost}",
            f"LOST acknowledged orders: {len(self.lost)}"
            + (f" (first: {', '.join(self.lost[:5])})" if self.lost else ""),
            f"integrity failures: {self.integrity_failures}; not ready: {self.not_ready}; "
            f"bite not green: {self.bite_not_green} (amber for slow commits, not counted: {self.bite_slow})",
            f"outbox rows missing: {self.outbox_missing}; orphan outbox rows: {self.orphan_outbox}; "
            f"re-POST failures: {self.resubmit_failures}; "
            f"powerfs internal errors: {self.powerfs_internal_errors}",
            f"unsynced ops dropped by the cuts: {sum(c.ops_dropped for c in self.cuts)}; "
            f"torn writes: {sum(c.torn for c in self.cuts)}",
            "timings (median / max s): "
            + ", ".join(f"{k} {v['median']} / {v['max']}" for k, v in self.timings().items()),
        ]
        if self.aborted:
            lines.append(f"ABORTED: {self.aborted}")
        bad = [c for c in self.cuts if c.integrity != "ok" or not c.ready or (c.ready and c.bite != "green")]
        bad.sort(key=_slow_only)  # real failures first
        for c in bad[:10]:
            lines.append(f"  cut {c.index}: integrity={c.integrity!r} ready={c.ready} bite={c.bite} "
                         f"({c.bite_reason})")
        lines.append("RESULT: " + ("OK" if self.ok() else "FAILED"))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``)."""
        d = asdict(self)
        d.update(
            ok=self.ok(),
            integrity_failures=self.integrity_failures,
            not_ready=self.not_ready,
            bite_not_green=self.bite_not_green,
            bite_slow=self.bite_slow,
            late_acks=self.late_acks,
            late_lost=self.late_lost,
            resubmit_failures=self.resubmit_failures,
            timings=self.timings(),
        )
        return d


def _slow_only(c: CutResult) -> bool:
    """The journal's BITE was amber only because the last commit was slow."""
    return c.bite == "amber" and c.bite_reason.startswith("slow commits")


# ------------------------------------------------------------------------------ load
@dataclass(frozen=True, slots=True)
class Answer:
    """One request: its key, HTTP status (None: no answer) and when it was fully received."""

    key: str
    status: int | None
    received: float


def order_body(key: str, rng: random.Random) -> bytes:
    """The JSON body of a valid order with idempotency key ``key``."""
    items = [{"sku": rng.choice(SKUS), "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 3))]
    return json.dumps({"idempotency_key": key, "seat": rng.choice(SEATS), "items": items}).encode()


def post_order(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to /api/v1/orders on ``conn``; return the status and the whole body."""
    conn.request("POST", "/api/v1/orders", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


class LoadClient(threading.Thread):
    """One client: POSTs new orders back to back until stopped, a count or a deadline.

    Every request is recorded in :attr:`answers`; ``received`` is read after the whole response
    has arrived (see the module doc for why that matters).
    """

    def __init__(self, port: int, prefix: str, stop: threading.Event, max_requests: int,
                 deadline: float, seed: int, timeout: float) -> None:
        super().__init__(name=f"load-{prefix}", daemon=True)
        self.port = port
        self.prefix = prefix
        self.stop_event = stop
        self.max_requests = max_requests
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.answers: list[Answer] = []

    def run(self) -> None:
        """Send requests; a connection error closes the connection and backs off a little."""
        conn: http.client.HTTPConnection | None = None
        try:
            for n in range(self.max_requests):
                if self.stop_event.is_set() or time.monotonic() >= self.deadline:
                    break
                key = f"{self.prefix}-{n:05d}"
                body = order_body(key, self.rng)
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                try:
                    status, _ = post_order(conn, body)
                except (OSError, http.client.HTTPException):
                    self.answers.append(Answer(key, None, time.monotonic()))
                    conn.close()
                    conn = None
                    self.stop_event.wait(0.02)
                    continue
                self.answers.append(Answer(key, status, time.monotonic()))
        finally:
            if conn is not None:
                conn.close()


# ------------------------------------------------------------------------------ the service
class ServiceProcess:
    """The real service (``python -m appliance.cli run``) as a subprocess.

    Each :meth:`start` binds a fresh ``NOTIFY_SOCKET`` (AF_UNIX datagram socket in a short
    temporary directory) and :meth:`wait_ready` reads it until ``READY=1``.
    """

    def __init__(self, run_dir: Path, data_dir: Path, synchronous: Synchronous) -> None:
        self.run_dir = run_dir
        self.data_dir = data_dir
        self.synchronous = synchronous
        self.passenger_port = free_port()
        self.admin_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify_dir = Path(tempfile.mkdtemp(prefix="pc-notify-"))  # short: AF_UNIX paths <= 107
        self._notify: socket.socket | None = None
        self.not_ready_exit: int | None = None  #: exit status of the last start that sent no READY
        self.starts = 0

    @property
    def log_path(self) -> Path:
        """The service's stdout and stderr (appended across starts)."""
        return self.run_dir / "service.log"

    @property
    def config_path(self) -> Path:
        """The TOML config the service runs with."""
        return self.run_dir / "appliance.toml"

    def write_config(self) -> Path:
        """Write the service's config (serial off, loopback ports, data_dir on the mount)."""
        self.config_path.write_text(
            f'aircraft_id = "F-PWRC"\n'
            f"data_dir = {json.dumps(str(self.data_dir))}\n"
            f'admin_token = "{ADMIN_TOKEN}"\n'
            f'journal_synchronous = "{self.synchronous}"\n'
            f'log_level = "WARNING"\n'
            f"[passenger]\nhost = \"127.0.0.1\"\nport = {self.passenger_port}\n"
            f"[admin]\nhost = \"127.0.0.1\"\nport = {self.admin_port}\n"
            f"[serial]\nenabled = false\n"
            # The load is 8 clients on one address ordering back to back, far past a passenger's
            # rate, and orders pile up over the cuts with no ground link: lift both limits.
            f"[orders]\nclient_per_min = 1e9\nclient_burst = 1000000\n"
            f"seat_per_min = 1e9\nseat_burst = 1000000\nmax_queued = 100000000\n"
        )
        return self.config_path

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the service's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Start the service with a fresh notify socket (the previous one is closed)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the service is already running")
        self._close_notify()
        self.starts += 1
        path = self._notify_dir / f"n{self.starts}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.bind(str(path))
        self._notify = sock
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "PYTHONUNBUFFERED": "1"}
        env.pop("APPLIANCE_CONFIG", None)
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "appliance.cli", "run", "--config", str(self.config_path)],
                cwd=self.run_dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float) -> bool:
        """Read the notify socket until ``READY=1`` (True), the process exits or ``timeout`` (False).

        The socket is closed once READY is seen, so the service's later WATCHDOG=1 datagrams never
        fill a queue nobody reads (its notify() then just returns False).
        """
        sock, proc = self._notify, self.proc
        if sock is None or proc is None:
            raise RuntimeError("the service was not started")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            exited = proc.poll() is not None
            if left <= 0 or exited:
                sock.setblocking(False)  # a READY sent just before an exit still counts
                with contextlib.suppress(OSError):
                    while True:
                        if "READY=1" in sock.recv(4096).decode(errors="replace").splitlines():
                            self._close_notify()
                            return True
                self.not_ready_exit = proc.returncode
                return False
            sock.settimeout(min(left, 0.1))
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            if "READY=1" in data.decode(errors="replace").splitlines():
                self._close_notify()
                return True

    def kill(self) -> None:
        """SIGKILL the service by its PID (a power cut) and reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); return the exit status (None if killed)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def _close_notify(self) -> None:
        if self._notify is not None:
            path = self._notify.getsockname()
            self._notify.close()
            self._notify = None
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        """Kill the service if still running and remove the notify socket directory."""
        self.kill()
        self._close_notify()
        shutil.rmtree(self._notify_dir, ignore_errors=True)

    def request(self, method: str, port: int, path: str, body: bytes | None = None,
                token: str | None = None) -> tuple[int, Any]:
        """One HTTP request to the service; returns (status, decoded JSON or None)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, None

    def status(self) -> dict[str, Any]:
        """GET /admin/v1/status with the admin token."""
        code, data = self.request("GET", self.admin_port, "/admin/v1/status", token=ADMIN_TOKEN)
        if code != 200 or not isinstance(data, dict):
            raise RuntimeError(f"admin status answered {code}: {data!r}")
        return data


# ------------------------------------------------------------------------------ checks
@dataclass
class DbView:
    """What the journal database holds, read through the mount."""

    integrity: str
    orders: dict[str, str]
    """idempotency_key -> outbox_key of every order."""
    outbox: dict[str, tuple[str, str | None]]
    """outbox idempotency_key -> (stream, payload.idempotency_key) of every outbox row."""


def read_db(db: Path) -> DbView:
    """Read ``db`` with a read-only sqlite3 connection (the service keeps running meanwhile).

    A missing file, or one that is not a database, reads as an empty view whose ``integrity``
    says what went wrong.
    """
    if not db.exists():
        return DbView("journal database missing", {}, {})
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return DbView(f"cannot open: {exc}", {}, {})
    try:
        rows = con.execute("PRAGMA integrity_check").fetchall()
        integrity = "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:5])
        orders = dict(con.execute("SELECT idempotency_key, outbox_key FROM orders").fetchall())
        outbox = {
            key: (stream, pkey)
            for key, stream, pkey in con.execute(
                "SELECT idempotency_key, stream, json_extract(payload, '$.idempotency_key') FROM outbox"
            )
        }
    except sqlite3.Error as exc:
        return DbView(f"cannot read: {exc}", {}, {})
    finally:
        con.close()
    return DbView(integrity, orders, outbox)


# ------------------------------------------------------------------------------ the driver
class PowerCutDriver:
    """Runs the cut loop of the module doc in ``workdir`` (see :meth:`run`).

    Use as a context manager: leaving it kills the service and removes the mount whatever
    happened.
    """

    def __init__(self, workdir: Path, config: DriverConfig,
                 log: Callable[[str], None] | None = None) -> None:
        self.workdir = workdir.absolute()
        self.config = config
        self.log = log or (lambda _msg: None)
        self.rng = random.Random(config.seed)
        self.tag = f"{self.rng.getrandbits(32):08x}"
        self.fs = PowerFS(self.workdir / "backing", self.workdir / "mnt", self.workdir / "state")
        run_dir = self.workdir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.service = ServiceProcess(run_dir, self.fs.mountpoint / "data", config.synchronous)
        self.acked: dict[str, int] = {}
        """Every counted key -> the cut before which it was acknowledged (insertion ordered)."""
        self.late: set[str] = set()
        self.lost: set[str] = set()
        self._last_ready_s = 1.0

    @property
    def db_path(self) -> Path:
        """The journal database, seen through the mount."""
        return self.service.data_dir / "journal.db"

    def __enter__(self) -> PowerCutDriver:
        """Create the data dir in the backing store (durable from the first mount) and mount."""
        # As an installer would: the data directory exists before the service's first start.
        # (Created by the service on the mount it would not be durable; see the report to the team.)
        (self.fs.backing_dir / "data").mkdir(parents=True, exist_ok=True)
        self.fs.mount()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the service (cleanly if possible) and unmount; never leave either behind."""
        try:
            self.service.stop()
        finally:
            try:
                self.service.close()
            finally:
                self.fs.unmount()

    # ------------------------------------------------------------------ phases
    def _load_until_cut(self, result: CutResult) -> None:
        """Run the clients, cut the power at a random moment, record what was acknowledged."""
        cfg = self.config
        delay = self.rng.uniform(*cfg.load_s)
        stop = threading.Event()
        start = time.monotonic()
        clients = [
            LoadClient(self.service.passenger_port, f"{self.tag}-{result.index:05d}-{i:02d}", stop,
                       cfg.max_requests, start + delay + 5.0, self.rng.getrandbits(32), cfg.request_timeout_s)
            for i in range(cfg.clients)
        ]
        for c in clients:
            c.start()
        time.sleep(delay)
        t_cut = self._power_cut()
        stop.set()
        for c in clients:
            c.join(timeout=cfg.request_timeout_s + 5)
            if c.is_alive():
                raise RuntimeError(f"load client {c.name} did not stop")
        result.delay_s = t_cut - start
        for c in clients:
            for a in c.answers:
                result.requests += 1
                if a.status is None:
                    result.errors += 1
                elif a.status not in ACK_STATUSES:
                    result.rejected += 1
                elif a.received < t_cut:
                    result.acked += 1
                    self.acked[a.key] = result.index
                else:
                    result.late_acks += 1
                    self.late.add(a.key)

    def _power_cut(self) -> float:
        """Kill the filesystem first, then the service; return ``t_cut`` (read before the kill)."""
        t_cut = time.monotonic()
        self.fs.power_off()
        self.service.kill()
        return t_cut

    def _boot_cut(self, result: CutResult) -> None:
        """Start the service and cut the power while it starts (recovery, migrations)."""
        result.at_boot = True
        self.service.start()
        # Most of a start is Python imports; aim at its second half (recovery, migrations, web).
        delay = self.rng.uniform(0.4, 1.0) * self._last_ready_s
        start = time.monotonic()
        time.sleep(delay)
        t_cut = self._power_cut()
        result.delay_s = t_cut - start

    def _restart(self, result: CutResult) -> None:
        """Rewrite the backing store to a survivor state, remount, start, wait for READY."""
        t0 = time.monotonic()
        report = self.fs.cut(self.rng)
        result.ops_dropped += report.ops_logged - report.ops_kept
        result.torn += report.torn
        t1 = time.monotonic()
        result.cut_s = t1 - t0
        self.service.start()
        result.ready = self.service.wait_ready(self.config.ready_timeout_s)
        result.ready_s = time.monotonic() - t1
        if result.ready:
            self._last_ready_s = result.ready_s
        if not result.ready:
            self.log(f"cut {result.index}: no READY=1 within {self.config.ready_timeout_s} s "
                     f"(exit status {self.service.not_ready_exit}):\n{self.service.log_tail()}")

    def _check(self, result: CutResult) -> None:
        """Check the database and the service after a restart (see the module doc)."""
        t0 = time.monotonic()
        view = read_db(self.db_path)
        result.integrity = view.integrity
        missing = [k for k in self.acked if k not in view.orders and k not in self.lost]
        result.new_lost = sorted(missing)
        self.lost.update(missing)
        result.late_lost = sum(k not in view.orders for k in self.late)
        for key, okey in view.orders.items():
            if key not in self.acked and key not in self.late:
                continue
            row = view.outbox.get(okey)
            if row is None or row != ("orders", key):
                result.outbox_missing.append(key)
        order_keys = set(view.orders)
        result.orphan_outbox = sorted(
            okey
            for okey, (stream, pkey) in view.outbox.items()
            if stream == "orders" and pkey not in order_keys
        )
        if result.ready:
            self._resubmit(result, view)
            try:
                bite = self.service.status()["bite"]["journal"]
                result.bite, result.bite_reason = str(bite["state"]), str(bite.get("reason", ""))
            except (OSError, RuntimeError, KeyError, http.client.HTTPException) as exc:
                result.bite, result.bite_reason = "unknown", f"status unavailable: {exc}"
        result.check_s = time.monotonic() - t0

    def _resubmit(self, result: CutResult, view: DbView) -> None:
        """Re-POST a sample of acknowledged keys that are stored: each must be answered 200."""
        present = [k for k in self.acked if k in view.orders]
        for key in self.rng.sample(present, min(self.config.resubmit_sample, len(present))):
            body = order_body(key, self.rng)
            port = self.service.passenger_port
            try:
                code, data = self.service.request("POST", port, "/api/v1/orders", body)
            except (OSError, http.client.HTTPException) as exc:
                result.resubmit_failures.append(f"{key}: {exc!r}")
                continue
            if code != 200 or not isinstance(data, dict) or data.get("outbox_key") != view.orders[key]:
                result.resubmit_failures.append(f"{key}: {code} {data!r}")

    # ------------------------------------------------------------------ the loop
    def run(self) -> Report:
        """Start the service, then cut, restart and check ``config.cuts`` times."""
        cfg = self.config
        report = Report(cfg.synchronous, cfg.seed, workdir=str(self.workdir))
        t_start = time.monotonic()
        self.service.write_config()
        self.service.start()
        report.first_ready = self.service.wait_ready(cfg.ready_timeout_s)
        report.first_ready_s = time.monotonic() - t_start
        self._last_ready_s = report.first_ready_s
        if not report.first_ready:
            report.aborted = f"the service did not start:\n{self.service.log_tail()}"
            report.seconds = time.monotonic() - t_start
            return report
        failed_starts = 0
        for index in range(1, cfg.cuts + 1):
            result = CutResult(index)
            if self.rng.random() < cfg.boot_cut_prob:
                # The idle service dies with the power, and the next start is cut too.
                self._power_cut()
                self._restart_fs_only(result)
                self._boot_cut(result)
            else:
                self._load_until_cut(result)
            self._restart(result)
            self._check(result)
            report.cuts.append(result)
            self.log(
                f"cut {index}/{cfg.cuts}{' (boot)' if result.at_boot else ''}: acked {result.acked}, "
                f"late {result.late_acks}, lost {len(result.new_lost)}, integrity {result.integrity}, "
                f"ready {result.ready} ({result.ready_s:.2f} s), bite {result.bite}"
            )
            failed_starts = 0 if result.ready else failed_starts + 1
            if failed_starts >= 3:
                report.aborted = f"3 starts in a row without READY=1:\n{self.service.log_tail()}"
                break
            if cfg.stop_on_loss and self.lost:
                break
        report.acknowledged = len(self.acked)
        report.lost = sorted(self.lost)
        report.powerfs_internal_errors = self.fs.log_text().count("internal error")
        report.seconds = time.monotonic() - t_start
        return report

    def _restart_fs_only(self, result: CutResult) -> None:
        """Rewrite and remount after a cut, without starting the service."""
        report = self.fs.cut(self.rng)
        result.ops_dropped += report.ops_logged - report.ops_kept
        result.torn += report.torn


@contextlib.contextmanager
def _workdir(path: Path | None, keep: bool) -> Iterator[Path]:
    """``path`` (created), or a fresh temporary directory removed afterwards unless ``keep``."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="powercut-"))
    try:
        yield tmp
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def run_cuts(config: DriverConfig, workdir: Path | None = None, *, keep: bool = False,
             log: Callable[[str], None] | None = None) -> Report:
    """Run one driver session with ``config`` in ``workdir`` (default: a temporary directory)."""
    with _workdir(workdir, keep) as wd, PowerCutDriver(wd, config, log) as driver:
        return driver.run()


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: run the cuts, print the report; exit 1 if anything was lost or a check failed."""
    p = argparse.ArgumentParser(prog="python -m tests.faults.driver", description=__doc__.split("\n")[0])
    p.add_argument("--cuts", type=int, default=10, help="power cuts (default 10)")
    p.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--load-min", type=float, default=0.2, help="shortest load before a cut (s)")
    p.add_argument("--load-max", type=float, default=1.0, help="longest load before a cut (s)")
    p.add_argument("--boot-cuts", type=float, default=0.1, help="share of cuts during start-up")
    p.add_argument("--stop-on-loss", action="store_true")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-cut progress lines")
    args = p.parse_args(argv)
    reason = fuse_unavailable()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    cfg = DriverConfig(cuts=args.cuts, synchronous=args.synchronous, seed=seed, clients=args.clients,
                       load_s=(args.load_min, args.load_max), boot_cut_prob=args.boot_cuts,
                       stop_on_loss=args.stop_on_loss)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    report = run_cuts(cfg, args.workdir, keep=args.keep, log=log)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.summary())
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
