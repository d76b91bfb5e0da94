"""Issue 5, acceptance 3: power cuts during upload, staging and activation of a content bundle.

The intake service runs as its own process (:mod:`tests.intake.intake_proc`, the real wiring and
router) with its data dir on PowerFS, which throws away whatever was not fsynced at a cut. Content
v1 (two titles) is pushed and activated uncut; then v2 (the same two titles, new files) is pushed
by a client driven step by step and the power is cut 9 times: 3 during the upload (between two
acknowledged chunks, and twice while a chunk is in flight), 3 during finalize (right after the
request, while the payload is unpacked, once the staged directory appears) and 3 during
activation (while a package is copied into the store, once a new package directory appears, and
after a random delay). Each cut: the filesystem is killed first, then the process; the backing
dir is rewritten to a random survivor state; the process restarts.

After each restart: the active content is exactly v1 or exactly v2, never a mix (the
``intake_installed`` row, every ``content`` catalog row and every file of every title on disk agree;
each file matches its manifest's SHA-256); the upload's resume offset (the client's status query)
is at least what was acknowledged and at most what was sent, and the part file holds exactly the
payload's first ``received`` bytes. At the end the real push client (``hangar.push``) resumes from
that offset and v2 is active.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.intake.bundle import METADATA, PAYLOAD
from appliance.intake.hangar import push

from ..faults.driver import fuse_unavailable
from ..faults.powerfs import PowerFS
from .helpers import KEYS, make_bundle, pub_hex

REPO = Path(__file__).resolve().parents[2]
TOKEN = "intake-powercut-token-0123456789"
CHUNK = 32768
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Proc:
    """The intake process, its stdout read by a thread."""

    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.intake.intake_proc", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = self.lines.get(timeout=0.1)
                if line.startswith("READY"):
                    self.url = f"http://127.0.0.1:{line.split()[1].split('=')[1]}"
                    return
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read()[-4000:] if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"intake process: no READY within {timeout} s: {err}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def texts(version: int) -> dict[str, str]:
    """Two titles, incompressible enough that v2's payload takes ~10 chunks."""
    rng = random.Random(version)
    return {t: f"{t} v{version} " + rng.randbytes(180_000).hex() for t in ("guide", "news")}


def expected_pages(version: int) -> dict[str, str]:
    """Title -> SHA-256 of its page in ``version``."""
    return {t: sha(f"<html><body>{x}</body></html>".encode()) for t, x in texts(version).items()}


class Client:
    """The hangar side, one HTTP step at a time (the cuts land between or inside steps)."""

    def __init__(self, bundle: Path) -> None:
        self.env = json.loads((bundle / METADATA).read_bytes())
        self.payload = (bundle / PAYLOAD).read_bytes()
        self.url = ""
        self.bid = ""
        self.acked = 0  # the highest offset the aircraft confirmed as received
        self.sent = 0  # the highest offset whose bytes were sent

    def call(self, method: str, path: str, timeout: float = 30.0, **kw: Any) -> dict[str, Any]:
        r = httpx.request(method, f"{self.url}/admin/v1/intake{path}", headers=AUTH,
                          timeout=timeout, **kw)
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        body: dict[str, Any] = r.json()
        return body

    def begin(self) -> dict[str, Any]:
        st = self.call("POST", "/uploads", json=self.env)
        self.bid = st["id"]
        return st

    def status(self) -> dict[str, Any]:
        return self.call("GET", f"/uploads/{self.bid}")

    def put(self, off: int) -> dict[str, Any]:
        chunk = self.payload[off:off + CHUNK]
        self.sent = max(self.sent, off + len(chunk))
        st = self.call("PUT", f"/uploads/{self.bid}", params={"offset": off}, content=chunk)
        self.acked = max(self.acked, st["received"])
        return st


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    """Run a request whose answer the cut will cut off (its transport error is expected)."""
    def run() -> None:
        with contextlib.suppress(httpx.TransportError, AssertionError):
            fn()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return False


def pause(s: float) -> bool:
    """Sleep ``s`` seconds; True (the cut is "seen": it lands at a random moment)."""
    time.sleep(s)
    return True


def active_version(data: Path, url: str) -> int:
    """The single active content version (1 or 2); fails on any mix or damaged file."""
    probe = httpx.get(f"{url}/probe", timeout=30).json()
    inst = probe["installed"].get("content")
    assert inst is not None, f"no content installed after a cut: {probe}"
    version = int(inst["version"])
    assert version in (1, 2), inst
    want = expected_pages(version)
    rows = {r["id"]: r for r in probe["content"]}
    assert set(rows) == set(want), f"catalog titles {sorted(rows)} != v{version}'s {sorted(want)}"
    for tid, r in rows.items():
        files = r["manifest"]["files"]
        assert files["book/index.html"]["sha256"] == want[tid], \
            f"mix: intake says v{version}, catalog row of {tid} is another version"
        pkg = data / "content" / "packages" / r["dir"]
        assert json.loads((pkg / "package.json").read_bytes())["files"] == files, (tid, r["dir"])
        for rel, entry in files.items():
            body = (pkg / rel).read_bytes()
            assert len(body) == entry["size"] and sha(body) == entry["sha256"], (tid, rel)
    return version


@pytest.mark.e2e
@pytest.mark.timeout(170)
def test_power_cuts_during_upload_staging_activation(tmp_path: Path) -> None:
    why_not = fuse_unavailable()
    if why_not:
        pytest.skip(f"PowerFS unavailable: {why_not}")
    t0 = time.monotonic()
    b1 = make_bundle(tmp_path, 1, texts(1), KEYS[:2])
    b2 = make_bundle(tmp_path, 2, texts(2), KEYS[:2])
    fs = PowerFS(tmp_path / "backing", tmp_path / "mnt", tmp_path / "fsstate")
    data = fs.mountpoint
    cfg = tmp_path / "intake.json"
    cfg.write_text(json.dumps({
        "data": str(data), "token": TOKEN, "chunk_bytes": CHUNK,
        "roles": {"content": {"keys": [pub_hex(k) for k in KEYS[:3]], "threshold": 2}}}))
    rng = random.Random(20260505)
    proc: Proc | None = None
    c = Client(b2)
    outcomes: list[str] = []

    def start() -> None:
        nonlocal proc
        proc = Proc(cfg)
        proc.wait_ready()
        c.url = proc.url

    def cut(label: str, pending: threading.Thread | None = None) -> None:
        assert proc is not None
        fs.power_off()  # the storage first: nothing acknowledged after this counts
        proc.kill()
        if pending is not None:
            pending.join(30)
        fs.cut(rng)
        start()
        version = active_version(data, c.url)
        st = c.status()
        # The durable offset: never behind an acknowledged chunk, never ahead of the sent bytes.
        assert c.acked <= st["received"] <= max(c.sent, c.acked), (label, st, c.acked, c.sent)
        if st["state"] == "receiving":
            part = (data / "intake" / "uploads" / f"{c.bid}.part").read_bytes()
            assert part == c.payload[:st["received"]], f"{label}: part file != payload prefix"
        c.acked = max(c.acked, st["received"])
        outcomes.append(f"{label}: v{version} active, upload {st['state']} at {st['received']}")

    try:
        fs.mount()
        start()
        r1 = push(b1, c.url, TOKEN, retry_s=0.05, give_up_s=60)
        assert r1.status["state"] == "active"
        assert active_version(data, c.url) == 1
        t_v1 = time.monotonic()

        # --- upload: cut between acknowledged chunks, then twice with a chunk in flight
        st = c.begin()
        assert st["received"] == 0 and len(c.payload) > 8 * CHUNK, len(c.payload)
        for _ in range(2):
            c.put(c.acked)
        cut("upload, between chunks 2 and 3")
        for n in range(2):
            for _ in range(rng.randint(1, 3)):
                c.put(c.acked)
            off = c.acked
            pending = in_thread(functools.partial(c.put, off))
            time.sleep(rng.uniform(0.0, 0.03))
            cut(f"upload, chunk {off // CHUNK + 1} in flight ({n + 1})", pending)
        while (st := c.status())["state"] == "receiving":
            c.put(st["received"])
        assert st["state"] == "complete"

        # --- finalize (verify + unpack + stage)
        intake = data / "intake"

        def has(d: Path) -> Callable[[], bool]:
            return lambda: d.exists()

        finalize_at: list[tuple[str, Callable[[], bool] | None]] = [
            ("right after the request", None),
            ("while unpacking", has(intake / "unpack" / c.bid)),
            ("once the staged dir appears", has(intake / "staged" / c.bid))]
        for what, cond in finalize_at:
            if c.status()["state"] != "complete":
                break
            pending = in_thread(lambda: c.call("POST", f"/uploads/{c.bid}/finalize"))
            hit = wait_until(cond, 10) if cond else pause(rng.uniform(0, 0.01))
            cut(f"finalize, {what}{'' if hit else ' (not seen)'}", pending)
        if c.status()["state"] == "complete":
            c.call("POST", f"/uploads/{c.bid}/finalize")
        assert c.status()["state"] == "staged"

        # --- activation (copy each package into the store, one catalog transaction)
        store = data / "content"
        v1_dirs = {p.name for p in (store / "packages").iterdir()}
        activate_at: list[tuple[str, Callable[[], bool] | None]] = [
            ("while a package is copied", lambda: any((store / ".staging").iterdir())),
            ("once a new package dir appears",
             lambda: bool({p.name for p in (store / "packages").iterdir()} - v1_dirs)),
            ("after a random delay", None)]
        for what, cond in activate_at:
            if c.status()["state"] != "staged":
                break
            pending = in_thread(lambda: c.call("POST", f"/uploads/{c.bid}/activate"))
            hit = wait_until(cond, 10) if cond else pause(rng.uniform(0, 0.3))
            cut(f"activate, {what}{'' if hit else ' (not seen)'}", pending)

        # --- the real client resumes and finishes
        res = push(b2, c.url, TOKEN, retry_s=0.05, give_up_s=60)
        assert res.status["state"] == "active", res.status
        assert res.bytes_sent <= len(c.payload) - c.acked + CHUNK
        assert active_version(data, c.url) == 2
    finally:
        if proc is not None:
            proc.kill()
        fs.unmount()
    print(f"\nv1 installed in {t_v1 - t0:.1f} s; {fs.cuts} cuts, total {time.monotonic() - t0:.1f} s")
    for o in outcomes:
        print("  " + o)
    assert fs.cuts == 9
    assert "internal error" not in fs.log_text()
