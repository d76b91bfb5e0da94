"""``appliance``: the service's command line.

- ``appliance run [--config FILE]``: run the service (exit 78 on invalid configuration)
- ``appliance migrate [--config FILE]``: bring the journal database to the newest schema
- ``appliance replay RECORDING [--speed N] [--fault SPEC ...] [--json] [--records]``: run a
  recorded flight through the avionics chain and print the transitions (UTC, from -> to,
  evidence), or the track and health records the service would queue for the ground
- ``appliance replay DIR --summary [--json] [--workers N]``: every recording under DIR, one per
  worker process: a table of file, duration, transitions, phases, bad positions, replay speed
- ``appliance status [--config FILE]``: ask the running service's admin API for its status
- ``appliance hash-password``: an argon2 hash for an ``admin_users`` entry (password on stdin)
- ``appliance demo [--speed N]``: the built-in simulator on the real recorded flight (``make run``)
- ``appliance content install DIR`` / ``list`` / ``remove ID``: content packages (appliance.content.cli)
- ``appliance hangar keygen|build|sign|push|status``: the hangar station (appliance.intake.hangar)
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import getpass
import json
import logging
import logging.handlers
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError

EX_CONFIG = 78
DEMO_CONFIG = """\
# Written by `appliance demo` (make run). Edit freely; unknown keys are rejected.
aircraft_id = "F-DEMO"
data_dir = "var"
admin_token = "{token}"
# The dashboard's demo login; its password is in var/demo-login (make another: appliance hash-password)
admin_users = [{{ name = "maint", role = "maintenance", password_hash = "{pw_hash}" }}]

[passenger]
host = "127.0.0.1"
port = 8080

[admin]
host = "127.0.0.1"
port = 8081

[serial]
port = "var/card"
"""


def _logging(level: str = "INFO", log_dir: Path | None = None) -> None:
    """Log to stderr (journald keeps it) and, with ``log_dir``, to a rotating file for export.

    Lines start with the UTC time as ``YYYY-mm-ddTHH:MM:SS,mmm`` (appliance.store.export reads it).
    """
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%Y-%m-%dT%H:%M:%S")
    fmt.converter = time.gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        try:
            from .store.files import ensure_dir

            ensure_dir(log_dir)  # durably: it may create the data directory itself
            handlers.append(logging.handlers.RotatingFileHandler(
                log_dir / "appliance.log", maxBytes=5 * 1024 * 1024, backupCount=5))
        except OSError as e:
            print(f"appliance: cannot log to {log_dir}: {e}", file=sys.stderr)
    for h in handlers:
        h.setFormatter(fmt)
    logging.basicConfig(level=level, handlers=handlers, force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _settings(config: str | None):  # type: ignore[no-untyped-def]
    from .settings import load_settings

    return load_settings(config)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM."""
    settings = _settings(args.config)
    _logging(settings.log_level, settings.data_dir / "logs")
    from .daemon import Daemon, run_loop

    return run_loop(Daemon(settings).run(), settings.edge.event_loop)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade the journal database and print the backup made, if any."""
    settings = _settings(args.config)
    _logging(settings.log_level)
    from .store.engine import make_engine
    from .store.files import ensure_dir
    from .store.migrate import upgrade

    ensure_dir(settings.data_dir)
    made = upgrade(make_engine(settings.journal_path), settings.journal_path)
    print(f"journal {settings.journal_path} is at the newest schema" +
          (f" (backup {made})" if made else ""))
    return 0


def cmd_replay_summary(args: argparse.Namespace) -> int:
    """Replay every recording under a folder on every core; print the table (or JSON)."""
    from .avionics.fleet import as_json, format_table, summarise, summarise_folder

    target: Path = args.recording
    workers = args.workers or os.cpu_count() or 1
    try:
        if target.is_dir():
            rows, wall = summarise_folder(target, args.fault, args.seed, workers)
            workers = max(1, min(workers, len(rows)))  # no more processes than recordings
        else:
            t0 = time.perf_counter()
            rows, workers = [summarise(target, args.fault, args.seed, target.name)], 1
            wall = time.perf_counter() - t0
    except OSError as e:
        print(f"appliance replay: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"appliance replay: no recording under {target} (*.jsonl, *.json, *.csv, *.parquet, "
              f"each possibly .gz)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(as_json(rows, wall, workers)))
    else:
        print(format_table(rows, wall, workers), end="")
    return 2 if any(r.error for r in rows) else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay a recording; print transitions and a summary line."""
    if args.summary:
        return cmd_replay_summary(args)
    if args.recording.is_dir():
        print(f"appliance replay: {args.recording} is a folder: add --summary to replay every "
              f"recording in it", file=sys.stderr)
        return 2
    from firmware_bridge.recording import RecordingError, load
    from firmware_bridge.simulator import Faults, FaultSpecError, generate

    from .avionics.replay import format_event, replay_bytes
    from .avionics.summaries import SummaryConfig

    try:
        traj = load(args.recording)
        faults = Faults.parse(args.fault, traj.start, seed=args.seed)
    except (OSError, RecordingError, FaultSpecError) as e:
        print(f"appliance replay: {e}", file=sys.stderr)
        return 2

    def chunks() -> Iterator[bytes]:
        wall0 = time.monotonic()
        for t, chunk in generate(traj, faults):
            if args.speed:
                delay = wall0 + (t - traj.start) / args.speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield chunk

    res = replay_bytes(chunks(), summaries=SummaryConfig() if args.records else None,
                       aircraft_id=args.aircraft_id)
    if args.records:
        for stream, payload in res.records:
            print(json.dumps({"stream": stream, "payload": payload}))
        return 0
    for ev in res.events:
        if args.json:
            print(json.dumps({"kind": ev.kind, "utc": ev.utc, "time_source": ev.time_source,
                              "from": ev.previous, "to": ev.current, "evidence": ev.evidence}))
        elif args.all or ev.kind in ("mode", "airground"):
            print(format_event(ev))
    st = res.chain.decoder("card").stats
    if not args.json:
        print(f"# {traj.name}: {traj.end - traj.start:.0f} s of flight replayed in "
              f"{res.wall_s:.2f} s ({(traj.end - traj.start) / max(res.wall_s, 1e-9):.0f}x); "
              f"{st.frames} frames, {st.bad_words} bad words, {st.crc_errors} CRC errors, "
              f"{st.garbage_bytes} garbage bytes")
    return 0


def _status_hint(config: str | None) -> str:
    """Where the token and the address come from, for a failed ``status``."""
    if config or os.environ.get("APPLIANCE_CONFIG"):
        return f"the token is admin_token in {config or os.environ['APPLIANCE_CONFIG']}"
    demo = " (make run's is var/appliance.toml)" if Path("var/appliance.toml").exists() else ""
    return (f"give the service's config with --config FILE{demo}, or set APPLIANCE_ADMIN_TOKEN "
            "(and APPLIANCE_ADMIN__PORT if it is not 8081)")


def cmd_status(args: argparse.Namespace) -> int:
    """Print the running service's status (admin API, with the configured token).

    One line on stderr and exit 1 when it cannot: no token or a wrong one (401, with where the
    token comes from), nothing listening (the address it tried), any other HTTP error.
    """
    settings = _settings(args.config)
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    url = f"http://{settings.admin.host}:{settings.admin.port}/admin/v1/status"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            print(json.dumps(json.load(resp), indent=2))
    except urllib.error.HTTPError as e:
        if e.code == 401:
            why = "no admin token configured" if not token else "the admin token was refused"
            msg = f"{url}: {why} (HTTP 401): {_status_hint(args.config)}"
        elif e.code == 404:
            msg = f"{url}: HTTP 404: this is not the service's admin port ({_status_hint(args.config)})"
        else:
            msg = f"{url}: HTTP {e.code} {e.reason}"
        print(f"appliance status: {msg}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        print(f"appliance status: cannot reach {url} ({reason}): is the service running? "
              f"{_status_hint(args.config)}", file=sys.stderr)
        return 1
    return 0


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to a new file ``path`` created with mode 0600 (never readable by others).

    Raises FileExistsError if ``path`` exists (it is never replaced), OSError otherwise.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _private(path: Path) -> None:
    """Make an existing secret file 0600 (one left by an older demo); say so."""
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            path.chmod(0o600)
            print(f"appliance demo: {path} was {oct(mode)}, now 0o600", file=sys.stderr)


def _ports_in_use(settings: Any) -> str | None:
    """Why the service could not bind its ports (one line naming the setting), or None.

    Checked before anything is printed or started; the service binds with SO_REUSEADDR too.
    """
    wanted = [("passenger", settings.passenger.host, settings.passenger.port, "PASSENGER__PORT"),
              ("admin", settings.admin.host, settings.admin.port, "ADMIN__PORT")]
    c = settings.content
    if c.enabled and c.media_port:
        wanted.append(("media", c.media_host or settings.passenger.host, c.media_port,
                       "CONTENT__MEDIA_PORT"))
    for name, host, port, var in wanted:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                return (f"cannot use the {name} port {host}:{port} ({e.strerror}): another "
                        f"`make run`? Stop it, or choose another port with APPLIANCE_{var}=N")
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    """Fetch the real flight, start the card simulator on a pty, run the service on it.

    The demo's secrets (the admin token in ``var/appliance.toml``, the dashboard login in
    ``var/demo-login``) are written to files created 0600 and never printed.
    """
    from firmware_bridge.recording import fetch_default_flight

    var = Path("var")
    var.mkdir(exist_ok=True)
    cfg = var / "appliance.toml"
    login = var / "demo-login"
    if not cfg.exists():
        from .web.admin.auth import hash_password

        password = secrets.token_urlsafe(9)
        login.unlink(missing_ok=True)
        write_secret(login, f"maint {password}\n")
        write_secret(cfg, DEMO_CONFIG.format(token=secrets.token_urlsafe(18),
                                             pw_hash=hash_password(password)))
    for path in (cfg, login):
        _private(path)
    settings = _settings(str(cfg))
    if settings.serial.max_card_time_rate < args.speed:
        # The simulator's card clock runs at --speed card seconds per host second.
        settings = settings.model_copy(update={"serial": settings.serial.model_copy(
            update={"max_card_time_rate": args.speed})})
    busy = _ports_in_use(settings)
    if busy:
        print(f"appliance demo: {busy}", file=sys.stderr)
        return 1
    _logging(settings.log_level, settings.data_dir / "logs")
    flight = args.recording or fetch_default_flight(var / "cache")
    sim = subprocess.Popen([sys.executable, "-m", "firmware_bridge.cli", "play", str(flight),
                            "--link", settings.serial.port, "--speed", str(args.speed), "--loop"])
    who = (f"maint, password in {login}" if login.exists()
           else f"see admin_users in {cfg}")
    c = settings.content
    media = ("" if not c.enabled or c.media_port is None else
             f"\n  Media server:   http://{c.media_host or settings.passenger.host}:"
             f"{c.media_port or '(a free port; the catalog names it)'}/")
    print(f"""
  Card simulator: {flight} at x{args.speed:g} on {settings.serial.port} (pid {sim.pid})
  Portal:         http://{settings.passenger.host}:{settings.passenger.port}/{media}
  Passenger API:  http://{settings.passenger.host}:{settings.passenger.port}/api/v1/flight
  Dashboard:      http://{settings.admin.host}:{settings.admin.port}/  (login: {who})
  Admin API:      http://{settings.admin.host}:{settings.admin.port}/admin/v1/status
                  (header: Authorization: Bearer <admin_token in {cfg}>)
  Ctrl-C stops both.
""", flush=True)
    from .daemon import Daemon, run_loop

    try:
        return run_loop(Daemon(settings).run(), settings.edge.event_loop)
    finally:
        sim.terminate()
        sim.wait(5)


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Read a password (twice, without echo) and print its argon2 hash for ``admin_users``."""
    from .web.admin.auth import hash_password

    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if pw != getpass.getpass("again: "):
            print("appliance: the passwords differ", file=sys.stderr)
            return 2
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        print("appliance: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(pw))
    return 0


def plain(doc: str | None) -> str:
    """A docstring as --help shows it: without reST markup (``code`` becomes code)."""
    return (doc or "").replace("``", "").replace(":class:", "").replace(":mod:", "")


def build_parser() -> argparse.ArgumentParser:
    """The ``appliance`` command line: every command and option, each with its help text."""
    ap = argparse.ArgumentParser(prog="appliance", description=plain(__doc__),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    from .running import version_line

    ap.add_argument("--version", action="version", version=version_line(),
                    help="print the running version and software slot, then exit")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    config_help = ("the service's TOML config file (default: $APPLIANCE_CONFIG, else the built-in "
                   "defaults); APPLIANCE_* variables override it, nested with __")
    for name, fn, text in (
            ("run", cmd_run, "run the service until SIGTERM (exit 78 on invalid configuration)"),
            ("migrate", cmd_migrate, "bring the journal database to the newest schema (backup first)"),
            ("status", cmd_status, "the running service's status, from its admin API (needs the "
                                   "admin token: --config or $APPLIANCE_ADMIN_TOKEN)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--config", help=config_help)
        p.set_defaults(fn=fn)
    p = sub.add_parser("replay", help="run a recorded flight through the avionics chain",
                       description="Run a recorded flight through the avionics chain and print "
                                   "the transitions (UTC, from -> to, evidence).")
    p.add_argument("recording", type=Path,
                   help="a recording (raw Mode-S JSONL, JSON, CSV, Parquet, ...; see README), "
                        "or with --summary a folder of them")
    p.add_argument("--speed", type=float, default=0.0, help="pace to N x real time (0: flat out)")
    p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                   help="as card-sim: garbage=RATE, parity=RATE, wow-glitch=TIME, "
                        "dropout=NAMES@TIME/S, ncd=NAMES@TIME/S")
    p.add_argument("--seed", type=int, default=1, help="seed of the random faults (default 1)")
    p.add_argument("--all", action="store_true", help="also print phase changes")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per event (with --summary: one JSON document)")
    p.add_argument("--summary", action="store_true",
                   help="RECORDING may be a folder: replay every recording under it in parallel "
                        "worker processes; print file, duration, transitions, phases, "
                        "bad-position count, replay speed")
    p.add_argument("--workers", type=int, default=0,
                   help="with --summary: worker processes (default: every core)")
    p.add_argument("--records", action="store_true",
                   help="print the track and health records the service would queue for the "
                        "ground, one JSON object {stream, payload} per line (instead of events)")
    p.add_argument("--aircraft-id", default="replay", help="for the records' flight ids")
    p.set_defaults(fn=cmd_replay)
    p = sub.add_parser("hash-password", help="argon2 hash of a password, for admin_users",
                       description="Read a password (twice, without echo; or one line on stdin) "
                                   "and print its argon2 hash for an admin_users entry.")
    p.set_defaults(fn=cmd_hash_password)
    p = sub.add_parser("demo", help="simulator + service on the real recorded flight (make run)",
                       description="The card simulator plays the recorded flight onto var/card; "
                                   "the service runs on it with var/appliance.toml.")
    p.add_argument("--speed", type=float, default=60.0,
                   help="card simulator speed, x real time (default 60)")
    p.add_argument("--recording", type=Path,
                   help="the flight to play (default: the AFR34ZG recording, fetched to var/cache)")
    p.set_defaults(fn=cmd_demo)
    from .content.cli import add_parser as add_content_parser

    add_content_parser(sub)
    from .intake.hangar import add_parser as add_hangar_parser

    add_hangar_parser(sub)
    from .intake.updater import add_parser as add_updater_parser

    add_updater_parser(sub)
    from .cabinnet.helper import add_parser as add_cabinnet_helper_parser

    add_cabinnet_helper_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (78 for invalid configuration)."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr without a file (tests)
        faulthandler.enable()  # a fatal signal (SIGSEGV, SIGBUS) still leaves a traceback on stderr
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"appliance: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
