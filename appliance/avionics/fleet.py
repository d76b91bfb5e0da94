"""``appliance replay DIR --summary``: replay every recording under a folder, one per worker process.

:func:`find_recordings` lists the recordings under a folder (by name: ``.jsonl``, ``.json``,
``.csv``, ``.parquet``, each possibly ``.gz``); :func:`summarise_folder` replays them in a
:class:`~concurrent.futures.ProcessPoolExecutor` (every core by default: a replay is CPU-bound
pure Python, so processes, not threads) and returns one :class:`FlightSummary` per file, in file
order. A file that cannot be read gets a summary with ``error`` (what was expected and found); the
others go on. :func:`format_table` renders them for people, :func:`as_json` for tools.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SUFFIXES", "FlightSummary", "as_json", "find_recordings", "format_table",
           "summarise", "summarise_folder"]

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class FlightSummary:
    """One recording replayed.

    ``duration_s``: flight time covered (s); ``transitions``: mode changes as dicts with ``utc``
    (ISO 8601, ``Z``), ``time_source``, ``from``, ``to``; ``phases``: the flight phases in the order
    entered; ``bad_positions``: positions flagged implausible; ``wall_s``: replay time (s);
    ``speed_x``: flight seconds per wall second; ``error``: why the file was refused, else None.
    """

    file: str
    duration_s: float = 0.0
    transitions: list[dict[str, Any]] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)
    bad_positions: int = 0
    wall_s: float = 0.0
    speed_x: float = 0.0
    error: str | None = None


def find_recordings(folder: str | os.PathLike[str]) -> list[Path]:
    """Recording files under ``folder`` (recursively, hidden files skipped), sorted by path."""
    root = Path(folder)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        name = p.name.lower().removesuffix(".gz")
        if name.endswith(SUFFIXES):
            out.append(p)
    return sorted(out)


def _iso(utc: float) -> str:
    return dt.datetime.fromtimestamp(utc, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarise(path: str | os.PathLike[str], faults: list[str] | None = None,
              seed: int = 1, name: str | None = None) -> FlightSummary:
    """Replay one recording (with fault specs ``faults``) and summarise it; never raises for bad input."""
    from firmware_bridge.recording import RecordingError
    from firmware_bridge.simulator import FaultSpecError

    from .replay import replay

    label = name or str(path)
    t0 = time.perf_counter()
    try:
        res = replay(Path(path), faults or [], seed=seed)
    except (OSError, RecordingError, FaultSpecError) as e:
        return FlightSummary(label, error=str(e))
    wall = time.perf_counter() - t0
    transitions = [{"utc": _iso(e.utc), "time_source": str(e.time_source), "from": str(e.previous),
                    "to": str(e.current)} for e in res.events if e.kind == "mode"]
    phases = [str(e.current) for e in res.events if e.kind == "phase"]
    return FlightSummary(label, round(res.flight_s, 1), transitions, phases,
                         res.chain.position.bad_positions, round(wall, 3),
                         round(res.flight_s / max(wall, 1e-9), 1))


def _job(args: tuple[str, list[str], int, str]) -> FlightSummary:
    path, faults, seed, name = args
    return summarise(path, faults, seed, name)


def summarise_folder(folder: str | os.PathLike[str], faults: list[str] | None = None,
                     seed: int = 1, workers: int | None = None) -> tuple[list[FlightSummary], float]:
    """Replay every recording under ``folder`` on ``workers`` processes (default: every core).

    Returns the summaries in file order and the wall time (s) of the whole. Raises OSError if
    ``folder`` cannot be listed.
    """
    root = Path(folder)
    files = find_recordings(root)
    jobs = [(str(p), list(faults or []), seed, str(p.relative_to(root))) for p in files]
    n = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    t0 = time.perf_counter()
    if n == 1:
        out = [_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n) as pool:
            out = list(pool.map(_job, jobs))
    return out, time.perf_counter() - t0


def format_table(rows: list[FlightSummary], wall_s: float | None = None,
                 workers: int | None = None, width: int = 160) -> str:
    """The summaries as a text table (rich), with a totals line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for col in ("file", "duration", "transitions (UTC)", "phases", "bad positions",
                "replay speed"):
        table.add_column(col, justify="right" if col in ("duration", "bad positions",
                                                         "replay speed") else "left")
    for r in rows:
        if r.error:
            table.add_row(r.file, "-", f"refused: {r.error}", "-", "-", "-")
            continue
        trans = "\n".join(f"{t['utc'][11:19]}Z {t['from']}->{t['to']}" for t in r.transitions)
        table.add_row(r.file, f"{r.duration_s / 60:.1f} min", trans or "none",
                      " > ".join(r.phases) or "-", str(r.bad_positions), f"{r.speed_x:,.0f}x")
    console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(table)
    ok = [r for r in rows if not r.error]
    flight = sum(r.duration_s for r in ok)
    total = f"{len(ok)} recording(s) replayed, {len(rows) - len(ok)} refused, {flight / 3600:.2f} h"
    if wall_s:
        total += f" of flight in {wall_s:.2f} s ({flight / wall_s:,.0f}x"
        total += f" on {workers} worker(s))" if workers else ")"
    text = console.export_text()
    console.file.close()
    return text + total + "\n"


def as_json(rows: list[FlightSummary], wall_s: float, workers: int) -> dict[str, Any]:
    """The summaries for tools: ``{"workers", "wall_s", "recordings": [FlightSummary as dict]}``."""
    return {"workers": workers, "wall_s": round(wall_s, 3),
            "recordings": [asdict(r) for r in rows]}
