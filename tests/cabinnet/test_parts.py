"""The cabin network's parts without namespaces: lease file, journal fold, ruleset, dnsmasq, settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.cabinnet.dnsmasq import held_args, main_args
from appliance.cabinnet.gate import Gate, GateError, Nft, fold
from appliance.cabinnet.leases import parse_leases
from appliance.cabinnet.rules import GatePorts, element, ruleset
from appliance.errors import ConfigError
from appliance.modes.events import TimeSource
from appliance.modes.policy import Mode, PolicyTable
from appliance.netsettings import CabinNetSettings
from appliance.settings import load_settings
from tests.store_fixture import MigratedJournal


def test_lease_file_lines_newest_wins_garbage_skipped() -> None:
    text = ("1700000000 02:cb:00:00:00:01 10.40.0.10 phone-a 01:02:cb:00:00:00:01\n"
            "duid 00:01:00:01:2c:aa\n"
            "not a lease\n"
            "0 02:CB:00:00:00:02 10.40.0.11 * *\n"
            "1700000500 02:cb:00:00:00:01 10.40.0.12 phone-a *\n"
            "1700000000 02:cb:00:00:00:03 999.1.1.1 x *\n")
    leases, skipped = parse_leases(text)
    assert skipped == 3
    assert leases["02:cb:00:00:00:01"].ip == "10.40.0.12"
    assert leases["02:cb:00:00:00:01"].expiry == 1700000500
    assert leases["02:cb:00:00:00:02"].expiry == float("inf")
    assert leases["02:cb:00:00:00:02"].hostname is None


MACS = [f"02:cb:00:00:00:{i:02x}" for i in range(4)]
IPS = [f"10.40.0.{10 + i}" for i in range(4)]
events = st.one_of(
    st.builds(lambda m, ip, t: {"event": "held", "mac": m, "ip": ip, "until": t},
              st.sampled_from(MACS), st.sampled_from(IPS), st.floats(0, 1e6)),
    st.builds(lambda m, ip, t: {"event": "open", "mac": m, "ip": ip, "until": t},
              st.sampled_from(MACS), st.sampled_from(IPS), st.floats(0, 1e6)),
    st.builds(lambda m: {"event": "expired", "mac": m, "ip": "x", "reason": "lease"},
              st.sampled_from(MACS)),
    st.just({"event": "reset", "mode": "GROUND", "count": 1}),
    st.just({"event": "policy", "mode": "MAINTENANCE", "gate": "closed"}))


@given(st.lists(events, max_size=40))
def test_fold_is_each_phones_last_word(rows: list[dict[str, Any]]) -> None:
    got = fold(rows)
    for mac in MACS:
        mine = [(i, r) for i, r in enumerate(rows) if r.get("mac") == mac]
        last = mine[-1] if mine else None
        if last is None or last[1]["event"] == "expired":
            assert mac not in got
            continue
        c = got[mac]
        assert c.ip == last[1]["ip"]
        reset_after = any(r["event"] == "reset" for r in rows[last[0] + 1:])
        if last[1]["event"] == "open" and not reset_after:
            assert (c.state, c.open_until) == ("open", last[1]["until"])
        else:
            assert (c.state, c.open_until) == ("held", 0.0)


def test_ruleset_admin_from_maintenance_only_and_the_policy() -> None:
    ports = GatePorts(passenger=8080, admin=8081, https=8443, media=8082)
    portal = ruleset("appliance", "pax0", "mnt0", "10.40.0.1", ports, "portal",
                     held=[element("02:cb:00:00:00:01", "10.40.0.10", 30.4)])
    assert 'tcp dport 8081 iifname != "mnt0" drop' in portal
    assert "tcp dport { 8080, 8082, 8443 } accept" in portal
    assert "ether saddr . ip saddr @open accept" in portal
    assert "redirect to :5353" in portal and "tcp dport 80 redirect to :8080" in portal
    assert "add element inet appliance held { 02:cb:00:00:00:01 . 10.40.0.10 timeout 30s }" in portal
    assert portal.startswith("add table inet appliance\ndelete table inet appliance\n")
    closed = ruleset("appliance", "pax0", "mnt0", "10.40.0.1", ports, "closed")
    assert "@open accept" not in closed and "redirect to :5353" not in closed
    assert "tcp dport { 8080, 8082, 8443 } reject with tcp reset" in closed


def test_dnsmasq_command_lines(tmp_path: Path) -> None:
    s = CabinNetSettings(enabled=True, tls_cert=tmp_path / "c", tls_key=tmp_path / "k",
                         upstream_dns=("10.9.9.9",))
    main = main_args(s, tmp_path / "leases")
    assert "--dhcp-option=114,https://portal.cabin:8443/api/captive" in main
    assert "--dhcp-range=10.40.0.10,10.40.3.250,3600" in main
    assert "--address=/captive.apple.com/10.40.0.1" in main and "--server=10.9.9.9" in main
    assert "--address=/dns.msftncsi.com/131.107.255.255" in main
    held = held_args(s)
    assert "--address=/#/10.40.0.1" in held and "--port=5353" in held
    assert not any(a.startswith("--dhcp") for a in held)
    assert not any(a.startswith("--dhcp-option=114") for a in main_args(CabinNetSettings(), tmp_path))


@pytest.mark.parametrize("toml,needle", [
    ('[cabinnet]\ndhcp_range = ["10.41.0.10", "10.40.0.20"]', "not in 10.40.0.0/22"),
    ('[cabinnet]\ntls_cert = "/x.pem"', "both tls_cert and tls_key"),
    ('[cabinnet]\nmaintenance_if = "pax0"', "must differ"),
    ('[cabinnet]\nbogus = 1', "bogus"),
])
def test_bad_cabinnet_settings_are_refused_with_the_reason(tmp_path: Path, toml: str,
                                                           needle: str) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


def test_off_by_default_and_policy_at_the_gate() -> None:
    assert load_settings().cabinnet.enabled is False
    table = PolicyTable.default()
    assert table[Mode.MAINTENANCE].passenger_gate == "closed"
    assert table[Mode.GROUND].gate_reset_on_entry and not table[Mode.FLIGHT].gate_reset_on_entry
    with pytest.raises(ValueError, match="passenger_gate"):
        PolicyTable.from_toml('[GROUND]\npassenger_services = true\nflight_only_content = false\n'
                              'hangar_intake = true\nsoftware_activation = true\n'
                              'passenger_gate = "wide-open"\n')


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[MigratedJournal]:
    j = MigratedJournal(tmp_path / "journal.db")
    yield j
    j.close()


def test_accept_refused_with_the_reason_before_anything_changes(journal: MigratedJournal) -> None:
    """An address without a lease, or a closed gate: GateError (the portal's 409), nothing journaled."""
    gate = Gate("appliance", journal.writer, journal.reader, Nft("/nonexistent/nft"), 3600,
                lambda: (1.7e9, TimeSource.LOCAL), lambda *a: "")

    async def go() -> None:
        with pytest.raises(GateError, match=r"no DHCP lease for 10\.40\.0\.99"):
            await gate.accept("10.40.0.99")
        gate.scope = "closed"
        with pytest.raises(GateError, match="closed"):
            await gate.accept("10.40.0.99", mac=MACS[0])
    asyncio.run(go())
    assert gate._read_rows() == [] and not gate.changes
