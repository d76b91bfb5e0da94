"""Built-in test (BITE): one green/amber/red status per subsystem, with the reason.

:class:`Bite` samples the counters every health tick (so rates are per second of wall time) and
:meth:`Bite.assess` returns ``{subsystem: {"state", "reason", ...}}`` plus ``overall`` (the worst).
Subsystems: each bus source (word rate, error counters), air/ground inputs, agreement between
redundant sources, time source, journal, disk space, and whatever else the daemon adds with
:meth:`Bite.add` (sync links, content store).
"""

from __future__ import annotations

import enum
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..avionics.chain import AvionicsChain
from ..avionics.params import SourceStats
from ..store.recovery import RecoveryReport
from ..store.writer import WriterStats

__all__ = ["AMBER", "GREEN", "RED", "Bite", "Colour", "content_bite", "orders_bite", "slot_bite",
           "sync_bite", "worst"]


class Colour(enum.StrEnum):
    """A BITE result: green (healthy), amber (degraded), red (failed)."""

    GREEN = "green"
    AMBER = "amber"
    RED = "red"


GREEN, AMBER, RED = Colour.GREEN, Colour.AMBER, Colour.RED
#: A source stays amber this long (s) after frames were last rejected for a card-time jump.
CARD_TIME_AMBER_S = 10.0
#: The journal stays amber this long (s, wall clock) after a failure cleared; its history
#: (count, first/last failure, cleared at) is shown for ever.
JOURNAL_FAULT_AMBER_S = 3600.0
#: Card seconds after the latest implausible position during which the position stays amber.
POSITION_AMBER_S = 60.0


def _iso(utc: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(utc))
_RANK: dict[str, int] = {GREEN: 0, AMBER: 1, RED: 2}


def worst(states: list[str]) -> str:
    """The worst colour of ``states`` (green if empty)."""
    return max(states, key=lambda s: _RANK.get(s, 2), default=GREEN)


def _status(state: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"state": state, "reason": reason, **extra}


class Bite:
    """Health assessment from live counters; sample it periodically, assess on demand."""

    def __init__(self, chain: AvionicsChain, data_dir: Path, recovery: RecoveryReport,
                 writer: WriterStats, clock: Callable[[], float] = time.monotonic) -> None:
        """Watch ``chain``'s sources, the journal writer and the data directory's disk."""
        self.chain = chain
        self.data_dir = data_dir
        self.recovery = recovery
        self.writer = writer
        self._clock = clock
        self._prev: dict[str, tuple[float, int, int]] = {}
        self.rates: dict[str, tuple[float, float]] = {}  #: source -> (words/s, bad words/s)
        self._extra: dict[str, Callable[[], dict[str, Any]]] = {}
        self._jumps: dict[str, tuple[int, float]] = {}  #: source -> (card_time_jumps, grew at)

    def add(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        """Add a subsystem whose status ``fn()`` returns (with at least ``state`` and ``reason``)."""
        self._extra[name] = fn

    def sample(self) -> None:
        """Take the counters now (call every health tick) to compute word and error rates."""
        now = self._clock()
        for name, dec in self.chain.decoders.items():
            st = dec.stats
            bad = st.bad_words + st.crc_errors + st.bad_frames
            prev = self._prev.get(name)
            if prev is not None and now > prev[0]:
                dt = now - prev[0]
                self.rates[name] = ((st.words - prev[1]) / dt, (bad - prev[2]) / dt)
            self._prev[name] = (now, st.words, bad)
            seen = self._jumps.get(name)
            if seen is None or st.card_time_jumps != seen[0]:
                self._jumps[name] = (st.card_time_jumps,
                                     now if st.card_time_jumps else -float("inf"))

    def _source(self, name: str, st: SourceStats) -> dict[str, Any]:
        words_s, bad_s = self.rates.get(name, (0.0, 0.0))
        extra = {"words_per_s": round(words_s, 1), "bad_per_s": round(bad_s, 2),
                 "parity_errors": st.parity_errors, "crc_errors": st.crc_errors,
                 "garbage_bytes": st.garbage_bytes, "unknown_labels": st.unknown_labels}
        extra.update(card_time_jumps=st.card_time_jumps, card_time_resyncs=st.card_time_resyncs)
        if not st.connected:
            return _status(RED, "not connected", **extra)
        _, grew_at = self._jumps.get(name, (0, -float("inf")))
        if st.card_time_rejecting or self._clock() - grew_at < CARD_TIME_AMBER_S:
            return _status(AMBER, f"card time ran {st.card_time_ahead_s:.1f} s ahead of host time: "
                                  f"{st.card_time_jumps} frames rejected", **extra)
        if words_s <= 0:
            return _status(RED, "connected but no words", **extra)
        if bad_s > 0.01 * words_s:
            return _status(AMBER, f"{bad_s:.1f} bad words/s ({bad_s / words_s:.1%})", **extra)
        return _status(GREEN, f"{words_s:.0f} words/s", **extra)

    def _air_ground(self) -> dict[str, Any]:
        c = self.chain
        votes = dict(c.votes(c.store.now))
        valid = [v for v in votes.values() if v is not None]
        extra = {"votes": votes, "air_ground": str(c.ag.state)}
        if not valid:
            return {**extra, "state": RED, "reason": f"no valid input; holding {c.ag.state}"}
        if len(set(valid)) > 1:
            return {**extra, "state": AMBER, "reason": f"inputs disagree ({c.ag.reason})"}
        if len(valid) < len(votes):
            return {**extra, "state": AMBER, "reason": f"{len(votes) - len(valid)} input(s) invalid"}
        return {**extra, "state": GREEN, "reason": f"{len(valid)} inputs agree"}

    def _redundancy(self) -> dict[str, Any]:
        red = self.chain.redundancy
        now = self.chain.store.now

        def utc(t: float) -> float:
            return self.chain.clock.at(t)
        current = [d.as_dict(utc) for d in red.reported(now)]
        extra = {"current": current, "episodes": dict(red.counts),
                 "recent": [d.as_dict(utc) for d in list(red.history)[-5:]]}
        if current:
            what = "; ".join(f"{d['name']} ({', '.join(f'{k} {v}' for k, v in d['values'].items())})"
                             for d in current)
            return _status(AMBER, f"sources disagree: {what}; neither trusted", **extra)
        n = sum(red.counts.values())
        return _status(GREEN, f"redundant sources agree ({n} disagreement(s) so far)", **extra)

    def _position(self) -> dict[str, Any]:
        g = self.chain.position
        extra = {"bad_positions": g.bad_positions, "by_rule": dict(g.by_rule),
                 "last_reason": g.last_reason}
        now = self.chain.store.now
        if g.last_bad_t is not None and 0 <= now - g.last_bad_t < POSITION_AMBER_S:
            return _status(AMBER, f"implausible position {now - g.last_bad_t:.0f} s ago "
                                  f"({g.last_reason}); holding the last good one", **extra)
        return _status(GREEN, f"{g.bad_positions} implausible position(s) so far", **extra)

    def _journal(self) -> dict[str, Any]:
        w = self.writer
        history = {"faults": w.faults, "first_fault_utc": w.first_fault_utc,
                   "last_fault_utc": w.last_fault_utc, "cleared_utc": w.cleared_utc,
                   "last_fault": w.last_fault}
        extra = {"commits": w.commits, "last_commit_ms": round(w.last_commit_s * 1000, 2),
                 "failed_commits": w.failed_commits, "failing": w.failing, "history": history}
        if w.failing:
            return _status(RED, f"journal failing now: {w.last_fault}", **extra)
        if w.cleared_utc is not None and time.time() - w.cleared_utc < JOURNAL_FAULT_AMBER_S:
            return _status(AMBER, f"{w.faults} journal failure(s), cleared at "
                                  f"{_iso(w.cleared_utc)} (last: {w.last_fault})", **extra)
        if self.recovery.state != GREEN:
            return _status(self.recovery.state, self.recovery.reason, **extra)
        if w.last_commit_s > 0.05:
            return _status(AMBER, f"slow commits ({w.last_commit_s * 1000:.0f} ms)", **extra)
        return _status(GREEN, self.recovery.reason, **extra)

    def _disk(self) -> dict[str, Any]:
        try:
            du = shutil.disk_usage(self.data_dir)
        except OSError as e:
            return _status(RED, f"cannot read disk usage: {e}")
        free = du.free / du.total if du.total else 0.0
        extra = {"free_bytes": du.free, "total_bytes": du.total, "free_ratio": round(free, 4)}
        if free < 0.05:
            return _status(RED, f"{free:.1%} free", **extra)
        if free < 0.15:
            return _status(AMBER, f"{free:.1%} free", **extra)
        return _status(GREEN, f"{free:.1%} free", **extra)

    def _time(self) -> dict[str, Any]:
        _, source = self.chain.utc()
        if source == "avionics":
            return _status(GREEN, "UTC from the avionics time labels")
        return _status(AMBER, "UTC from the local clock (avionics time not valid or not changing)")

    def assess(self) -> dict[str, Any]:
        """Every subsystem's status and ``overall``."""
        out: dict[str, Any] = {}
        for name, dec in self.chain.decoders.items():
            out[f"bus:{name}"] = self._source(name, dec.stats)
        if not self.chain.decoders:
            out["bus"] = _status(RED, "no avionics source has delivered anything")
        out["air_ground"] = self._air_ground()
        out["redundancy"] = self._redundancy()

        out["position"] = self._position()
        out["time"] = self._time()
        out["journal"] = self._journal()
        out["disk"] = self._disk()
        for name, fn in self._extra.items():
            try:
                out[name] = fn()
            except Exception as e:  # noqa: BLE001 - a broken probe is itself a red status
                out[name] = _status(RED, f"status unavailable: {e}")
        out["overall"] = worst([v["state"] for v in out.values()])
        return out

    def summary(self) -> str:
        """One line for systemd's STATUS=: the overall colour and the non-green subsystems."""
        a = self.assess()
        bad = [f"{k} {v['state']}" for k, v in a.items() if k != "overall" and v["state"] != GREEN]
        return f"BITE {a['overall']}" + (f" ({', '.join(bad)})" if bad else "")


def content_bite(catalog: Any) -> dict[str, Any]:
    """BITE colour of the content store from the loaded catalog."""
    titles, generation = catalog.titles, catalog.generation
    if generation < 0:
        return {"state": "amber", "reason": "catalog not loaded yet"}
    if not titles:
        return {"state": "amber", "reason": "no content installed", "generation": generation}
    return {"state": "green", "reason": f"{len(titles)} titles, catalog generation {generation}",
            "generation": generation}


def slot_bite(slots: Any) -> dict[str, Any]:
    """BITE of the software slots: which one runs, its version, and the last update's outcome.

    Amber while the last update was rolled back, failed or abandoned (the reason says why).
    """
    current = slots.current()
    last = slots.last_report()
    if current is None:
        return {"state": "green", "reason": "installed package (no A/B slot activated yet)"}
    info = slots.info(current) or {}
    reason = f"slot {current}, version {info.get('version', '?')}"
    state = "green"
    if last is not None:
        reason += f"; last update (v{last.get('version')}) {last.get('result')}"
        if last.get("result") != "committed":
            state = "amber"
            reason += f": {last.get('reason')}"
    return {"state": state, "reason": reason, "slot": current, "version": info.get("version"),
            "last_update": last}


def sync_bite(st: dict[str, Any]) -> dict[str, Any]:
    """BITE colour of the outbound sync from its status.

    Red when the receiver lost records it had acknowledged, when a stream is blocked, or when
    the outbox is over 90 % of its budget; amber when the disk budget dropped records.
    """
    used = st["totals"]["budget_used"]
    dropped = st["totals"]["dropped_records"]
    extra = {"depth": st["totals"]["depth"], "link": st["active_link"], "uplink": st["state"]}
    lost = {n: v["lost"] for n, v in st["streams"].items() if v.get("lost")}
    blocked = {n: v["blocked"] for n, v in st["streams"].items() if v.get("blocked")}
    if lost or blocked:
        reasons = [f"{n}: {d}" for n, d in lost.items()]
        reasons += [f"{n} blocked: {d}" for n, d in blocked.items()]
        return {"state": "red", "reason": "; ".join(reasons), **extra}
    if used > 0.9 or dropped:
        return {"state": "red" if used > 0.9 else "amber",
                "reason": f"outbox at {used:.0%} of its budget, {dropped} records dropped", **extra}
    return {"state": "green", "reason": f"{st['totals']['depth']} records queued", **extra}


def orders_bite(queued: int | None, bound: int, refused_full: int, rate_limited: int,
                ) -> dict[str, Any]:
    """BITE colour of the orders stream: orders waiting for the ground against its stated bound.

    Red at the bound (new orders are refused with 503), amber from 80 % of it, green below.
    ``refused_full``: orders refused at the bound; ``rate_limited``: orders refused with 429.
    """
    extra = {"queued": queued, "bound": bound, "refused_full": refused_full,
             "rate_limited": rate_limited}
    if queued is None:
        return {"state": GREEN, "reason": f"not counted yet (bound {bound})", **extra}
    if queued >= bound:
        return {"state": RED, "reason": f"{queued} orders waiting for the ground: at the bound "
                                        f"({bound}), new orders refused", **extra}
    if queued >= 0.8 * bound:
        return {"state": AMBER, "reason": f"{queued} of at most {bound} orders waiting for the "
                                          "ground", **extra}
    return {"state": GREEN, "reason": f"{queued} of at most {bound} orders waiting for the ground",
            **extra}
