"""Log export: a tar.zst bundle of the journal extract and the service logs for a UTC range.

Contents: ``manifest.json`` (aircraft, range, created, each file's size and SHA-256, journal row
count), ``journal.jsonl`` (one journal row per line, oldest first) and ``logs/<name>`` (the lines of
the service's log files whose timestamp falls in the range; lines without one follow the line
before). Built in memory by a worker thread; bounded by ``max_rows``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import zstandard

from .journal import Journal

__all__ = ["LOG_TIME_FORMAT", "export_logs"]

#: Log lines start with ``YYYY-mm-ddTHH:MM:SS`` (UTC): see appliance.cli.
LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def _log_lines(path: Path, since: float, until: float) -> bytes:
    out: list[str] = []
    keep = False
    with open(path, errors="replace") as f:
        for line in f:
            try:
                t = dt.datetime.strptime(line[:19], LOG_TIME_FORMAT).replace(tzinfo=dt.UTC)
                keep = since <= t.timestamp() <= until
            except ValueError:
                pass  # a continuation line (traceback): goes with the line before
            if keep:
                out.append(line)
    return "".join(out).encode()


def export_logs(journal: Journal, log_dir: Path | None, aircraft_id: str, since: float,
                until: float, max_rows: int = 1_000_000) -> tuple[bytes, dict[str, Any]]:
    """Build the bundle for UTC epoch seconds [since, until]; returns (tar.zst bytes, manifest)."""
    files: dict[str, bytes] = {}
    rows = journal.query(None, max_rows, 0, since, until)
    files["journal.jsonl"] = "".join(json.dumps(r, default=str) + "\n" for r in rows).encode()
    if log_dir is not None and log_dir.is_dir():
        for log in sorted(log_dir.glob("*.log*")):
            files[f"logs/{log.name}"] = _log_lines(log, since, until)
    manifest: dict[str, Any] = {
        "aircraft_id": aircraft_id,
        "since_utc": dt.datetime.fromtimestamp(since, dt.UTC).isoformat(),
        "until_utc": dt.datetime.fromtimestamp(until, dt.UTC).isoformat(),
        "created_utc": dt.datetime.now(dt.UTC).isoformat(),
        "journal_rows": len(rows),
        "files": [{"name": n, "bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                  for n, b in files.items()],
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in [("manifest.json", json.dumps(manifest, indent=2).encode()),
                           *files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return zstandard.ZstdCompressor(level=9).compress(raw.getvalue()), manifest
