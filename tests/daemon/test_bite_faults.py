"""BITE: the journal's fault history and a source's card-time jumps (issue 13)."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.avionics.chain import AvionicsChain
from appliance.daemon.bite import CARD_TIME_AMBER_S, Bite
from appliance.store.recovery import RecoveryReport
from appliance.store.writer import WriterStats
from firmware_bridge.labels import LabelTable


def make(tmp_path: Path) -> tuple[Bite, WriterStats, AvionicsChain, list[float]]:
    now = [1000.0]
    stats = WriterStats()
    chain = AvionicsChain(LabelTable.default())
    bite = Bite(chain, tmp_path, RecoveryReport("green", "journal ok", 0.0), stats,
                clock=lambda: now[0])
    return bite, stats, chain, now


def test_journal_red_while_failing_then_amber_with_its_history(tmp_path: Path) -> None:
    bite, stats, _, _ = make(tmp_path)
    assert bite.assess()["journal"]["state"] == "green"
    stats.fault("commit failed: database or disk is full", 1_700_000_000.0)
    j = bite.assess()["journal"]
    assert j["state"] == "red" and "disk is full" in j["reason"] and j["failing"]
    stats.fault("commit failed: database or disk is full", 1_700_000_005.0)
    stats.clean(time.time())
    j = bite.assess()["journal"]
    assert j["state"] == "amber" and not j["failing"]
    h = j["history"]
    assert h["faults"] == 2 and h["first_fault_utc"] == 1_700_000_000.0
    assert h["last_fault_utc"] == 1_700_000_005.0 and h["cleared_utc"] is not None
    stats.cleared_utc = time.time() - 7200  # long ago: green, history still shown
    j = bite.assess()["journal"]
    assert j["state"] == "green" and j["history"]["faults"] == 2


def test_source_amber_while_card_time_jumps(tmp_path: Path) -> None:
    bite, _, chain, now = make(tmp_path)
    st = chain.decoder("card").stats
    st.connected = True
    bite.sample()
    st.words += 100
    now[0] += 1.0
    bite.sample()
    assert bite.assess()["bus:card"]["state"] == "green"
    st.card_time_jumps, st.card_time_rejecting, st.card_time_ahead_s = 13, True, 1000.2
    now[0] += 0.5
    bite.sample()
    src = bite.assess()["bus:card"]
    assert src["state"] == "amber" and "1000.2 s ahead" in src["reason"]
    assert src["card_time_jumps"] == 13
    st.card_time_rejecting = False
    st.words += 100
    now[0] += CARD_TIME_AMBER_S / 2
    bite.sample()
    assert bite.assess()["bus:card"]["state"] == "amber"  # a burst stays visible a while
    st.words += 100
    now[0] += CARD_TIME_AMBER_S
    bite.sample()
    assert bite.assess()["bus:card"]["state"] == "green"
