"""The card-time agent on plain lists: (card s, host s) pairs in, verdicts out (issue 13)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.cardtime import CardTimeCheck, CardTimeConfig, Verdict, screen
from appliance.avionics.params import SourceStats
from appliance.avionics.serial_source import SerialCardReader
from firmware_bridge.frame import DiscreteBits, Frame, encode_discretes
from firmware_bridge.player import PtyPort

A, J, F, R, S = Verdict.ACCEPT, Verdict.JUMP, Verdict.FIRST, Verdict.RESET, Verdict.RESYNC


def real_card(n: int, every: float = 0.05, card0: float = 5.0, host0: float = 100.0,
              delay: float = 0.002) -> list[tuple[float, float]]:
    """``n`` frames of a card whose clock follows host time, received ``delay`` s late."""
    return [(card0 + i * every, host0 + i * every + delay) for i in range(n)]


def test_the_issue_burst_is_rejected_and_the_card_goes_on() -> None:
    """13 frames, 0.25 s apart in card time, +1,000 s, all within 20 ms of host time."""
    check = CardTimeCheck()
    before = real_card(100)
    card_last, host_last = before[-1]
    burst = [(card_last + 1000 + k * 0.25, host_last + 0.05 + k * 0.0015) for k in range(13)]
    after = [(card_last + 0.1 + i * 0.05, host_last + 0.1 + i * 0.05 + 0.002) for i in range(20)]
    verdicts = screen(check, before + burst + after)
    assert verdicts == [F] + [A] * 99 + [J] * 13 + [A] * 20
    assert not check.rejecting and check.ahead_s == 0.0


def test_a_small_jump_is_bounded_by_the_slack() -> None:
    """A burst can run ahead of host time by at most max_rate x slack_s card seconds."""
    check = CardTimeCheck(CardTimeConfig(max_rate=1.0, slack_s=0.5))
    before = real_card(20)
    card_last, host_last = before[-1]
    burst = [(card_last + k * 0.1, host_last + 0.01) for k in range(1, 11)]  # +0.1 .. +1.0 s
    verdicts = screen(check, before + burst)
    assert verdicts[20:] == [A] * 5 + [J] * 5  # up to +0.5 s (0.01 s of host time + 0.49)


def test_card_reset_is_accepted_and_re_anchors() -> None:
    check = CardTimeCheck()
    frames = real_card(10, card0=3600.0)
    host_last = frames[-1][1]
    reset = [(0.5 + i * 0.05, host_last + 2.0 + i * 0.05) for i in range(10)]
    jump_after_reset = [(500.0, host_last + 2.6)]
    assert screen(check, frames + reset + jump_after_reset) == [F] + [A] * 9 + [R] + [A] * 9 + [J]


def test_a_clock_that_really_moved_is_taken_after_resync_s() -> None:
    """A new card (no reopen) 100 s ahead: rejected for resync_s of host time, then the time base."""
    cfg = CardTimeConfig(resync_s=5.0)
    check = CardTimeCheck(cfg)
    old = real_card(10)
    card_last, host_last = old[-1]
    new = [(card_last + 100 + i * 0.5, host_last + 0.5 + i * 0.5) for i in range(14)]
    verdicts = screen(check, old + new)
    assert verdicts[10:] == [J] * 10 + [S] + [A] * 3  # at host +5.0 s after the first rejected one


def test_a_genuine_frame_ends_a_rejected_run() -> None:
    """Injected frames interleaved with the real card's never resync: the real card wins."""
    check = CardTimeCheck(CardTimeConfig(resync_s=2.0))
    real = real_card(200, every=0.05)
    fake = [(c + 1000, h + 0.001) for c, h in real[10:]]
    mixed = real[:10] + [x for pair in zip(real[10:], fake, strict=True) for x in pair]
    verdicts = screen(check, mixed)
    assert Verdict.RESYNC not in verdicts
    assert verdicts[10::2] == [A] * 190 and verdicts[11::2] == [J] * 190


def test_replay_at_x400_within_its_rate() -> None:
    """The simulator at x400: card time 400x host time, paced late, never early."""
    check = CardTimeCheck(CardTimeConfig(max_rate=400.0))
    frames = [(5.0 + i * 0.125, 10.0 + i * 0.125 / 400 + (0.02 if i % 97 == 0 else 0.0))
              for i in range(5000)]
    assert set(screen(check, frames)[1:]) == {A}
    assert screen(CardTimeCheck(), frames)[1:40].count(J) > 30  # a real card's rate: rejected


def test_reset_forgets_the_anchor() -> None:
    check = CardTimeCheck()
    screen(check, real_card(5))
    check.reset()
    assert check.check(9000.0, 101.0) is F and check.check(9000.1, 101.1) is A


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        CardTimeConfig(max_rate=0)
    with pytest.raises(ValueError):
        CardTimeConfig(slack_s=-1)


# ---------------------------------------------------------------------------------- properties

@st.composite
def plausible_card(draw: st.DrawFn) -> tuple[CardTimeConfig, list[tuple[float, float]]]:
    """A card at a rate <= max_rate, each frame received late by >= 0 s, the first within slack.

    (Less the drift allowance over the whole run: late frames may pull the anchor down by that,
    so the slack must exceed it: 0.2 s covers 160 s of frames all received late.)
    """
    cfg = CardTimeConfig(max_rate=draw(st.sampled_from([1.0, 60.0, 400.0])),
                         slack_s=draw(st.floats(0.2, 2.0)))
    rate = draw(st.floats(0.001, 1.0)) * cfg.max_rate
    gaps = draw(st.lists(st.floats(0.0, 2.0), min_size=1, max_size=80))
    delays = draw(st.lists(st.floats(0.0, 3.0), min_size=len(gaps), max_size=len(gaps)))
    sent = list(itertools.accumulate(gaps))
    span = sent[-1] - sent[0] + max(delays)
    delays[0] = min(delays[0], max(0.0, cfg.slack_s - cfg.drift * span))
    # Bytes arrive in order: a frame is never received before the one sent ahead of it.
    hosts = itertools.accumulate((50.0 + s + d for s, d in zip(sent, delays, strict=True)), max)
    return cfg, [(7.0 + rate * s, h) for s, h in zip(sent, hosts, strict=True)]


@given(plausible_card())
@settings(max_examples=300, deadline=None)
def test_a_plausible_card_is_never_rejected(case: tuple[CardTimeConfig, list[tuple[float, float]]],
                                            ) -> None:
    cfg, frames = case
    assert Verdict.JUMP not in screen(CardTimeCheck(cfg), frames)


pairs = st.lists(st.tuples(st.floats(0.0, 5000.0), st.floats(0.0, 0.5)), max_size=120)


@given(pairs, st.sampled_from([1.0, 400.0]), st.floats(0.0, 1.0), st.floats(0.0, 6.0))
@settings(max_examples=300, deadline=None)
def test_accepted_card_time_never_outruns_host_time(raw: list[tuple[float, float]], rate: float,
                                                   slack: float, resync: float) -> None:
    """Whatever arrives, accepted card time never outruns host time, and resyncs take resync_s.

    Between two re-anchors no accepted frame leads the epoch's first by more than max_rate x
    (slack_s + drift x host elapsed); a RESYNC only ends a run of JUMPs that lasted resync_s.
    """
    cfg = CardTimeConfig(max_rate=rate, slack_s=slack, resync_s=resync)
    check = CardTimeCheck(cfg)
    frames = list(zip([c for c, _ in raw], itertools.accumulate(h for _, h in raw), strict=True))
    verdicts = screen(check, frames)
    epoch: tuple[float, float] | None = None  # (lead, host) the epoch started from
    run: tuple[float, float] | None = None  # first (lead, host) of the current run of JUMPs
    for (card, host), v in zip(frames, verdicts, strict=True):
        lead = card - rate * host
        if v is S:
            assert run is not None and host - run[1] >= resync - 1e-9
            epoch = run
        elif v in (F, R):
            epoch = (lead, host)
        if v is not J:
            assert epoch is not None
            assert lead <= epoch[0] + rate * (slack + cfg.drift * (host - epoch[1])) + 1e-6
            run = None
        elif run is None or lead > run[0] + rate * (slack + cfg.drift * (host - run[1])) + 1e-9:
            run = (lead, host)


# ---------------------------------------------------------------------------------- on the line

def test_serial_reader_drops_a_jump_burst(tmp_path: Path) -> None:
    """Through a pty: the burst never reaches ``on_frames``; it is counted and shown as rejecting."""
    link = tmp_path / "card"
    on = DiscreteBits.WOW_LEFT | DiscreteBits.WOW_RIGHT

    async def main() -> None:
        got: list[Frame] = []
        stats = SourceStats()
        reader = SerialCardReader(str(link), got.extend, stats, reconnect_s=0.05,
                                  card_time=CardTimeCheck())
        port = PtyPort(link)
        reader.start()
        loop = asyncio.get_running_loop()
        end = loop.time() + 5
        while not stats.connected:
            assert loop.time() < end
            await asyncio.sleep(0.01)
        t0 = loop.time()
        for _ in range(5):
            port.write(encode_discretes(int((loop.time() - t0) * 1e6) + 1_000_000, on))
            await asyncio.sleep(0.05)
        last = int((loop.time() - t0) * 1e6) + 1_000_000
        port.write(b"".join(encode_discretes(last + 1_000_000_000 + k * 250_000, 0)
                            for k in range(13)))
        while stats.card_time_jumps < 13:
            assert loop.time() < end
            await asyncio.sleep(0.01)
        assert stats.card_time_rejecting and stats.card_time_ahead_s > 990
        port.write(encode_discretes(int((loop.time() - t0) * 1e6) + 1_000_000, on))
        while len(got) < 6:
            assert loop.time() < end
            await asyncio.sleep(0.01)
        assert all(f[2] < 100_000_000 for f in got) and not stats.card_time_rejecting
        reader.stop()
        port.close()

    asyncio.run(main())
