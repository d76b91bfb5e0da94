"""Link state: the configured interfaces (kernel operstate) plus a probe of the receiver.

A link is *up* when one of its interfaces is operationally up (``/sys/class/net/IF/operstate``
reads ``up``, or ``unknown`` as loopback and tunnel devices report) — or it lists no interface —
and the last probe of the receiver over it answered. The probe is ``GET /v1/watermarks``: it
proves reachability and the token, and gives the point to resume from.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path

from .status import LinkProbe

__all__ = ["SYSFS_NET", "LinkState", "OperState", "interface_state"]

SYSFS_NET = Path("/sys/class/net")


class OperState(enum.StrEnum):
    """An interface's state: the kernel's ``operstate`` values (RFC 2863), or ABSENT."""

    UNKNOWN = "unknown"
    NOTPRESENT = "notpresent"
    DOWN = "down"
    LOWERLAYERDOWN = "lowerlayerdown"
    TESTING = "testing"
    DORMANT = "dormant"
    UP = "up"
    ABSENT = "absent"  #: no such interface (not a kernel value)


_UP = frozenset({OperState.UP, OperState.UNKNOWN})


def interface_state(name: str, sysfs: Path = SYSFS_NET) -> OperState:
    """The kernel's operstate of interface ``name`` (UP, DOWN, ...), or ABSENT.

    Empty text reads as UNKNOWN (as before); text the kernel does not write reads as DOWN, so
    it never makes a link usable.
    """
    try:
        text = (sysfs / name / "operstate").read_text().strip()
    except OSError:
        return OperState.ABSENT
    try:
        return OperState(text or OperState.UNKNOWN)
    except ValueError:
        return OperState.DOWN


@dataclass(slots=True)
class LinkState:
    """What is known of one link. Times are epoch s."""

    name: str
    interfaces: tuple[str, ...]
    sysfs: Path = SYSFS_NET
    states: dict[str, OperState] = field(default_factory=dict)
    probe_ok: bool = False
    last_probe: float | None = None
    last_ok: float | None = None
    last_error: str | None = None
    failures: int = 0

    def refresh_interfaces(self) -> bool:
        """Read the interfaces' operstate; True if the link may be used (one is up, or none set)."""
        self.states = {i: interface_state(i, self.sysfs) for i in self.interfaces}
        return self.interface_up

    @property
    def interface_up(self) -> bool:
        """True if an interface is up (or the link lists none)."""
        return not self.interfaces or any(s in _UP for s in self.states.values())

    @property
    def up_interface(self) -> str | None:
        """The first interface that is up, if any."""
        return next((i for i, s in self.states.items() if s in _UP), None)

    @property
    def up(self) -> bool:
        """Interfaces up and the receiver answered the last probe."""
        return self.interface_up and self.probe_ok

    def probed(self, ok: bool, error: str | None = None, now: float | None = None) -> None:
        """Record a probe (or any request over the link) and its outcome."""
        now = time.time() if now is None else now
        self.last_probe = now
        self.probe_ok = ok
        if ok:
            self.last_ok, self.last_error, self.failures = now, None, 0
        else:
            self.last_error, self.failures = error, self.failures + 1

    def as_dict(self) -> LinkProbe:
        """For the status: interfaces and their state, probe outcome, last error."""
        return LinkProbe(up=self.up, interfaces=dict[str, str](self.states),
                         interface_up=self.interface_up, probe_ok=self.probe_ok,
                         last_probe=self.last_probe, last_ok=self.last_ok,
                         last_error=self.last_error, consecutive_failures=self.failures)
