"""``card-sim``: the interface card simulator's command line.

- ``card-sim fetch DIR``: download the default recorded flight (AFR34ZG) into DIR, print its path
- ``card-sim play RECORDING --link PATH [--speed N] [--fault SPEC ...] [--unplug TIME/SECONDS]``:
  play the flight onto a pty reachable at PATH
- ``card-sim dump RECORDING -o FILE [--fault SPEC ...]``: write the whole byte stream to FILE
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from .player import Unplug, play
from .recording import RecordingError, fetch_default_flight, load
from .simulator import Faults, FaultSpecError, _parse_time, generate


def main(argv: list[str] | None = None) -> int:
    """Run the simulator CLI; returns the process exit status (2 on bad arguments or input)."""
    ap = argparse.ArgumentParser(prog="card-sim", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the default recorded flight")
    f.add_argument("dir", type=Path)
    for name in ("play", "dump"):
        p = sub.add_parser(name)
        p.add_argument("recording", type=Path)
        p.add_argument("--fault", action="append", default=[], metavar="SPEC",
                       help="garbage=RATE, parity=RATE, wow-glitch=TIME, dropout=NAMES@TIME/S, "
                            "ncd=NAMES@TIME/S (TIME: HH:MM:SS UTC or +SECONDS)")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--start", help="start at TIME (HH:MM:SS UTC or +SECONDS)")
        p.add_argument("--end", help="end at TIME")
        if name == "play":
            p.add_argument("--link", required=True, type=Path, help="symlink to the pty slave")
            p.add_argument("--speed", type=float, default=60.0, help="flight seconds per second")
            p.add_argument("--unplug", action="append", default=[], metavar="TIME/SECONDS",
                           help="close the pty at TIME for SECONDS (wall time)")
            p.add_argument("--loop", action="store_true", help="play the flight again and again")
        else:
            p.add_argument("-o", "--output", required=True, type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="card-sim: %(message)s")
    if args.cmd == "fetch":
        print(fetch_default_flight(args.dir))
        return 0
    try:
        traj = load(args.recording)
        faults = Faults.parse(args.fault, traj.start, seed=args.seed)
        start = _parse_time(args.start, traj.start) if args.start else None
        end = _parse_time(args.end, traj.start) if args.end else None
        unplugs = []
        for u in getattr(args, "unplug", []):
            at, _, secs = u.partition("/")
            unplugs.append(Unplug(_parse_time(at, traj.start), float(secs)))
    except (OSError, RecordingError, FaultSpecError, ValueError) as e:
        print(f"card-sim: {e}", file=sys.stderr)
        return 2
    if args.cmd == "dump":
        with open(args.output, "wb") as out:
            for _, chunk in generate(traj, faults, start=start, end=end):
                out.write(chunk)
        return 0
    while True:
        t0 = time.monotonic()
        n = play(generate(traj, faults, start=start, end=end), args.link, args.speed, unplugs)
        logging.info("played %s: %d bytes in %.1f s", traj.name, n, time.monotonic() - t0)
        if not args.loop:
            return 0


if __name__ == "__main__":
    sys.exit(main())
