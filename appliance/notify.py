"""systemd's notify protocol over ``$NOTIFY_SOCKET`` (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1).

The documented datagram protocol is a few lines, so no binding is needed; without the variable
(not under systemd) every call is a no-op returning False.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify"]

log = logging.getLogger(__name__)


def notify(message: str, wait_s: float = 0.0) -> bool:
    """Send ``message`` (for example ``"READY=1"``) to systemd; True if it was sent.

    By default it never blocks (a reader that does not read, a full queue: the datagram is dropped),
    which suits the periodic WATCHDOG=1 and STATUS=. With ``wait_s`` it blocks up to that long
    for room in the queue (READY=1 and STOPPING=1 must not be lost).
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            if wait_s > 0:
                s.settimeout(wait_s)
                s.send(message.encode())
            else:
                s.send(message.encode(), socket.MSG_DONTWAIT)
    except OSError as e:
        log.warning("sd_notify %s failed: %s", message.split("=")[0], e)
        return False
    return True
