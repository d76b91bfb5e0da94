"""``python -m tests.cabinnet.nocaps PYTHON-ARGS...``: run Python without a single capability.

The service's side of the cabin network needs none: the privileged part (dnsmasq, nft) is the
helper, ``appliance cabinnet-helper`` (appliance-cabinnet.service in the image). The namespace
tests run the service as root with its bounding, inheritable and ambient sets emptied
(``setpriv``), so after the exec it holds no capability, as under appliance.service (no
``AmbientCapabilities``, an empty ``CapabilityBoundingSet``). Replaces itself (same PID).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.execvp("setpriv", ["setpriv", "--bounding-set=-all", "--inh-caps=-all",
                          "--ambient-caps=-all", "--", sys.executable, *sys.argv[1:]])
