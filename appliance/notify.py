"""systemd's notify protocol over ``$NOTIFY_SOCKET`` (READY=1, WATCHDOG=1, STATUS=..., STOPPING=1).

The documented datagram protocol is a few lines, so no binding is needed; without the variable
(not under systemd) every call is a no-op returning False.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify"]


def notify(message: str) -> bool:
    """Send ``message`` (for example ``"READY=1"``) to systemd; True if it was sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            # never block the event loop on a reader that does not read (a full queue): drop
            s.send(message.encode(), socket.MSG_DONTWAIT)
    except OSError:
        return False
    return True
