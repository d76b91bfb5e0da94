"""Run a Python module only after checking that this process is inside the expected namespace.

``ip netns exec NS python -m tests.sync.nsguard NS PEER_ADDR DEV -- -m MODULE ARGS...``: checks
``ip netns identify`` (of this very PID) says NS and ``ip route get PEER_ADDR`` leaves through DEV,
then replaces itself (same PID) with ``python -m MODULE ARGS...``. Exits 3 if a check fails, so
nothing is ever sent from the wrong namespace.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> int:
    ns, peer, dev = sys.argv[1:4]
    if sys.argv[4] != "--":
        print("usage: nsguard NS PEER DEV -- PYTHON-ARGS...", file=sys.stderr)
        return 2
    here = subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                          text=True, check=False).stdout.strip()
    if here != ns:
        print(f"nsguard: in namespace {here!r}, expected {ns!r}: refusing to run", file=sys.stderr)
        return 3
    route = subprocess.run(["ip", "route", "get", peer], capture_output=True, text=True,
                           check=False).stdout
    if f" dev {dev} " not in route:
        print(f"nsguard: route to {peer} is {route.strip()!r}, not via {dev}", file=sys.stderr)
        return 3
    os.execv(sys.executable, [sys.executable, *sys.argv[5:]])
    return 0  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
