"""``ground-receiver``: the reference ground receiver's command line.

- ``ground-receiver serve [--config FILE] [--host H] [--port P] [--database-url URL]``
- ``ground-receiver init-db [--config FILE] [--database-url URL]``: create missing tables
- ``ground-receiver hash-token TOKEN``: the ``sha256:<hex>`` form for the ``[aircraft]`` table
  (legacy static tokens)
- ``ground-receiver aircraft register AIRCRAFT PUBKEY``: register an aircraft's Ed25519 public
  key (PEM file, or base64 of the raw 32 bytes, given as a path or as the text itself)
- ``ground-receiver aircraft rotate AIRCRAFT PUBKEY [--grace-s S]``: register a new key; the
  others expire after the grace (default 86400 s)
- ``ground-receiver aircraft revoke AIRCRAFT [--key-id K]``: revoke one key, or all of them
- ``ground-receiver aircraft list [AIRCRAFT]``: the keys and their state

- ``ground-receiver downlink keygen FILE``: the ground's document signing key; prints its public key
- ``ground-receiver downlink publish KIND FILE [--aircraft A ...]``: publish a JSON document
  (``config`` or ``notice``) as the next version for those aircraft (default: the whole fleet)
- ``ground-receiver downlink status``: per aircraft and kind, published and applied versions

The ``aircraft`` and ``downlink`` commands take ``--config``/``--database-url`` like ``serve``.

Without ``database_url`` (config, ``GROUND_RECEIVER_DATABASE_URL`` or ``--database-url``) the
database is SQLite in the XDG state directory, ``$XDG_STATE_HOME/ground-receiver/ground.db``
(``~/.local/state/ground-receiver/ground.db``), never the current directory.

Exit status 78 on invalid configuration, 1 when the database cannot be reached at start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .errors import ConfigError
from .settings import ReceiverSettings, hash_token, load_settings, sqlite_path

EX_CONFIG = 78


def _settings(args: argparse.Namespace) -> ReceiverSettings:
    s = load_settings(args.config, host=getattr(args, "host", None),
                      port=getattr(args, "port", None), database_url=args.database_url)
    path = sqlite_path(s.database_url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the database directory {path.parent}: "
                              f"{e.strerror}") from e
    return s


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT."""
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from .app import create_app
    from .db import init_db, make_engine
    from .store import BatchStore

    s = _settings(args)
    logging.basicConfig(level=s.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = make_engine(s.database_url, sqlite_synchronous=s.sqlite_synchronous)
    try:
        init_db(engine)
    except OperationalError as e:
        print(f"ground-receiver: database {engine.url!r}: {e.orig}", file=sys.stderr)
        return 1
    logging.getLogger(__name__).info("database %s", engine.url.render_as_string(hide_password=True))
    if not s.aircraft:
        logging.getLogger(__name__).info("no legacy [aircraft] tokens: aircraft sign with "
                                         "their registered keys")
    try:
        app = create_app(s, BatchStore(engine, s.reorder_wait_s))
    except (OSError, ValueError) as e:
        print(f"ground-receiver: downlink_key_file: {e}", file=sys.stderr)
        return EX_CONFIG
    uvicorn.run(app, host=s.host, port=s.port, log_level=s.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=5, timeout_keep_alive=int(s.keep_alive_s))
    return 0


def cmd_init_db(args: argparse.Namespace) -> int:
    """Create the tables that are missing."""
    from .db import init_db, make_engine

    s = _settings(args)
    init_db(make_engine(s.database_url))
    print(f"tables ready in {s.database_url.split('@')[-1]}")
    return 0


def cmd_hash_token(args: argparse.Namespace) -> int:
    """Print the stored form of a token."""
    print(hash_token(args.token))
    return 0


def _key_text(arg: str) -> str:
    """The key given on the command line: a file's content, or the argument itself."""
    from pathlib import Path

    p = Path(arg)
    try:
        if len(arg) < 4096 and p.is_file():
            return p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read public key {arg}: {e}") from e
    return arg


def cmd_aircraft(args: argparse.Namespace) -> int:
    """Register, rotate, revoke or list aircraft keys."""
    from .db import init_db, make_engine
    from .identity import KeyRing

    s = _settings(args)
    engine = make_engine(s.database_url)
    init_db(engine)
    ring = KeyRing(engine)
    try:
        if args.action == "register":
            kid = ring.register(args.aircraft, _key_text(args.public_key))
            print(f"{args.aircraft}: key {kid} registered")
        elif args.action == "rotate":
            kid = ring.rotate(args.aircraft, _key_text(args.public_key), args.grace_s)
            print(f"{args.aircraft}: key {kid} registered; older keys expire in {args.grace_s:g} s")
        elif args.action == "revoke":
            n = ring.revoke(args.aircraft, args.key_id)
            if n == 0:
                print(f"{args.aircraft}: no live key {args.key_id or ''} to revoke", file=sys.stderr)
                return 1
            print(f"{args.aircraft}: {n} key(s) revoked")
        else:
            for k in ring.keys(args.aircraft):
                print(f"{k.aircraft}\t{k.key_id}\t{k.state}\t{k.public_key}")
    except ValueError as e:
        print(f"ground-receiver: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def cmd_downlink(args: argparse.Namespace) -> int:
    """Keygen, publish, status of ground → aircraft documents."""
    import json
    from pathlib import Path

    from .db import init_db, make_engine
    from .downlink import Downlink, load_ground_key, public_b64

    if args.action == "keygen":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(args.path)
        if path.exists():
            print(f"ground-receiver: {path} exists", file=sys.stderr)
            return 1
        new = Ed25519PrivateKey.generate()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(new.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        print(public_b64(new))
        return 0
    s = _settings(args)
    engine = make_engine(s.database_url)
    init_db(engine)
    try:
        key = load_ground_key(s.downlink_key_file) if s.downlink_key_file else None
        dl = Downlink(engine, key)
        if args.action == "publish":
            body = json.loads(Path(args.file).read_text())
            versions = dl.publish(args.kind, body, args.aircraft or None)
            for ac, v in versions.items():
                print(f"{ac}\t{args.kind}\tv{v}")
            if not versions:
                print("no aircraft known: register keys first", file=sys.stderr)
                return 1
        else:
            for ac, kinds in dl.status().items():
                for kind, st in kinds.items():
                    print(f"{ac}\t{kind}\tpublished v{st['published']}\tapplied "
                          f"v{st['applied_version']}\t{st['applied_mode'] or '-'}\t"
                          f"{st['status'] or '-'}")
    except (OSError, ValueError) as e:
        print(f"ground-receiver: {e}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="ground-receiver", description=(__doc__ or "").replace("``", ""),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    db_help = ("SQLAlchemy URL (default: SQLite in $XDG_STATE_HOME/ground-receiver/ground.db, "
               "i.e. ~/.local/state/ground-receiver/ground.db)")
    cfg_help = "TOML file (default: $GROUND_RECEIVER_CONFIG; see receiver/README.md)"
    p = sub.add_parser("serve", help="run the HTTP receiver")
    p.add_argument("--config", help=cfg_help)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8443)")
    p.add_argument("--database-url", help=db_help)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("init-db", help="create missing tables")
    p.add_argument("--config", help=cfg_help)
    p.add_argument("--database-url", help=db_help)
    p.set_defaults(fn=cmd_init_db)
    p = sub.add_parser("hash-token", help="print sha256:<hex> of a token")
    p.add_argument("token", help="an aircraft's bearer token (at least 16 characters)")
    p.set_defaults(fn=cmd_hash_token)
    p = sub.add_parser("aircraft", help="aircraft keys: register, rotate, revoke, list")
    p.add_argument("--config")
    p.add_argument("--database-url")
    acts = p.add_subparsers(dest="action", required=True)
    a = acts.add_parser("register", help="register an aircraft's public key")
    a.add_argument("aircraft")
    a.add_argument("public_key", help="PEM file, or base64 of the raw 32 bytes")
    a = acts.add_parser("rotate", help="register a new key; older keys expire after the grace")
    a.add_argument("aircraft")
    a.add_argument("public_key")
    a.add_argument("--grace-s", type=float, default=86400.0)
    a = acts.add_parser("revoke", help="revoke a key (or all keys) of an aircraft now")
    a.add_argument("aircraft")
    a.add_argument("--key-id")
    a = acts.add_parser("list", help="the keys and their state")
    a.add_argument("aircraft", nargs="?")
    p.set_defaults(fn=cmd_aircraft)
    p = sub.add_parser("downlink", help="ground -> aircraft documents: keygen, publish, status")
    p.add_argument("--config")
    p.add_argument("--database-url")
    acts = p.add_subparsers(dest="action", required=True)
    a = acts.add_parser("keygen", help="write the ground's signing key; print its public key")
    a.add_argument("path")
    a = acts.add_parser("publish", help="publish a JSON document as the next version")
    a.add_argument("kind", choices=("config", "notice"))
    a.add_argument("file")
    a.add_argument("--aircraft", action="append", help="an aircraft (repeat); default: fleet")
    acts.add_parser("status", help="published and applied versions per aircraft")
    p.set_defaults(fn=cmd_downlink)
    args = ap.parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"ground-receiver: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
