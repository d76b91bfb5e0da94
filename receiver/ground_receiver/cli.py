"""``ground-receiver``: the reference ground receiver's command line.

- ``ground-receiver serve [--config FILE] [--host H] [--port P] [--database-url URL]``
- ``ground-receiver init-db [--config FILE] [--database-url URL]``: create missing tables
- ``ground-receiver hash-token TOKEN``: the ``sha256:<hex>`` form for the ``[aircraft]`` table

Without ``database_url`` (config, ``GROUND_RECEIVER_DATABASE_URL`` or ``--database-url``) the
database is SQLite in the XDG state directory, ``$XDG_STATE_HOME/ground-receiver/ground.db``
(``~/.local/state/ground-receiver/ground.db``), never the current directory.

Exit status 78 on invalid configuration, 1 when the database cannot be reached at start.
"""

from __future__ import annotations

import argparse
import logging
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
        logging.getLogger(__name__).warning("no [aircraft] tokens configured: every batch gets 401")
    app = create_app(s, BatchStore(engine, s.reorder_wait_s))
    uvicorn.run(app, host=s.host, port=s.port, log_level=s.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=5)
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
    args = ap.parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as e:
        print(f"ground-receiver: {e}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
