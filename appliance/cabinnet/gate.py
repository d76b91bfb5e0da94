"""The gate: which phones (MAC + IP) are held in the portal and which are open, kept in nftables sets.

Every change is a journal row (kind ``gate``, written before the sets change) and a count
(:attr:`Gate.changes`); at start the state is folded from those rows (:func:`fold`) and the whole
table loaded again in one transaction, so the gate survives a restart of the service (the table
stays in the kernel meanwhile) and of the server (the kernel forgot it; the journal did not).

Row data (``event``):

- ``held`` ``{mac, ip, until}``: a phone got a lease (``until``: the lease's expiry, epoch s), or
  its acceptance ran out (``reason``);
- ``open`` ``{mac, ip, until}``: the passenger accepted (``until``: the acceptance's expiry);
- ``expired`` ``{mac, ip, reason}``: the lease ran out: the phone is forgotten;
- ``reset`` ``{mode, count}``: entering a mode whose policy resets the gate (landing): every open
  phone is held again;
- ``policy`` ``{mode, gate}``: the mode's gate policy was applied ("portal" or "closed").

Times are the host's wall clock (epoch s): an expiry must hold across a reboot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine, select

from ..errors import ApplianceError
from ..modes.events import TimeSource
from ..modes.policy import GateScope
from ..store.journal import JournalEntry, JournalKind, write_entry
from ..store.models import journal
from ..store.writer import Writer
from .leases import Lease
from .rules import element, elements_cmd

__all__ = ["Client", "Gate", "GateError", "Nft", "fold"]

log = logging.getLogger(__name__)


class GateError(ApplianceError):
    """The gate could not do what was asked (unknown client, nftables refused); the reason says."""


@dataclass(slots=True)
class Client:
    """A phone the gate knows: MAC, IP, held or open, lease and acceptance expiry (epoch s)."""

    mac: str
    ip: str
    state: Literal["held", "open"] = "held"
    lease_until: float = 0.0
    open_until: float = 0.0


def fold(rows: Iterable[Mapping[str, Any]]) -> dict[str, Client]:
    """The gate's clients by MAC after the journal rows' ``data`` (oldest first); pure."""
    out: dict[str, Client] = {}
    for d in rows:
        ev, mac = d.get("event"), d.get("mac")
        if ev == "reset":
            for c in out.values():
                c.state, c.open_until = "held", 0.0
        elif ev in ("held", "open") and isinstance(mac, str) and isinstance(d.get("ip"), str):
            c = out.setdefault(mac, Client(mac, d["ip"]))
            c.ip = d["ip"]
            if ev == "held":
                c.state, c.open_until = "held", 0.0
                if "reason" not in d:
                    c.lease_until = float(d.get("until", 0.0))
            else:
                c.state, c.open_until = "open", float(d.get("until", 0.0))
        elif ev == "expired" and isinstance(mac, str):
            out.pop(mac, None)
    return out


class Nft:
    """``nft -f -`` runs, batched: commands sent while one runs go together in the next one."""

    def __init__(self, program: str | Sequence[str] = "nft") -> None:
        """Run ``program`` (a path, or an argv to which ``-f -`` is added)."""
        self.argv = [program] if isinstance(program, str) else list(program)
        self.program = self.argv[0]
        self.runs = 0
        self.errors = 0
        self.last_error = ""
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._lock = asyncio.Lock()

    async def run(self, text: str) -> None:
        """Apply ``text`` (alone, as one transaction); raises GateError with nft's message."""
        self.runs += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, "-f", "-", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            self.errors += 1
            self.last_error = str(e)
            raise GateError(f"cannot run {self.program}: {e}") from e
        _, err = await proc.communicate(text.encode())
        if proc.returncode != 0:
            self.errors += 1
            self.last_error = err.decode(errors="replace").strip()[-500:]
            raise GateError(f"nft refused the change: {self.last_error}")

    async def apply(self, text: str) -> None:
        """Apply element commands, batched with others waiting; raises GateError if it failed."""
        if not text:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((text, fut))
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self.run("".join(t for t, _ in batch))
                    for _, f in batch:
                        f.set_result(None)
                except GateError:
                    # One bad command fails the transaction: apply each alone to find it.
                    for t, f in batch:
                        try:
                            await self.run(t)
                            f.set_result(None)
                        except GateError as e:
                            f.set_exception(e)
        await fut


class Gate:
    """Held and open phones (see the module docstring); the portal's ``captive`` for each address."""

    def __init__(self, table: str, writer: Writer, reader: Engine, nft: Nft, accept_s: float,
                 utc: Callable[[], tuple[float, TimeSource]],
                 render: Callable[[GateScope, list[str], list[str]], str],
                 clock: Callable[[], float] = time.time) -> None:
        """``render(scope, held, open)`` gives the whole table (:func:`.rules.ruleset`)."""
        self.table = table
        self.writer = writer
        self.reader = reader
        self.nft = nft
        self.accept_s = accept_s
        self.utc = utc
        self.render = render
        self.clock = clock
        self.clients: dict[str, Client] = {}
        self.by_ip: dict[str, str] = {}
        self.scope: GateScope = "portal"
        self.changes: Counter[str] = Counter()  #: gate changes by event, since start
        self.restored = 0
        #: Reads the leases again (set by the service): an accept that came before the lease watch.
        self.refresh: Callable[[], Awaitable[None]] | None = None

    # ------------------------------------------------------------------ journal
    async def _journal(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        utc, src = self.utc()

        def write(conn: Any) -> None:
            for d in rows:
                summary = f"gate {d['event']} {d.get('mac', '')} {d.get('ip', '')}".rstrip()
                write_entry(conn, JournalEntry(JournalKind.GATE, summary, utc, src, d))
        await self.writer.run(write)
        self.changes.update(d["event"] for d in rows)

    def _read_rows(self) -> list[dict[str, Any]]:
        q = select(journal.c.data).where(journal.c.kind == JournalKind.GATE.value) \
            .order_by(journal.c.id)
        with self.reader.connect() as conn:
            return [dict(r) for (r,) in conn.execute(q)]

    # ------------------------------------------------------------------ table
    def _elems(self, c: Client, now: float) -> tuple[str, str]:
        """(set name, element) of a client now."""
        if c.state == "open":
            return "open", element(c.mac, c.ip, c.open_until - now)
        left = c.lease_until - now if c.lease_until != float("inf") else None
        return "held", element(c.mac, c.ip, left)

    async def load(self) -> None:
        """Load the whole table (rules for the current scope, every client) in one transaction."""
        now = self.clock()
        held = [self._elems(c, now)[1] for c in self.clients.values() if c.state == "held"]
        opened = [self._elems(c, now)[1] for c in self.clients.values() if c.state == "open"]
        await self.nft.run(self.render(self.scope, held, opened))

    def _cmd_remove(self, c: Client) -> str:
        """Commands taking ``c`` out of both sets (add first: deleting a missing element fails)."""
        key = [element(c.mac, c.ip)]
        return "".join(elements_cmd(op, self.table, s, key)
                       for s in ("held", "open") for op in ("add", "delete"))

    def _cmd_put(self, c: Client) -> str:
        name, elem = self._elems(c, self.clock())
        return self._cmd_remove(c) + elements_cmd("add", self.table, name, [elem])

    def _index(self) -> None:
        self.by_ip = {c.ip: c.mac for c in self.clients.values()}

    async def restore(self, scope: GateScope) -> int:
        """Fold the journal, load the table for ``scope``; returns the clients restored."""
        rows = await asyncio.to_thread(self._read_rows)
        self.clients = fold(rows)
        now = self.clock()
        for c in self.clients.values():
            if c.state == "open" and c.open_until <= now:
                c.state, c.open_until = "held", 0.0
        self.scope = scope
        self._index()
        await self.load()
        self.restored = len(self.clients)
        return self.restored

    # ------------------------------------------------------------------ the portal's side
    def remaining(self, client: str) -> float:
        """Seconds the phone at address ``client`` stays open (0: held or unknown)."""
        mac = self.by_ip.get(client)
        c = self.clients.get(mac) if mac else None
        if c is None or c.state != "open" or self.scope != "portal":
            return 0.0
        return max(0.0, c.open_until - self.clock())

    async def accept(self, client: str, mac: str | None = None) -> float:
        """Open the gate for the phone at address ``client``; returns the seconds it lasts.

        ``mac``: the phone's MAC if the caller knows it (else from its lease). Raises GateError
        for an address the gate does not know or while the policy closes the gate.
        """
        if self.scope != "portal":
            raise GateError("the passenger network is closed in this mode")
        mac = mac or self.by_ip.get(client)
        if mac is None and self.refresh is not None:
            await self.refresh()
            mac = self.by_ip.get(client)
        if mac is None:
            raise GateError(f"no DHCP lease for {client}: renew the Wi-Fi connection")
        c = self.clients.setdefault(mac, Client(mac, client))
        if c.ip != client:
            await self.nft.apply(self._cmd_remove(c))
            c.ip = client
        until = self.clock() + self.accept_s
        await self._journal([{"event": "open", "mac": mac, "ip": client, "until": until}])
        c.state, c.open_until = "open", until
        self._index()
        await self.nft.apply(self._cmd_put(c))
        return self.accept_s

    # ------------------------------------------------------------------ leases and expiry
    async def sync(self, leases: Mapping[str, Lease]) -> None:
        """Take the lease file's leases: new phones held, moved ones followed, expired forgotten."""
        now = self.clock()
        rows: list[dict[str, Any]] = []
        cmds: list[str] = []
        for lease in leases.values():
            if lease.expiry <= now:
                continue
            c = self.clients.get(lease.mac)
            if c is None:
                c = self.clients[lease.mac] = Client(lease.mac, lease.ip, "held", lease.expiry)
                rows.append({"event": "held", "mac": c.mac, "ip": c.ip, "until": lease.expiry})
                cmds.append(self._cmd_put(c))
            elif c.ip != lease.ip:
                cmds.append(self._cmd_remove(c))
                c.ip, c.lease_until = lease.ip, lease.expiry
                ev = "open" if c.state == "open" else "held"
                rows.append({"event": ev, "mac": c.mac, "ip": c.ip,
                             "until": c.open_until if ev == "open" else lease.expiry})
                cmds.append(self._cmd_put(c))
            elif lease.expiry > c.lease_until + 1:
                c.lease_until = lease.expiry  # a renewal: not journaled (the lease file has it)
                if c.state == "held":
                    cmds.append(self._cmd_put(c))
        for c in list(self.clients.values()):
            lease_ok = c.mac in leases and leases[c.mac].expiry > now
            if not lease_ok and c.lease_until <= now:
                rows.append({"event": "expired", "mac": c.mac, "ip": c.ip, "reason": "lease"})
                cmds.append(self._cmd_remove(c))
                del self.clients[c.mac]
            elif c.state == "open" and c.open_until <= now:
                c.state, c.open_until = "held", 0.0
                rows.append({"event": "held", "mac": c.mac, "ip": c.ip, "until": c.lease_until,
                             "reason": "acceptance expired"})
                cmds.append(self._cmd_put(c))
        await self._journal(rows)
        self._index()
        await self.nft.apply("".join(cmds))

    async def policy(self, mode: str, scope: GateScope, reset: bool) -> None:
        """Apply the mode's gate policy (``reset``: every open phone held again); reload the table."""
        rows: list[dict[str, Any]] = []
        opened = [c for c in self.clients.values() if c.state == "open"]
        if reset and opened:
            rows.append({"event": "reset", "mode": mode, "count": len(opened)})
        if scope != self.scope or rows:
            rows.append({"event": "policy", "mode": mode, "gate": scope})
        await self._journal(rows)
        if reset:
            for c in opened:
                c.state, c.open_until = "held", 0.0
        self.scope = scope
        await self.load()

    def status(self) -> dict[str, Any]:
        """Clients held and open, the scope, changes by event, nft runs and errors."""
        n_open = sum(1 for c in self.clients.values() if c.state == "open")
        return {"gate": self.scope, "held": len(self.clients) - n_open, "open": n_open,
                "changes": dict(self.changes), "restored": self.restored,
                "nft_runs": self.nft.runs, "nft_errors": self.nft.errors,
                "nft_last_error": self.nft.last_error}
