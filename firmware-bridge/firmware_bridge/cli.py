"""``card-sim``: the interface card simulator's command line.

- ``card-sim fetch DIR``: download the default recorded flight (AFR34ZG) into DIR, print its path
- ``card-sim play RECORDING --link PATH [--speed N] [--fault SPEC ...] [--unplug TIME/SECONDS]
  [--can-interface IF --can-channel CH [--can-profile P] [--can-fault SPEC ...]]``: play the flight
  onto a pty reachable at PATH and, with ``--can-interface``, onto a CAN bus too, both paced by one
  clock (so the two streams stay together at any speed; see ``firmware_bridge.can_sim`` for the
  CAN faults)
- ``card-sim dump RECORDING -o FILE [--fault SPEC ...]``: write the whole byte stream to FILE
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .player import Unplug, play
from .recording import RecordingError, fetch_default_flight, load
from .simulator import Faults, FaultSpecError, _parse_time, generate

if TYPE_CHECKING:
    from .can_sim import CanFaults


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
            p.add_argument("--link", type=Path, help="symlink to the pty slave (required unless "
                           "--can-interface: then, without it, only CAN is played)")
            p.add_argument("--speed", type=float, default=60.0, help="flight seconds per second")
            p.add_argument("--unplug", action="append", default=[], metavar="TIME/SECONDS",
                           help="close the pty at TIME for SECONDS (wall time)")
            p.add_argument("--loop", action="store_true", help="play the flight again and again")
            p.add_argument("--can-interface", help="also play onto this python-can interface")
            p.add_argument("--can-channel", help="its channel")
            p.add_argument("--can-profile", "--can-layout", dest="can_profile",
                           choices=("arinc825", "canaerospace", "integration"), default="arinc825",
                           help="CAN identifiers: ARINC 825 29-bit (default), CANaerospace 11-bit, "
                           "or the integration's airground.dbc")
            p.add_argument("--can-fault", action="append", default=[], metavar="SPEC",
                           help="CAN faults, as can_sim's --fault")
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
    if args.link is None and not args.can_interface:
        print("card-sim: play needs --link, --can-interface or both", file=sys.stderr)
        return 2
    bus = None
    if args.can_interface:
        try:
            from .can_sim import open_can, with_can
            can_faults = _can_faults(args.can_fault, traj.start, args.seed)
            bus = open_can(args.can_interface, args.can_channel)
        except (ImportError, OSError, FaultSpecError, ValueError) as e:
            print(f"card-sim: CAN: {e}", file=sys.stderr)
            return 2
    try:
        while True:
            t0 = time.monotonic()
            chunks = generate(traj, faults, start=start, end=end)
            if bus is not None:
                chunks = with_can(chunks, traj, can_faults, bus, args.can_profile, start, end)
            n = (play(chunks, args.link, args.speed, unplugs) if args.link is not None
                 else _pace(chunks, args.speed))
            logging.info("played %s: %d bytes in %.1f s", traj.name, n, time.monotonic() - t0)
            if not args.loop:
                return 0
    finally:
        if bus is not None:
            bus.shutdown()


def _pace(chunks: Iterable[tuple[float, bytes]], speed: float) -> int:
    """Consume ``chunks`` paced to flight time x ``speed`` (CAN only: the serial bytes are dropped)."""
    wall0, t_first = time.monotonic(), None
    for t, _ in chunks:
        t_first = t if t_first is None else t_first
        delay = wall0 + (t - t_first) / speed - time.monotonic()
        if delay > 0.002:
            time.sleep(delay)
    return 0


def _can_faults(specs: list[str], start: float, seed: int) -> CanFaults:
    from .can_sim import CanFaults
    return CanFaults.parse(specs, start, seed=seed)


if __name__ == "__main__":
    sys.exit(main())
