"""Position plausibility: a position the aircraft cannot have reached is flagged, counted, held back.

Two parts, both driven by avionics (card) time:

- :class:`PositionCheck`, pure: fixes in, verdicts out (``check(fixes)`` takes and returns lists).
  A fix is compared with the last *good* one (the reference):

  1. **speed**: the great-circle distance may not exceed what ``max_speed_kt`` covers in the time
     since the reference appeared, plus ``slack_s`` of it (positions arrive sampled and held: the
     time a position first shows may lag its fix by up to a transmit period) and ``margin_nm``
     (the ARINC BNR resolution, 180/2^20 deg ≈ 0.01 NM, and receiver noise);
  2. **against track and ground speed** (complete fixes with valid track and ground speed, within
     ``jump_window_s`` of the reference): the displacement may not differ from the one the mean
     velocity of the reference and the fix predicts by more than ``jump_tolerance_nm`` plus
     ``jump_fraction`` of the predicted distance plus the speed times ``slack_s``.

  A good fix that moved becomes the reference; an unchanged position keeps the reference's time
  (so a position held for 10 s and then updated is judged over the 10 s). A flagged fix never
  becomes the reference: the last good position is held. A sustained offset of D NM is accepted
  after D / ``max_speed_kt`` hours (as a real fix after a long gap would be). Card time going back
  (a card reset) starts afresh.

- :class:`PositionGuard`, over the parameter stream: latitude and longitude arrive as separate
  words (ARINC labels 310/311); each word is judged with the latest other coordinate (speed rule
  only, until both have been updated since the last reference: then the fix is complete and both
  rules apply). A flagged word is stored with validity ``implausible``, so the track summary, the
  passengers' flight info and every ``valid`` reader leave it out; the flight info shows
  :attr:`PositionGuard.last_good` instead. Counters: :attr:`PositionGuard.bad_positions` (complete
  fixes flagged), per-rule counts, the last reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from .params import Parameter, ParameterStore, Validity

__all__ = ["POSITION_NAMES", "Fix", "PositionCheck", "PositionGuard", "Verdict", "distance_nm"]

EARTH_NM: Final = 3440.065
POSITION_NAMES: Final = frozenset({"latitude", "longitude"})
_VALID: Final = Validity.VALID
_new: Final = tuple.__new__
_JUDGED: Final = (Validity.VALID, Validity.IMPLAUSIBLE)


def distance_nm(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (NM) between two points in degrees (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_NM * math.asin(min(1.0, math.sqrt(a)))


class Fix(NamedTuple):
    """A position at card time ``t`` (s): lat/lon (deg), ground speed (kt) and track (deg true).

    A named tuple (immutable; built in a fraction of a frozen dataclass's time: one per position
    update, thousands a flight).
    """

    t: float
    lat: float
    lon: float
    gs_kt: float | None = None
    track_deg: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok``, or the rule that flagged the fix (``speed`` or ``track``) and why, in words."""

    ok: bool
    rule: str = ""
    reason: str = ""


OK: Final = Verdict(True)


def _velocity(gs: float | None, track: float | None) -> tuple[float, float] | None:
    """North and east components (kt) of a ground speed along a track, or None."""
    if gs is None or track is None or not (math.isfinite(gs) and math.isfinite(track)):
        return None
    r = math.radians(track)
    return gs * math.cos(r), gs * math.sin(r)


class PositionCheck:
    """The two rules of the module doc over a stream of fixes; see :meth:`push`."""

    def __init__(self, max_speed_kt: float = 750.0, slack_s: float = 1.0, margin_nm: float = 0.05,
                 jump_tolerance_nm: float = 1.0, jump_fraction: float = 0.25,
                 jump_window_s: float = 10.0) -> None:
        """Bounds: ``max_speed_kt`` (an airliner's ground speed stays well below 750 kt)."""
        self.max_speed_kt = max_speed_kt
        self.slack_s = slack_s
        self.margin_nm = margin_nm
        self.jump_tolerance_nm = jump_tolerance_nm
        self.jump_fraction = jump_fraction
        self.jump_window_s = jump_window_s
        self.reference: Fix | None = None  #: the last good position (held while fixes are bad)

    def push(self, fix: Fix, complete: bool = True) -> Verdict:
        """Judge ``fix``; ``complete=False`` for a half-updated one (speed rule only, no reference)."""
        ref = self.reference
        if ref is None or fix.t < ref.t:  # first fix, or the card clock restarted
            if complete:
                self.reference = fix
            return OK
        if fix.lat == ref.lat and fix.lon == ref.lon:
            return OK
        dt = fix.t - ref.t
        d = distance_nm(ref.lat, ref.lon, fix.lat, fix.lon)
        allowed = self.max_speed_kt * (dt + self.slack_s) / 3600.0 + self.margin_nm
        if d > allowed:
            implied = d / max(dt, 1e-3) * 3600.0
            return Verdict(False, "speed", f"jumped {d:.2f} NM in {dt:.2f} s ({implied:,.0f} kt; "
                                           f"at most {self.max_speed_kt:.0f} kt)")
        if complete and dt <= self.jump_window_s:
            v1 = _velocity(fix.gs_kt, fix.track_deg)
            v0 = _velocity(ref.gs_kt, ref.track_deg) or v1
            if v1 is not None and v0 is not None:
                vn, ve = (v0[0] + v1[0]) / 2, (v0[1] + v1[1]) / 2
                exp_n, exp_e = vn * dt / 3600.0, ve * dt / 3600.0
                dlon = (fix.lon - ref.lon + 180.0) % 360.0 - 180.0
                act_n = (fix.lat - ref.lat) * 60.0
                act_e = dlon * 60.0 * math.cos(math.radians((fix.lat + ref.lat) / 2))
                off = math.hypot(act_n - exp_n, act_e - exp_e)
                gs = max(fix.gs_kt or 0.0, ref.gs_kt or 0.0)
                tol = (self.jump_tolerance_nm + self.jump_fraction * math.hypot(exp_n, exp_e)
                       + gs * self.slack_s / 3600.0)
                if off > tol:
                    return Verdict(False, "track", f"{off:.2f} NM off where track "
                                                   f"{fix.track_deg:.0f}° and {fix.gs_kt:.0f} kt "
                                                   f"lead in {dt:.1f} s (tolerance {tol:.2f} NM)")
        if complete:
            self.reference = fix
        return OK

    def check(self, fixes: Iterable[Fix]) -> list[Verdict]:
        """:meth:`push` each (complete) fix in order; the verdicts in the same order."""
        return [self.push(f) for f in fixes]


class PositionGuard:
    """The check over the chain's parameter stream (see the module doc)."""

    def __init__(self, check: PositionCheck | None = None) -> None:
        """Wrap ``check`` (default bounds if None)."""
        self.check = check or PositionCheck()
        self.bad_positions = 0  #: complete fixes flagged
        self.flagged_words = 0  #: latitude/longitude words stored as implausible
        self.by_rule: dict[str, int] = {}
        self.last_reason: str | None = None
        self.last_bad_t: float | None = None  #: card time (s) of the latest flagged fix
        self._fresh: set[str] = set()

    @property
    def last_good(self) -> Fix | None:
        """The last good position (None before the first)."""
        return self.check.reference

    def filter(self, p: Parameter, store: ParameterStore) -> Parameter:
        """Judge a latitude or longitude parameter; returns it, or it marked ``implausible``."""
        v = p.value
        if p.validity is not _VALID or not isinstance(v, (int, float)):
            return p
        name, t = p.name, p.t
        is_lat = name == "latitude"
        other_name = "longitude" if is_lat else "latitude"
        # store.get(other_name, t), read in place: a stale value is no position to judge
        other = store.latest.get(other_name)
        if other is None or other.validity not in _JUDGED \
                or t - other.t > store.max_age(other_name) \
                or not isinstance(other.value, (int, float)):
            return p  # no position to judge yet
        fresh = self._fresh
        fresh.add(name)
        complete = len(fresh) == 2
        lat, lon = (float(v), float(other.value)) if is_lat else (float(other.value), float(v))
        ref = self.check.reference
        if ref is not None and lat == ref.lat and lon == ref.lon and t >= ref.t \
                and type(self.check) is PositionCheck:
            # unchanged: good, and the reference keeps its time (as PositionCheck.push decides)
            if complete:
                fresh.clear()
            return p
        gs, track = store.value("ground_speed", t), store.value("track_angle_true", t)
        # tuple.__new__ (all fields given): a C call, not the named tuple's Python-level __new__
        verdict = self.check.push(_new(Fix, (t, lat, lon, _num(gs), _num(track))), complete)
        if complete:
            fresh.clear()
        if verdict.ok:
            return p
        self.flagged_words += 1
        self.last_reason, self.last_bad_t = verdict.reason, t
        if complete:
            self.bad_positions += 1
            self.by_rule[verdict.rule] = self.by_rule.get(verdict.rule, 0) + 1
            if other.validity is Validity.VALID:  # the pair is bad: so is the half stored before
                store.put(other._replace(validity=Validity.IMPLAUSIBLE))
        return p._replace(validity=Validity.IMPLAUSIBLE)

    def as_dict(self) -> dict[str, Any]:
        """Counters and the last good position, for the status, BITE and the replay summary."""
        good = self.last_good
        return {"bad_positions": self.bad_positions, "flagged_words": self.flagged_words,
                "by_rule": dict(self.by_rule), "last_reason": self.last_reason,
                "last_bad_t": self.last_bad_t,
                "last_good": None if good is None else {"t": good.t, "lat": good.lat,
                                                        "lon": good.lon}}


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
