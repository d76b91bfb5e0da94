"""``appliance replay DIR --summary``: a folder of recordings on every core vs on one worker.

Run by ``make bench`` (never by ``make test``). The folder: the AFR34ZG flight in ``FILES``
layouts (raw Mode-S JSONL, and state vectors every 2 s as a JSON list, Parquet and a readsb
trace), each a whole flight. The same folder is replayed with one worker process and with one per
core (median of ``RUNS`` each, in the same run); the table gives the wall times, the flight hours
per wall second and the speed-up. With N cores the ideal speed-up is min(N, files).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from appliance.avionics.fleet import summarise_folder
from firmware_bridge.recording import fetch_default_flight, load

RUNS = 3
REPO = Path(__file__).resolve().parents[2]


def make_folder(root: Path) -> None:
    import pandas as pd

    src = fetch_default_flight(REPO / "var" / "cache")
    (root / "afr34zg.jsonl").write_bytes(src.read_bytes())
    traj = load(src)
    rows = []
    t = traj.start
    while t <= traj.end:
        og = traj.value("onground", t)
        if og is not None:
            row = {"timestamp": t, "onground": bool(og), "callsign": "AFR34ZG"}
            for f in ("latitude", "longitude", "altitude", "groundspeed", "track", "vertical_rate"):
                row[f] = traj.value(f, t)
            rows.append(row)
        t += 2.0
    (root / "afr34zg-vectors.json").write_text(json.dumps(rows))
    df = pd.DataFrame(rows)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    df.to_parquet(root / "afr34zg.parquet", index=False)
    base = int(rows[0]["timestamp"])
    trace = [[r["timestamp"] - base, r["latitude"], r["longitude"],
              "ground" if r["onground"] else r["altitude"], r["groundspeed"], r["track"], 0,
              r["vertical_rate"]] for r in rows]
    (root / "trace_full_393322.json").write_text(json.dumps(
        {"icao": "393322", "timestamp": base, "trace": trace}))


def timed(folder: Path, workers: int) -> tuple[float, list]:  # type: ignore[type-arg]
    times, rows = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        rows, _ = summarise_folder(folder, workers=workers)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rows


def main() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_folder(folder)
        one_s, rows = timed(folder, 1)
        all_s, rows_all = timed(folder, cores)
    strip = [(r.file, r.transitions, r.bad_positions, r.error) for r in rows]
    assert strip == [(r.file, r.transitions, r.bad_positions, r.error) for r in rows_all]
    flight_h = sum(r.duration_s for r in rows) / 3600
    con = Console(width=140)
    con.print(f"[bold]replay --summary[/] — {len(rows)} whole-flight recordings "
              f"({flight_h:.1f} h of flight); {platform.processor() or platform.machine()}, "
              f"{cores} core(s), Python {sys.version.split()[0]}, median of {RUNS}")
    t = Table()
    for col in ("workers", "wall (s)", "flight h / wall s", "x real time", "speed-up"):
        t.add_column(col, justify="right")
    t.add_row("1 (peer)", f"{one_s:.2f}", f"{flight_h / one_s:.3f}",
              f"{flight_h * 3600 / one_s:,.0f}", "1.00")
    t.add_row(f"{cores} (every core)", f"{all_s:.2f}", f"{flight_h / all_s:.3f}",
              f"{flight_h * 3600 / all_s:,.0f}", f"[bold]{one_s / all_s:.2f}[/]")
    con.print(t)
    ideal = min(cores, len(rows))
    con.print(f"--summary speed-up over one worker: {one_s / all_s:.2f}x on {cores} core(s) "
              f"(ideal {ideal}x; efficiency {one_s / all_s / ideal:.0%})")
    for r in rows:
        con.print(f"  {r.file}: {[(x['utc'][11:19], x['to']) for x in r.transitions]}, "
                  f"{r.bad_positions} bad positions{' ' + r.error if r.error else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
