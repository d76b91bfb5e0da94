"""End-to-end avionics benchmark: card bytes -> frames -> parameters -> validity -> mode.

Run by ``make bench`` (never by ``make test``). Prints a table: each stage's throughput on one core
on the whole AFR34ZG flight, and the whole-flight replay time against the flight's real duration,
with the goal of issue 18: the whole chain (card bytes -> frames -> parameters -> validity ->
air/ground, phase, mode, and the summaries stage) at >= 5,000x real time on one core.

The chain's hot path runs compiled (mypyc, ``appliance.compiled``; ``make deps`` builds it). Its
peer in the same run is the same chain on the pure-Python source (``APPLIANCE_PURE_PYTHON=1``, in
a subprocess, whole chain only), so the table shows what compiling gives.

Median of ``RUNS`` runs, in wall time and in CPU time of this process (``time.process_time``): on a
machine shared with other work the wall time counts the time the process waited for the core, the
CPU time much less so (it still pays for shared caches). The load average before and after is
printed with the machine's CPU, so a figure from a busy machine is read as such.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from appliance import compiled
from appliance.avionics.decode import CardDecoder
from appliance.avionics.replay import replay, replay_bytes
from appliance.avionics.summaries import SummaryConfig
from firmware_bridge.frame import FrameDecoder
from firmware_bridge.labels import LabelTable
from firmware_bridge.recording import fetch_default_flight, load
from firmware_bridge.simulator import Faults, generate

RUNS = 5
#: Issue 18's goal for the whole chain on one core (x real time).
GOAL_X = 5000.0
REPO = Path(__file__).resolve().parents[2]


def median_time(fn, runs: int = RUNS) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall time and median CPU time (s) of ``runs`` calls of ``fn``."""
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall), statistics.median(cpu)


def chain_only() -> int:
    """``--chain-only``: print the whole chain's median (wall, CPU) as JSON (for the peer row)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    traj = load(fetch_default_flight(REPO / "var" / "cache"))
    chunks = [c for _, c in generate(traj)]
    table = LabelTable.default()
    print(json.dumps(median_time(lambda: replay_bytes(chunks, table))))
    return 0


def pure_peer() -> tuple[float, float]:
    """The whole chain on the pure-Python source, median (wall, CPU), from a subprocess."""
    out = subprocess.run([sys.executable, __file__, "--chain-only"], check=True, text=True,
                         capture_output=True, env={**os.environ, compiled.PURE_ENV: "1"})
    w, c = json.loads(out.stdout.strip().splitlines()[-1])
    return float(w), float(c)


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    load_before = os.getloadavg()
    path = fetch_default_flight(REPO / "var" / "cache")
    traj = load(path)
    flight_s = traj.end - traj.start
    status = compiled.status()
    chunks: list[bytes] = []

    def gen_stage() -> None:
        chunks[:] = [c for _, c in generate(traj)]

    t_gen = median_time(gen_stage)
    faulty = [c for _, c in generate(traj, Faults.parse(["garbage=0.02", "parity=0.01"],
                                                         traj.start))]
    nbytes = sum(map(len, chunks))
    table = LabelTable.default()
    frames: list = []

    def frame_stage() -> None:
        frames.clear()
        d = FrameDecoder()
        for c in chunks:
            frames.extend(d.feed_raw(c))

    t_frames = median_time(frame_stage)
    n_frames = len(frames)
    words = sum(1 for f in frames if f[0] == 1)

    def decode_stage() -> None:
        CardDecoder(table).decode(frames)

    t_decode = median_time(decode_stage)
    results = []

    def chain_run() -> None:
        results.append(replay_bytes(chunks, table))

    t_chain = median_time(chain_run)
    res = results[-1]
    modes = [(e.previous, e.current) for e in res.events if e.kind == "mode"]
    t_summ = median_time(lambda: results.append(replay_bytes(chunks, table,
                                                             summaries=SummaryConfig())))
    n_records = len(results[-1].records)
    t_faulty = median_time(lambda: replay_bytes(faulty, table))
    t_file = median_time(lambda: replay(path, summaries=SummaryConfig()))
    t_pure = pure_peer()
    load_after = os.getloadavg()

    con = Console(width=190)
    con.print(f"[bold]Avionics pipeline[/] — {path.name}: {flight_s:.0f} s of flight, "
              f"{nbytes / 1e6:.1f} MB, {n_frames} frames ({words} ARINC words); "
              f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, "
              f"one core, median of {RUNS}; load average {load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after (2 cores)")
    t = Table()
    for col in ("stage", "wall (s)", "CPU (s)", "frames/s (CPU)", "x real time (wall)",
                "x real time (CPU)", "/ 5,000x (wall)", "/ 5,000x (CPU)"):
        t.add_column(col, justify="right" if col != "stage" else "left")

    def row(name: str, w_c: tuple[float, float], bold: bool = False) -> None:
        w, c = w_c
        b, e = ("[bold]", "[/]") if bold else ("", "")
        t.add_row(f"{b}{name}{e}", f"{w:.2f}", f"{c:.2f}", f"{n_frames / c:,.0f}",
                  f"{flight_s / w:,.0f}", f"{b}{flight_s / c:,.0f}{e}",
                  f"{flight_s / w / GOAL_X:.2f}", f"{flight_s / c / GOAL_X:.2f}")

    row("simulator: recording -> card bytes", t_gen)
    row("bytes -> frames (resync, CRC)", t_frames)
    row("frames -> parameters (parity, SSM, range)", t_decode)
    row("bytes -> ... -> mode (whole chain)", t_chain, bold=True)
    row(f"whole chain + summaries stage ({n_records} records)", t_summ, bold=True)
    row("whole chain, 2% garbage + 1% parity errors", t_faulty)
    row("appliance replay: file -> simulator -> chain + summaries", t_file)
    row("peer: whole chain on the pure-Python source", t_pure)
    con.print(t)
    n_compiled = sum(status.values())
    con.print(f"hot path compiled (mypyc): {n_compiled} of {len(status)} modules"
              + ("" if n_compiled == len(status) else
                 f"; pure Python: {', '.join(m for m, c in status.items() if not c)}"))
    con.print(f"compiled vs pure-Python source, whole chain: {t_pure[0] / t_chain[0]:.2f}x wall, "
              f"{t_pure[1] / t_chain[1]:.2f}x CPU")
    for name, (w, c) in (("whole chain", t_chain), ("whole chain + summaries", t_summ)):
        x_wall, x_cpu = flight_s / w, flight_s / c
        verdict = ("met" if x_wall >= GOAL_X else "met in CPU time" if x_cpu >= GOAL_X
                   else "NOT met")
        con.print(f"{name}: median of {RUNS}: {w:.2f} s wall / {c:.2f} s CPU for {flight_s:.0f} s "
                  f"of flight = {x_wall:,.0f}x wall ({x_wall / GOAL_X:.2f} of the goal), "
                  f"{x_cpu:,.0f}x CPU ({x_cpu / GOAL_X:.2f} of the goal); goal >= 5,000x on one "
                  f"core: {verdict}")
    con.print(f"mode changes: {modes}")
    return 0


if __name__ == "__main__":
    sys.exit(chain_only() if "--chain-only" in sys.argv else main())
