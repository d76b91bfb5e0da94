"""Benchmark: ARINC 429 word decoding, our codec against the PyPI ``arinc429`` package (0.1.7).

Run ``python tests/bench/bench_codec.py``. The same words (positive BNR pressure altitude, label
203, and computed airspeed, label 206, made by our encoder) are decoded by:

- ours, the appliance's path: ``LabelTable.decoders[w & 0xFF](w)``: label look-up, parity check,
  value, SSM status, SDI, as a plain tuple (the peer reuses one result object per decoder);
- ours, convenient: ``LabelTable.decode(w)`` and ``LabelSpec.decode(w)``, returning a ``Reading``;
- ours, raw: ``arinc429.bnr_decode(w, lsb, resolution)`` (the value only);
- ``arinc429.Decoder().decode(bytes, "BNR", msb, lsb, scale)``, given big-endian bytes as it needs
  (shared/AVIONICS.md: from an int it reads the wrong label); the conversion is done beforehand,
  outside the timing.

Each is timed 5 times (median reported). The results are compared, so a disagreement is an error
(exit status 1); timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

from arinc429 import Decoder as PeerDecoder
from rich.console import Console
from rich.table import Table

from firmware_bridge import arinc429 as a4
from firmware_bridge.labels import LabelSpec, LabelTable

SEED = 429
PEER = "arinc429 0.1.7 (bytes)"


def make_words(n: int, table: LabelTable) -> list[tuple[int, LabelSpec]]:
    """Return ``n`` random positive BNR words of labels 203 and 206 with their specs (seeded)."""
    rnd = random.Random(SEED)
    specs = [table.by_label[0o203], table.by_label[0o206]]
    out = []
    for i in range(n):
        spec = specs[i % 2]
        counts = rnd.randrange(1 << (29 - spec.lsb))  # sign bit clear: the peer can't do negatives
        out.append((spec.encode(counts * spec.resolution, sdi=rnd.randrange(4)), spec))
    return out


def time_runs(fn: Callable[[], list[float]], runs: int) -> tuple[float, list[float]]:
    """Run ``fn`` ``runs`` times; return the median wall time (s) and the last run's values."""
    times = []
    values: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        values = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), values


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; return 0, or 1 if the decoders disagree."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)

    table = LabelTable.default()
    pairs = make_words(args.words, table)
    words = [w for w, _ in pairs]
    raw_args = [(w, s.lsb, s.resolution) for w, s in pairs]
    peer_args = [(w.to_bytes(4, "big"), s.msb, s.lsb, s.resolution) for w, s in pairs]
    by_wire = table.by_wire
    bnr_decode = a4.bnr_decode

    def ours_hot() -> list[float]:
        decoders = table.decoders
        return [decoders[w & 0xFF](w)[1] for w in words]  # type: ignore[misc]

    def ours_full() -> list[float]:
        decode = table.decode
        return [decode(w).value for w in words]  # type: ignore[misc]

    def ours_spec() -> list[float]:
        return [by_wire[w & 0xFF].decode(w).value for w in words]  # type: ignore[misc]

    def ours_raw() -> list[float]:
        return [bnr_decode(w, lsb, res) for w, lsb, res in raw_args]

    def theirs() -> list[float]:
        dec = PeerDecoder().decode
        return [dec(b, "BNR", msb=msb, lsb=lsb, scale=res).value
                for b, msb, lsb, res in peer_args]

    results = {}
    for name, fn in (("ours: LabelTable.decoders[label](w), the appliance's path", ours_hot),
                     ("ours: LabelTable.decode(w) -> Reading", ours_full),
                     ("ours: by_wire[...] then LabelSpec.decode", ours_spec),
                     ("ours: bnr_decode", ours_raw),
                     (PEER, theirs)):
        results[name] = time_runs(fn, args.runs)

    reference = results[PEER]
    mismatches = {name: sum(a != b for a, b in zip(vals, reference[1], strict=True))
                  for name, (_, vals) in results.items()}

    out = Table(title=f"BNR decode, {args.words:,} words, median of {args.runs} runs")
    out.add_column("decoder", no_wrap=True)
    for col in ("median s", "words/s", "× arinc429", "mismatches"):
        out.add_column(col, justify="right", no_wrap=True)
    for name, (median, _) in results.items():
        out.add_row(name, f"{median:.4f}", f"{args.words / median:,.0f}",
                    f"{reference[0] / median:.2f}", str(mismatches[name]))
    Console(width=160).print(out)
    if any(mismatches.values()):
        print("error: the decoders disagree on some words", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
