"""Receiver fixtures: a real PostgreSQL server (Debian ``postgresql``), SQLite, batch builders.

The PostgreSQL cluster is private to the test session: ``initdb`` in a temporary directory, a
free loopback port, started with ``pg_ctl`` as the ``postgres`` user when running as root (the
server refuses root), stopped and removed at the end. Without the Debian package the PostgreSQL
variants skip with the reason — except under CI (``CI`` set), where they fail: `.ci/run` must
install ``postgresql``.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import zstandard
from sqlalchemy import create_engine

from ground_receiver.db import init_db, metadata

PG_USER = "postgres"


def _pg_bindir() -> str | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return next((d for d in reversed(dirs) if os.path.exists(f"{d}/pg_ctl")), None)


def pg_unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if _pg_bindir() is None:
        return "PostgreSQL server binaries missing (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return "running as root but there is no postgres user to run the server"
    return None


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A running private PostgreSQL server: its SQLAlchemy ``url``; :meth:`restart` it."""

    def __init__(self, bindir: str, root: str, data: str, url: str) -> None:
        self.bindir, self.root, self.data, self.url = bindir, root, data, url

    def restart(self) -> None:
        """Fast shutdown (connections cut, as in a database failover) and start again."""
        subprocess.run(_as_pg([f"{self.bindir}/pg_ctl", "-D", self.data, "-l",
                               f"{self.root}/server.log", "-m", "fast", "-w", "-t", "60",
                               "restart"]), check=True, capture_output=True,
                       timeout=120, cwd=self.root)


@contextlib.contextmanager
def private_pg(max_connections: int = 100, fsync: bool = True) -> Iterator[PgServer]:
    """Start a private PostgreSQL server (see the module doc); stop and remove it after."""
    bindir = _pg_bindir()
    assert bindir is not None, pg_unavailable()
    root = tempfile.mkdtemp(prefix="ground-pg-")
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    data, port = f"{root}/data", _free_port()
    run = lambda cmd: subprocess.run(_as_pg(cmd), check=True, capture_output=True,  # noqa: E731
                                     timeout=120, cwd=root)
    opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections}" + ("" if fsync else " -c fsync=off"))
    try:
        run([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "ground", "--no-sync", "-E", "UTF8"])
        run([f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/server.log", "-w", "-t", "60", "-o",
             opts, "start"])
        run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "ground", "ground"])
        yield PgServer(bindir, root, data, f"postgresql+psycopg://ground@127.0.0.1:{port}/ground")
    finally:
        subprocess.run(_as_pg([f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60, cwd=root, check=False)
        shutil.rmtree(root, ignore_errors=True)


#: url -> its server (to restart it), for the tests that take the database away.
PG_SERVERS: dict[str, PgServer] = {}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A private PostgreSQL server; yields the SQLAlchemy URL of database ``ground``."""
    why = pg_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL needed under CI: {why}")
        pytest.skip(why)
    with private_pg() as pg:
        PG_SERVERS[pg.url] = pg
        yield pg.url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """An empty receiver database: a SQLite file, or the PostgreSQL server's tables reset."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ground.db"
    url: str = request.getfixturevalue("pg_server")
    engine = create_engine(url)
    metadata.drop_all(engine)
    init_db(engine)
    engine.dispose()
    return url


def batch_body(aircraft: str, streams: dict[str, list[int]], *, batch_id: str | None = None,
               dropped: dict[str, list[tuple[int, int]]] | None = None,
               payload: Any = None, compress: bool = True) -> tuple[str, bytes]:
    """A wire-format batch: records ``{"n": seq, ...}`` for each listed seq; (batch id, body)."""
    bid = batch_id or f"{aircraft}:{time.time_ns()}:{os.urandom(4).hex()}"
    doc = {"v": 1, "aircraft": aircraft, "batch_id": bid, "sent": time.time(), "streams": [
        {"stream": s, "records": [{"seq": q, "created": 1.0 * q,
                                   "payload": payload if payload is not None else
                                   {"n": q, "stream": s}} for q in seqs],
         "dropped": [{"lo": lo, "hi": hi, "records": hi - lo + 1, "bytes": 100, "at": 0.0}
                     for lo, hi in (dropped or {}).get(s, [])]}
        for s, seqs in streams.items()]}
    raw = json.dumps(doc).encode()
    return bid, zstandard.ZstdCompressor().compress(raw) if compress else raw


def zstd_stream(raw: bytes) -> bytes:
    """``raw`` compressed without the content size in the frame header."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as w:
        w.write(raw)
    return out.getvalue()
