"""The privileged software updater: re-verify, install the inactive slot, switch, trial, roll back.

The service (``User=appliance``, ``ProtectSystem=strict``) never writes the software slots. When a
software bundle is activated it writes a *request* (``<staging_dir>/software/request.json``:
bundle id and signed envelope) on the data partition and nothing else; the path unit
``appliance-update.path`` sees it and starts ``appliance-update.service`` (root), which runs
``appliance updater apply`` from the image's own copy of the appliance
(``/usr/lib/appliance/updater``, the version the image was built with: a broken slot cannot break
the updater). :func:`apply`:

1. re-verifies the envelope against the pinned keys (signatures, threshold, version above the
   current slot's; the service already judged expiry by its time floor) and copies the staged
   files the manifest names into a root-owned directory, checking each one's length and SHA-256
   (so nothing the service's user writes afterwards reaches the slot);
2. installs them into the inactive slot (:func:`~.slots.venv_installer`: a virtualenv and
   ``pip install --no-index`` of the bundle's wheels; the slot is whole or absent);
3. writes ``trial.json`` (the update is *accepted*: it names the new slot and the bundle), then
   removes the request, then flips ``current``. The request goes only once the trial record is
   durable, so at every instant one of the two answers for the update (see "Power cuts" below);
4. restarts ``appliance.service`` through systemd (``systemctl restart``) and judges the new
   invocation (:func:`run_trial`): it must reach READY (``ActiveState=active``) and pass the health
   check (:func:`probe_health`: the journal commits, the avionics chain answers, both ports answer)
   continuously for ``settle_s`` within ``health_bound_s``. A crash (``auto-restart``/``failed``, or
   a second invocation), no READY=1 in time, or a failing health check all fail the trial;
5. decides: the outcome is first written into ``trial.json`` (``result``: ``committed``, or
   ``rolled_back`` before ``current`` is flipped back and the unit restarted into the old slot),
   then the report is written on the data partition under a name fixed by the trial (the service
   journals it, kind ``intake``, queued to the ground, and shows it on BITE), then ``trial.json``
   is removed.

Power cuts. ``appliance updater boot-check`` (``appliance-update-check.service``, before
``appliance.service``; also the first step of ``apply``) settles what a cut left, so every
accepted update ends in exactly one report: a half-built slot is removed (the request is still
there: the path unit takes it again after boot); a ``trial.json`` with a ``result`` is finished
(the old slot made current again for ``rolled_back``, the same report file rewritten); one whose
new slot is not current while the request for the same bundle is still there (cut between the
trial record and the request's removal) is left for the path unit, and ``apply`` resumes at the
switch without installing again; one whose new slot is not current and whose request is gone (cut
before the flip) is ``abandoned``; one whose new slot is current (cut during the trial) is rolled
back before the service starts. A request answered by a report is removed with it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pwd
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ApplianceError, BundleRefused, IntakeError
from ..settings import Settings, load_settings
from ..store.files import atomic_write, ensure_dir, fsync_dir
from .bundle import BundleMeta, Trust, load_envelope, safe_path, verify
from .keyset import read_trust
from .reports import pending_request
from .slots import SLOTS, SlotInstaller, SoftwareSlots, venv_installer

__all__ = ["Systemctl", "UpdaterPaths", "apply", "boot_check", "probe_health", "run_trial"]

log = logging.getLogger(__name__)
UNIT = "appliance.service"
#: The new slot must pass its health check without a break for this long (s) to be committed.
SETTLE_S = 5.0
POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class UpdaterPaths:
    """Where the updater reads and writes: ``software`` (slots), ``staging`` (``<staging_dir>``)."""

    software: Path
    staging: Path

    @classmethod
    def from_settings(cls, s: Settings) -> UpdaterPaths:
        """From the appliance's settings (``intake.software_root``, ``intake.staging_dir``)."""
        return cls(s.intake.software_root, s.intake.staging_dir or s.data_dir / "intake")

    @property
    def request(self) -> Path:
        """The service's request file."""
        return self.staging / "software" / "request.json"

    def staged(self, bid: str) -> Path:
        """The service's staged folder of bundle ``bid``."""
        return self.staging / "staged" / bid

    def slots(self) -> SoftwareSlots:
        """The slots, with reports on the data partition."""
        return SoftwareSlots(self.software, self.staging / "software" / "reports")


def service_owner() -> tuple[int, int] | None:
    """(uid, gid) of the ``appliance`` user, so the service can take the reports; None if absent."""
    try:
        pw = pwd.getpwnam("appliance")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


class Systemctl:
    """The unit's state and restarts through ``systemctl`` (the updater runs as root)."""

    PROPS = ("ActiveState", "SubState", "InvocationID", "Result", "ExecMainStatus", "NRestarts")

    def show(self, unit: str) -> dict[str, str]:
        """``systemctl show`` of :attr:`PROPS`."""
        out = subprocess.run(["systemctl", "show", unit, *(f"--property={p}" for p in self.PROPS)],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def restart(self, unit: str) -> None:
        """Clear a failed state and queue a restart (``--no-block``: the trial watches it)."""
        subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, timeout=30)
        subprocess.run(["systemctl", "restart", "--no-block", unit], capture_output=True,
                       check=True, timeout=30)


def _local(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def _get(url: str, token: str | None, timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def probe_health(s: Settings, timeout: float = 2.0) -> tuple[bool, str]:
    """The running service's health as the updater judges a trial: ``(ok, why not)``.

    Both ports answer: the passenger port's ``GET /api/v1/flight`` with 200 and a mode; the admin
    port's ``GET /admin/v1/status`` (with the admin token when one is configured: 200, else any
    HTTP answer). With the token, the status must also show the journal committing
    (``journal.failing`` false, BITE journal not red) and the avionics chain running (a mode, a
    phase and the configured sources).
    """
    try:
        code, body = _get(f"http://{_local(s.passenger.host)}:{s.passenger.port}/api/v1/flight",
                          None, timeout)
        if code != 200 or "mode" not in json.loads(body or b"{}"):
            return False, f"passenger port: HTTP {code}"
    except (OSError, ValueError) as e:
        return False, f"passenger port: {e}"
    token = s.admin_token.get_secret_value() if s.admin_token else None
    try:
        code, body = _get(f"http://{_local(s.admin.host)}:{s.admin.port}/admin/v1/status",
                          token, timeout)
    except OSError as e:
        return False, f"admin port: {e}"
    if token is None:
        return True, ""
    if code != 200:
        return False, f"admin port: HTTP {code}"
    try:
        st = json.loads(body)
    except ValueError:
        return False, "admin port: status is not JSON"
    j = st.get("journal", {})
    if j.get("failing") or st.get("bite", {}).get("journal", {}).get("state") == "red":
        return False, f"journal failing: {st.get('bite', {}).get('journal', {}).get('reason')}"
    if not st.get("mode") or not st.get("phase") or not isinstance(st.get("sources"), dict):
        return False, "avionics chain not running"
    return True, ""


def run_trial(ctl: Systemctl, unit: str, bound_s: float, health: Callable[[], tuple[bool, str]],
              settle_s: float = SETTLE_S) -> tuple[bool, str, float]:
    """Restart ``unit`` and judge the new invocation: ``(passed, why not, seconds taken)``.

    Passed: ``ActiveState=active`` (READY=1 for ``Type=notify``) and ``health()`` true without a
    break for ``settle_s``, all within ``bound_s`` seconds of the restart.
    """
    before = ctl.show(unit).get("InvocationID", "")
    t0 = time.monotonic()
    ctl.restart(unit)
    deadline = t0 + bound_s
    first = ""
    why = "no READY=1"
    healthy_since: float | None = None
    while (now := time.monotonic()) < deadline:
        p = ctl.show(unit)
        inv = p.get("InvocationID", "")
        if inv and inv != before:
            first = first or inv
            state, sub = p.get("ActiveState"), p.get("SubState")
            if inv != first or sub in ("auto-restart", "failed") or state in ("failed", "inactive"):
                return False, (f"the service stopped before passing (result {p.get('Result')}, "
                               f"exit status {p.get('ExecMainStatus')})"), now - t0
            if state == "active":
                ok, bad = health()
                if ok:
                    healthy_since = healthy_since or now
                    if now - healthy_since >= settle_s:
                        return True, "", now - t0
                else:
                    healthy_since, why = None, f"READY=1 but the health check failed ({bad})"
        time.sleep(POLL_S)
    return False, f"{why} within {bound_s:g} s", time.monotonic() - t0


def wait_active(ctl: Systemctl, unit: str, timeout: float) -> bool:
    """Wait until ``unit`` is active (READY); False after ``timeout`` s or if it failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = ctl.show(unit)
        if p.get("ActiveState") == "active":
            return True
        if p.get("ActiveState") == "failed":
            return False
        time.sleep(POLL_S)
    return False


def _resumable(slots: SoftwareSlots, trial: dict[str, Any] | None, bid: object) -> bool:
    """True if ``trial`` was accepted for bundle ``bid`` and cut before the switch, slot whole."""
    if trial is None or "result" in trial or not isinstance(bid, str):
        return False
    new = trial.get("new")
    return (trial.get("bundle_id") == bid and new in SLOTS and new != slots.current()
            and (slots.info(str(new)) or {}).get("bundle_id") == bid)


def boot_check(slots: SoftwareSlots, owner: tuple[int, int] | None = None,
               request: Path | None = None) -> dict[str, Any] | None:
    """Settle what a cut left (see the module docstring); returns the report written, or None.

    ``request``: the service's request file (``UpdaterPaths.request``); a trial accepted for the
    bundle it names and cut before the switch is left for :func:`apply` to resume.
    """
    slots.prepare()
    for d in slots.slots.glob(".in-*"):
        shutil.rmtree(d, ignore_errors=True)
    trial = slots.trial()
    if trial is None:
        return None
    current, new, old = slots.current(), trial.get("new"), trial.get("old")
    base = {k: v for k, v in trial.items() if k not in ("at", "trial_id")}
    if "result" in trial:  # decided before the cut: finish recording it
        report = base
        if trial["result"] == "rolled_back" and old in SLOTS and current != old:
            slots.flip(str(old))
    elif _resumable(slots, trial, pending_request(request)):
        log.warning("software update to slot %s was cut before the switch: the updater resumes",
                    new)
        return None
    elif new != current:
        report = {**base, "result": "abandoned", "reason": "cut before the switch"}
    else:
        if old in SLOTS:
            slots.flip(str(old))
        report = {**base, "result": "rolled_back",
                  "reason": "the trial was interrupted (power cut or restart) before it passed"}
    _finish(slots, trial, report, owner)
    if request is not None and pending_request(request) == trial.get("bundle_id"):
        _drop_request(request, {"bundle_id": trial.get("bundle_id")})
    log.warning("software update: %s", report)
    return report


def _finish(slots: SoftwareSlots, trial: dict[str, Any], report: dict[str, Any],
            owner: tuple[int, int] | None) -> None:
    """Write the trial's one report (named by its ``trial_id``) and remove ``trial.json``."""
    key = trial.get("trial_id")
    slots.end_trial(report, key if isinstance(key, str) else None)
    _chown_reports(slots, owner)


def _chown_reports(slots: SoftwareSlots, owner: tuple[int, int] | None) -> None:
    """Give the reports (and their folder) to the service's user, which journals and removes them."""
    if owner is None:
        return
    for f in [slots.reports, *slots.reports.glob("*.json")]:
        with contextlib.suppress(OSError):
            os.chown(f, *owner)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def take_files(meta: BundleMeta, staged: Path, dest: Path) -> None:
    """Copy the files ``meta`` names from ``staged`` into ``dest``, each checked; BundleRefused if not.

    Only listed files are copied; a path through a symbolic link is refused.
    """
    root = staged.resolve()
    for rel, fm in sorted(meta.files.items()):
        if (why := safe_path(rel)) is not None:
            raise BundleRefused(why)
        src = staged / rel
        if src.is_symlink() or not src.resolve().is_relative_to(root) or not src.is_file():
            raise BundleRefused(f"staged file {rel!r} is missing or not a plain file")
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst, follow_symlinks=False)
        if dst.stat().st_size != fm.length or _sha256(dst) != fm.hashes["sha256"]:
            raise BundleRefused(f"staged file {rel!r} does not match the signed manifest")
        with open(dst, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(dest)


def _trust(s: Settings) -> Trust:
    """The key set in force: the rotated one journaled by the service, else the configured one."""
    configured = Trust.from_hex({k: (r.keys, r.threshold) for k, r in s.intake.roles.items()})
    try:
        return read_trust(s.journal_path, configured)
    except ValueError as e:  # a malformed stored key: refuse the update, keep the request's report
        raise IntakeError(f"the key set in force is unreadable: {e}") from e


def apply(s: Settings, paths: UpdaterPaths, ctl: Systemctl, *,
          installer: SlotInstaller = venv_installer, unit: str = UNIT,
          health: Callable[[], tuple[bool, str]] | None = None,
          settle_s: float = SETTLE_S) -> dict[str, Any] | None:
    """Take the service's request (if any) through install, switch and trial; returns the report."""
    slots = paths.slots()
    owner = service_owner()
    boot_check(slots, owner, paths.request)
    try:
        req = json.loads(paths.request.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        req = {"error": str(e)}
    trial = slots.trial()
    if trial is not None and _resumable(slots, trial, req.get("bundle_id")):
        slot = str(trial["new"])
        log.warning("software update: slot %s was accepted before a cut; switching", slot)
    else:
        trial, refused = _install(s, paths, slots, req, installer, owner)
        if trial is None:
            return refused
        slot = str(trial["new"])
    base = {k: v for k, v in trial.items() if k not in ("at", "trial_id", "new")}
    current = trial.get("old")
    _drop_request(paths.request, req)
    slots.flip(slot)
    bound = s.intake.health_bound_s
    ok, why, took = run_trial(ctl, unit, bound, health or (lambda: probe_health(s)), settle_s)
    report = {**base, "new": slot, "bound_s": bound, "trial_s": round(took, 1)}
    if ok:
        report["result"] = "committed"
        atomic_write(slots.trial_path, json.dumps({**trial, **report}).encode())
    else:
        report.update(result="rolled_back", reason=why)
        log.error("software slot %s failed its trial (%s): rolling back to %s", slot, why, current)
        atomic_write(slots.trial_path, json.dumps({**trial, **report}).encode())
        if current in SLOTS:
            slots.flip(str(current))
        ctl.restart(unit)
        report["old_ready"] = wait_active(ctl, unit, 120.0)
    _finish(slots, trial, report, owner)
    log.warning("software update: %s", report)
    return report


def _install(s: Settings, paths: UpdaterPaths, slots: SoftwareSlots, req: dict[str, Any],
             installer: SlotInstaller, owner: tuple[int, int] | None
             ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Verify and install the request's bundle: ``(the trial record written, None)``.

    On a refusal: ``(None, the failed report)``, the report written and the request dropped.
    """
    current = slots.current()
    cur_info = slots.info(current) or {}
    incoming = Path(slots.slots / f".in-{os.getpid()}")
    base: dict[str, Any] = {"old": current, "old_version": cur_info.get("version")}
    try:
        if "error" in req:
            raise IntakeError(f"unreadable request: {req['error']}")
        env = load_envelope(req.get("envelope", {}))
        bid = env.bundle_id()
        if bid != req.get("bundle_id"):
            raise BundleRefused("the request's bundle id is not its envelope's")
        v = verify(env, _trust(s), int(cur_info.get("version") or 0), None, "not judged again")
        if v.meta.kind != "software":
            raise BundleRefused(f"a {v.meta.kind} bundle is not software")
        base.update(version=v.meta.version, bundle_id=bid, name=v.meta.name)
        shutil.rmtree(incoming, ignore_errors=True)
        ensure_dir(incoming)
        take_files(v.meta, paths.staged(bid), incoming)
        info = {"version": v.meta.version, "bundle_id": bid, "name": v.meta.name,
                "keyids": list(v.keyids), "installed_at": time.time()}
        t0 = time.monotonic()
        slot = slots.install(incoming, info, installer)
        base["install_s"] = round(time.monotonic() - t0, 1)
    except (ApplianceError, OSError, subprocess.CalledProcessError) as e:
        why = str(e)
        if isinstance(e, subprocess.CalledProcessError):
            why = f"{e.cmd[0]} failed ({e.returncode}): {(e.stderr or b'')[-400:]!r}"
        report = {"result": "failed", **base, "reason": why}
        # Named by the request: a cut before the request goes makes the re-run rewrite this file.
        at = req.get("requested_at")
        key = f"{int(at * 1e9):020d}" if isinstance(at, (int, float)) and at > 0 else None
        slots.add_report(report, owner, key=key)
        _chown_reports(slots, owner)
        _drop_request(paths.request, req)
        log.error("software update refused: %s", why)
        return None, report
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    new_py = slots.slots / slot / "bin" / "appliance"
    log.info("software update: slot %s (v%s, %s) installed; switching", slot, v.meta.version, new_py)
    # The update is accepted: durable before the request goes, so a cut leaves one or the other.
    trial = {**base, "new": slot, "at": time.time(), "trial_id": f"{time.time_ns():020d}"}
    atomic_write(slots.trial_path, json.dumps(trial).encode())
    return trial, None


def _drop_request(request: Path, req: dict[str, Any]) -> None:
    """Remove the request file (durably) and, once it is gone, the bundle's staged folder."""
    with contextlib.suppress(FileNotFoundError):
        request.unlink()
    fsync_dir(request.parent)
    bid = req.get("bundle_id")
    if isinstance(bid, str) and len(bid) == 64 and all(c in "0123456789abcdef" for c in bid):
        shutil.rmtree(request.parent.parent / "staged" / bid, ignore_errors=True)


def add_parser(sub: Any) -> None:
    """Add ``updater`` (``apply``, ``boot-check``) to the ``appliance`` CLI (run as root by systemd)."""
    p = sub.add_parser("updater", help="the privileged software updater (run by systemd as root)")
    p.add_argument("action", choices=("apply", "boot-check"),
                   help="apply: take the service's request; boot-check: settle a cut trial")
    p.add_argument("--config", default=None, help="the appliance's TOML configuration")
    p.add_argument("--settle-s", type=float, default=SETTLE_S,
                   help="seconds the new slot must stay healthy to be committed")
    p.set_defaults(fn=main)


def main(a: argparse.Namespace) -> int:
    """Run one updater action; exit 0 unless the configuration or a step failed unexpectedly."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    s = load_settings(a.config)
    paths = UpdaterPaths.from_settings(s)
    if a.action == "boot-check":
        report = boot_check(paths.slots(), service_owner(), paths.request)
    else:
        report = apply(s, paths, Systemctl(), settle_s=a.settle_s)
    print(json.dumps(report))
    return 0
