"""The cabin network helper's gatekeeping: only the gate's own table, only from an allowed peer.

The helper (``appliance cabinnet-helper``) holds the network capabilities so the service needs
none; what the service may ask of it must be no more than the gate: :func:`check` accepts the
table exactly as :func:`~appliance.cabinnet.rules.ruleset` renders it (either scope) and element
lines of the gate's two sets, and refuses anything else. Over a real Unix socket, the service's
:class:`GateClient` reaches a real :class:`Helper` whose ``nft`` is a recording script (the real
nft is the namespace tests' part, tests/cabinnet/test_cabin_network.py); a peer whose uid is not
allowed (SO_PEERCRED) is refused.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from appliance.cabinnet.gate import GateError
from appliance.cabinnet.helper import GateClient, Helper, check
from appliance.cabinnet.rules import GatePorts, element, elements_cmd, ruleset
from appliance.netsettings import CabinNetSettings

ADMIN = 8081
PORTS = GatePorts(8080, ADMIN, 8443, 8082, 5353)


def settings(tmp: Path, nft: str = "/usr/sbin/nft") -> CabinNetSettings:
    return CabinNetSettings(enabled=True, gate_socket=tmp / "gate.sock", nft=nft)


def ports(p: GatePorts = PORTS) -> dict[str, int | None]:
    return {"passenger": p.passenger, "admin": p.admin, "https": p.https, "media": p.media,
            "held_dns": p.held_dns}


def table(cs: CabinNetSettings, scope: str, p: GatePorts = PORTS, **kw: object) -> str:
    return ruleset(cs.table, cs.passenger_if, cs.maintenance_if, cs.address, p, scope,  # type: ignore[arg-type]
                   **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", ["portal", "closed"])
def test_the_gates_own_changes_pass(tmp_path: Path, scope: str) -> None:
    cs = settings(tmp_path)
    elems = [element("02:00:00:00:00:01", "10.40.0.10", 600), element("02:00:00:00:00:02",
                                                                        "10.40.0.11")]
    check(table(cs, scope, held=elems[:1], opened=elems[1:]), ports(), cs, ADMIN)
    check(elements_cmd("add", cs.table, "open", elems) + elements_cmd("delete", cs.table, "held",
                                                                       elems[:1]),
          None, cs, ADMIN)


@pytest.mark.parametrize(("text", "why"), [
    ("flush ruleset\n", "not a gate element command"),
    ("add table inet appliance\ndelete table inet appliance\n", "not the gate's ruleset"),
    ("add element inet other held { 02:00:00:00:00:01 . 10.40.0.10 }\n", "not a gate element"),
    ("add element inet appliance held { 02:00:00:00:00:01 . 10.40.0.10 }\nadd rule inet "
     "appliance input accept\n", "not a gate element"),
    ("add element inet appliance held { 02:00:00:00:00:01 . 10.40.0.300 }\n", "not a gate element"),
    ("add element inet appliance held { 02:00:00:00:00:01 . 10.40.0.1 }; flush ruleset\n",
     "not a gate element"),
    ("add element inet appliance blocked { 02:00:00:00:00:01 . 10.40.0.1 }\n", "not a gate element"),
])
def test_anything_else_is_refused(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(GateError, match=why):
        check(text, ports(), settings(tmp_path), ADMIN)


def test_a_table_with_a_rule_more_or_other_ports_is_refused(tmp_path: Path) -> None:
    cs = settings(tmp_path)
    good = table(cs, "portal")
    with pytest.raises(GateError, match="not the gate's ruleset"):
        check(good.replace("policy accept;", "policy accept;\n    accept", 1), ports(), cs, ADMIN)
    # The admin port is the helper's own setting: a table that leaves another one open is refused.
    other = GatePorts(8080, 9999, 8443, 8082, 5353)
    with pytest.raises(GateError, match="helper's own settings"):
        check(table(cs, "portal", other), ports(other), cs, ADMIN)
    with pytest.raises(GateError, match="not a TCP port"):
        check(good, {**ports(), "passenger": 70000}, cs, ADMIN)


def test_client_and_helper_over_the_socket(tmp_path: Path) -> None:
    got = tmp_path / "nft-input"
    fake = tmp_path / "nft"
    fake.write_text(f"#!/bin/sh\ncat >> {got}\n")
    fake.chmod(0o755)
    cs = settings(tmp_path, str(fake))

    async def scenario() -> None:
        helper = Helper(cs, tmp_path / "data", ADMIN)
        helper.dns = []  # dnsmasq is the namespace tests' part
        await helper.start()
        try:
            assert oct(os.stat(cs.gate_socket).st_mode & 0o777) == "0o660"  # type: ignore[arg-type]
            client = GateClient(cs.gate_socket, lambda: PORTS)  # type: ignore[arg-type]
            text = table(cs, "portal", held=[element("02:00:00:00:00:01", "10.40.0.10", 60)])
            await client.run(text)
            await client.apply(elements_cmd("add", cs.table, "open",
                                            [element("02:00:00:00:00:01", "10.40.0.10", 60)]))
            with pytest.raises(GateError, match="nft refused the change: refused: not a gate"):
                await client.run("flush ruleset\n")
            assert (client.runs, client.errors) == (3, 1)
            assert got.read_text() == text + elements_cmd(
                "add", cs.table, "open", [element("02:00:00:00:00:01", "10.40.0.10", 60)])
            assert (await client.request({"op": "status"})) == {"ok": True, "dnsmasq": {}}
            helper.allowed = {os.getuid() + 12345}  # this process's uid is no longer allowed
            assert (await client.request({"op": "status"}))["error"] == "not allowed"
        finally:
            await helper.stop()
        with pytest.raises(GateError, match="cannot reach"):
            await GateClient(tmp_path / "none.sock", lambda: PORTS).run(text)
    asyncio.run(scenario())
