"""End-to-end avionics benchmark: card bytes -> frames -> parameters -> validity -> mode.

Run by ``make bench`` (never by ``make test``). Prints a table: each stage's throughput on one core
on the whole AFR34ZG flight, and the whole-flight replay time against the flight's real duration.
Median of ``RUNS`` runs; the machine's CPU is printed with it.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from appliance.avionics.decode import CardDecoder
from appliance.avionics.replay import replay_bytes
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import fetch_default_flight, load
from firmware_bridge.simulator import Faults, generate

RUNS = 5
REPO = Path(__file__).resolve().parents[2]


def median_time(fn, runs: int = RUNS) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    path = fetch_default_flight(REPO / "var" / "cache")
    traj = load(path)
    flight_s = traj.end - traj.start
    t0 = time.perf_counter()
    chunks = [c for _, c in generate(traj)]
    gen_s = time.perf_counter() - t0
    faulty = [c for _, c in generate(traj, Faults.parse(["garbage=0.02", "parity=0.01"],
                                                         traj.start))]
    nbytes = sum(map(len, chunks))
    table = LabelTable.default()
    frames: list = []

    def frame_stage() -> None:
        frames.clear()
        d = FrameDecoder()
        for c in chunks:
            frames.extend(d.feed(c))

    t_frames = median_time(frame_stage)
    n_frames = len(frames)
    words = sum(1 for f in frames if f.type == 1)

    def decode_stage() -> None:
        CardDecoder(table).decode(frames)

    t_decode = median_time(decode_stage)
    results = []

    def chain_run() -> None:
        results.append(replay_bytes(chunks, table))

    t_chain = median_time(chain_run)
    res = results[-1]
    modes = [(e.previous, e.current) for e in res.events if e.kind == "mode"]
    t_faulty = median_time(lambda: replay_bytes(faulty, table))

    con = Console(width=150)
    con.print(f"[bold]Avionics pipeline[/] — {path.name}: {flight_s:.0f} s of flight, "
              f"{nbytes / 1e6:.1f} MB, {n_frames} frames ({words} ARINC words); "
              f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, "
              f"one core, median of {RUNS}")
    t = Table()
    for col in ("stage", "time (s)", "frames/s", "words/s", "x real time"):
        t.add_column(col, justify="right" if col != "stage" else "left")
    t.add_row("simulator: recording -> card bytes", f"{gen_s:.2f}", f"{n_frames / gen_s:,.0f}",
              f"{words / gen_s:,.0f}", f"{flight_s / gen_s:,.0f}")
    t.add_row("bytes -> frames (resync, CRC)", f"{t_frames:.2f}", f"{n_frames / t_frames:,.0f}",
              f"{words / t_frames:,.0f}", f"{flight_s / t_frames:,.0f}")
    t.add_row("frames -> parameters (parity, SSM, range)", f"{t_decode:.2f}",
              f"{n_frames / t_decode:,.0f}", f"{words / t_decode:,.0f}", f"{flight_s / t_decode:,.0f}")
    t.add_row("[bold]bytes -> ... -> mode (whole chain)[/]", f"{t_chain:.2f}",
              f"{n_frames / t_chain:,.0f}", f"{words / t_chain:,.0f}",
              f"[bold]{flight_s / t_chain:,.0f}[/]")
    t.add_row("whole chain, 2% garbage + 1% parity errors", f"{t_faulty:.2f}",
              f"{n_frames / t_faulty:,.0f}", f"{words / t_faulty:,.0f}", f"{flight_s / t_faulty:,.0f}")
    con.print(t)
    goal = flight_s / t_chain
    con.print(f"whole-flight replay: {t_chain:.2f} s for {flight_s:.0f} s of flight = {goal:,.0f}x "
              f"real time (goal >= 1000x: {'met' if goal >= 1000 else 'NOT met'}); "
              f"mode changes: {modes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
