"""Lighthouse 12 (npm) mobile on the portal's first page, in Debian's Chromium (``make lighthouse``).

The real service runs on loopback with the packaged film and books and the npm vendor files (as
``make run``); Lighthouse's default mobile run (simulated slow 4G, a mid-range phone's CPU)
loads ``/portal/`` ``--runs`` times. Prints, per run and as the median: Performance and
Accessibility scores, LCP, TBT, CLS, FCP and the bytes transferred, then the goals of issue 16
(Performance >= 90, LCP < 2.5 s, CLS < 0.1, Accessibility 100). Exit status 1 if a goal is
missed (a measurement, not a test: never part of ``make test``). Reports go to
``var/artifacts/lighthouse/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.service import CHROMIUM, CHROMIUM_ARGS, Service  # noqa: E402

LIGHTHOUSE = REPO / "var" / "lighthouse" / "node_modules" / "lighthouse" / "cli" / "index.js"
CONTENT = REPO / "var" / "content"
VENDOR = REPO / "var" / "vendor"
ARTIFACTS = REPO / "var" / "artifacts" / "lighthouse"
GOALS = {"performance": (">=", 90), "lcp_s": ("<", 2.5), "cls": ("<", 0.1),
         "accessibility": (">=", 100)}


def run_once(url: str, out: Path) -> dict[str, float]:
    """One Lighthouse run of ``url``; the figures of its JSON report (saved as ``out``)."""
    flags = " ".join([*CHROMIUM_ARGS, "--headless=new"])
    subprocess.run(["node", str(LIGHTHOUSE), url, "--quiet", "--output=json",
                    f"--output-path={out}", "--only-categories=performance,accessibility",
                    f"--chrome-flags={flags}", "--max-wait-for-load=30000"],
                   check=True, env={**os.environ, "CHROME_PATH": CHROMIUM})
    r = json.loads(out.read_text())
    a = r["audits"]
    return {"performance": round(100 * r["categories"]["performance"]["score"]),
            "accessibility": round(100 * r["categories"]["accessibility"]["score"]),
            "lcp_s": a["largest-contentful-paint"]["numericValue"] / 1000,
            "fcp_s": a["first-contentful-paint"]["numericValue"] / 1000,
            "tbt_ms": a["total-blocking-time"]["numericValue"],
            "cls": a["cumulative-layout-shift"]["numericValue"],
            "bytes": a["total-byte-weight"]["numericValue"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not LIGHTHOUSE.exists():
        print(f"{LIGHTHOUSE} missing: make lighthouse installs it (npm)", file=sys.stderr)
        return 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lighthouse.") as tmp:
        svc = Service(Path(tmp), serial_enabled=False)
        svc.extra_config = (f'[content]\nvendor_dir = "{VENDOR}"\norigin = "LFPG"\n'
                            'destination = "LFBO"\n')
        cfg = svc.write_config()
        for pkg in sorted(CONTENT.iterdir()):
            if (pkg / "package.json").exists():
                subprocess.run([sys.executable, "-m", "appliance.cli", "content", "install",
                                "--config", str(cfg), str(pkg)], check=True, cwd=tmp,
                               capture_output=True)
        svc.start()
        try:
            url = f"http://127.0.0.1:{svc.passenger_port}/portal/"
            runs = [run_once(url, ARTIFACTS / f"run{i + 1}.json") for i in range(args.runs)]
        finally:
            svc.stop()
    keys = list(runs[0])
    print(f"{'run':>6} " + " ".join(f"{k:>13}" for k in keys))
    for i, r in enumerate(runs):
        print(f"{i + 1:>6} " + " ".join(f"{r[k]:>13.3f}" for k in keys))
    med = {k: statistics.median(r[k] for r in runs) for k in keys}
    print(f"{'median':>6} " + " ".join(f"{med[k]:>13.3f}" for k in keys))
    ok = True
    for k, (op, goal) in GOALS.items():
        met = med[k] >= goal if op == ">=" else med[k] < goal
        ok &= met
        print(f"{k}: {med[k]:.3f} (goal {op} {goal}) {'ok' if met else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
