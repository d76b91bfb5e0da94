"""The gate against a real nftables in a namespace of its own, with the gate's clock in the test's hand.

Leases and acceptances expire by the clock the gate is given (wall-clock epoch seconds in service),
so the test moves it instead of waiting: an acceptance that runs out holds the phone again, a lease
that runs out forgets it, entering a mode whose policy resets the gate (landing) holds every open
phone, and a second gate folded from the same journal loads the same sets. Every nft run checks,
inside the namespace, that it is there (``ip netns identify`` of its own shell).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cabinnet.gate import Gate, Nft
from appliance.cabinnet.leases import Lease
from appliance.cabinnet.rules import GatePorts, ruleset
from appliance.modes.events import TimeSource
from tests.store_fixture import MigratedJournal

from .lab import lab_unavailable, run

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(lab_unavailable() is not None, reason=str(lab_unavailable()))]
A, B = "02:cb:01:00:00:01", "02:cb:01:00:00:02"


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"cnG{os.getpid() % 100000}"
    run("ip", "netns", "del", name, check=False)
    run("ip", "netns", "add", name)
    try:
        yield name
    finally:
        run("ip", "netns", "del", name, check=False)


def nft_in(ns: str) -> list[str]:
    guard = f'[ "$(ip netns identify $$)" = "{ns}" ] || {{ echo "not in {ns}" >&2; exit 97; }}; '
    return ["ip", "netns", "exec", ns, "sh", "-c", guard + 'exec nft "$@"', "nft"]


def sets(ns: str) -> dict[str, set[str]]:
    """The held and open sets' elements (``MAC . IP``) as nft lists them."""
    out = json.loads(run(*nft_in(ns), "-j", "list", "table", "inet", "appliance").stdout)
    got: dict[str, set[str]] = {"held": set(), "open": set()}
    for item in out["nftables"]:
        s = item.get("set")
        if s and s["name"] in got:
            for e in s.get("elem", []):
                v = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
                got[s["name"]].add(" . ".join(v["concat"]))
    return got


def test_acceptance_lease_and_landing_expiry_and_restore(ns: str, tmp_path: Path) -> None:
    j = MigratedJournal(tmp_path / "journal.db")
    now = [1.8e9]
    ports = GatePorts(8080, 8081, 8443, 8082)

    def render(scope: str, held: list[str], opened: list[str]) -> str:
        return ruleset("appliance", "pax0", "mnt0", "10.40.0.1", ports, scope,  # type: ignore[arg-type]
                       held, opened)

    def gate() -> Gate:
        return Gate("appliance", j.writer, j.reader, Nft(nft_in(ns)), 600,
                    lambda: (now[0], TimeSource.LOCAL), render, clock=lambda: now[0])

    leases = {A: Lease(A, "10.40.0.10", now[0] + 3600), B: Lease(B, "10.40.0.11", now[0] + 3600)}

    async def go() -> None:
        g = gate()
        assert await g.restore("portal") == 0
        await g.sync(leases)
        assert sets(ns) == {"held": {f"{A} . 10.40.0.10", f"{B} . 10.40.0.11"}, "open": set()}
        assert await g.accept("10.40.0.10") == 600
        assert g.remaining("10.40.0.10") == 600 and g.remaining("10.40.0.11") == 0
        assert sets(ns) == {"held": {f"{B} . 10.40.0.11"}, "open": {f"{A} . 10.40.0.10"}}
        # The acceptance runs out: A is held again (its lease still runs).
        now[0] += 601
        await g.sync(leases)
        assert sets(ns)["open"] == set() and g.remaining("10.40.0.10") == 0
        # Landing: entering a mode whose policy resets the gate holds every open phone.
        await g.accept("10.40.0.10")
        await g.policy("GROUND", "portal", reset=True)
        assert sets(ns) == {"held": {f"{A} . 10.40.0.10", f"{B} . 10.40.0.11"}, "open": set()}
        await g.accept("10.40.0.11")
        # B's lease is renewed, A's runs out: A is forgotten; B's acceptance ran out: held.
        now[0] += 3000
        renewed = {B: Lease(B, "10.40.0.11", now[0] + 3600)}
        await g.sync(renewed)
        assert sets(ns) == {"held": {f"{B} . 10.40.0.11"}, "open": set()}
        await g.accept("10.40.0.11")
        assert sets(ns) == {"held": set(), "open": {f"{B} . 10.40.0.11"}}
        assert g.changes == {"held": 4, "open": 4, "expired": 1, "reset": 1, "policy": 1}
        # A second gate (the service restarted; the server rebooted: table deleted) folds the
        # journal to the same state.
        run(*nft_in(ns), "delete", "table", "inet", "appliance")
        g2 = gate()
        assert await g2.restore("portal") == 1
        assert sets(ns) == {"held": set(), "open": {f"{B} . 10.40.0.11"}}
        assert g2.remaining("10.40.0.11") == g.remaining("10.40.0.11") > 0
        # MAINTENANCE closes the gate: no phone is open, the rules reject the portal's ports.
        await g2.policy("MAINTENANCE", "closed", reset=False)
        assert g2.remaining("10.40.0.11") == 0
        rules = run(*nft_in(ns), "list", "chain", "inet", "appliance", "pax_in").stdout
        assert "reject with tcp reset" in rules.split("tcp dport { 8080, 8082, 8443 }")[1]

    try:
        asyncio.run(go())
    finally:
        j.close()
    assert subprocess.run(["ip", "netns", "identify", str(os.getpid())], capture_output=True,
                          text=True).stdout.strip() == ""  # this process never left the root
