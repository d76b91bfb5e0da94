"""Redundant sources: every valid source votes and is cross-checked; disagreements are recorded.

A parameter may come from several sources (serial card by SDI, CAN units by node, serial and CAN
together; see :class:`~appliance.avionics.params.ParameterStore`). :class:`Redundancy` is the agent
between the store and the state machines, evaluated on the chain's time grid:

- **Votes** (air/ground): each ``(input, source)`` that is valid and fresh votes; a discrete vote
  is debounced per input: a new value counts once it has held ``discrete_debounce_s`` (the first
  value counts at once). Vote keys are the input name when one source has it, else
  ``name@source``.
- **Values** (speeds, altitude, rate): the valid, fresh values of every source. One value: used.
  Several within the parameter's tolerance (:data:`TOLERANCES`): their mean. Several differing by
  more than the tolerance: **neither is trusted** (None) and the disagreement is recorded; the
  air/ground machine then holds its state (``AirGroundInputs.disagreement``), the phase machine
  sees the value as unknown.
- **Disagreements**: an episode starts when sources disagree (values beyond tolerance; air/ground
  votes both ways) and ends when they have agreed again for ``report_after_s`` (a source
  dropping out for a moment does not split one episode into many). Current episodes and the last
  :data:`HISTORY` finished ones (name, card time and UTC of start and end, the values at start) are
  kept for BITE and the signals page; an episode is *reported* once it has lasted
  ``report_after_s`` (votes switching at slightly different times during a real transition are
  not a fault).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .params import ParameterStore, Validity

__all__ = ["HISTORY", "TOLERANCES", "Disagreement", "Redundancy", "RedundancyConfig"]

#: Tolerance between sources of one parameter, in its unit (kt, ft, ft/min).
TOLERANCES = {"computed_airspeed": 25.0, "ground_speed": 25.0, "pressure_altitude": 500.0,
              "altitude_rate": 3000.0}
#: Finished disagreement episodes kept.
HISTORY: Final = 50
_VALID: Final = Validity.VALID


@dataclass(frozen=True, slots=True)
class RedundancyConfig:
    """Debounce of discrete inputs (s), tolerances, and when a disagreement is reported (s)."""

    discrete_debounce_s: float = 0.5
    tolerances: dict[str, float] = field(default_factory=lambda: dict(TOLERANCES))
    report_after_s: float = 2.0


@dataclass(slots=True)
class Disagreement:
    """One episode: ``name`` (a parameter, or ``air_ground``), its values by source at start."""

    name: str
    since_t: float
    values: dict[str, Any]
    until_t: float | None = None
    agreeing_since: float | None = None  #: sources agree again since (not yet for long enough)

    def as_dict(self, utc: Callable[[float], float]) -> dict[str, Any]:
        """For the APIs: times in card s and UTC epoch s."""
        return {"name": self.name, "since_t": self.since_t, "since_utc": utc(self.since_t),
                "agreeing_since_t": self.agreeing_since,
                "until_t": self.until_t,
                "until_utc": None if self.until_t is None else utc(self.until_t),
                "duration_s": None if self.until_t is None else round(self.until_t - self.since_t, 3),
                "values": self.values}


@dataclass(slots=True)
class _Debounced:
    accepted: bool | None = None
    candidate: bool | None = None
    since: float = 0.0
    key: str = ""  #: the vote's key when the input has several sources (``name@source``)


class Redundancy:
    """Votes, fused values and disagreements over ``store`` (see the module doc)."""

    def __init__(self, store: ParameterStore, inputs: dict[str, Callable[[Any], bool]],
                 config: RedundancyConfig = RedundancyConfig()) -> None:
        """``inputs``: air/ground input name -> how to read "on ground" from its value."""
        self.store = store
        self.inputs = inputs
        self.config = config
        #: input name -> source -> its debounce state (nested: no key to build per vote)
        self._debounce: dict[str, dict[str, _Debounced]] = {}
        self.current: dict[str, Disagreement] = {}
        self.history: collections.deque[Disagreement] = collections.deque(maxlen=HISTORY)
        #: Episodes that lasted at least report_after_s, by name.
        self.counts: collections.Counter[str] = collections.Counter()
        self._t = 0.0

    # --- votes ---------------------------------------------------------------------------------
    def votes(self, t: float) -> tuple[tuple[str, bool | None], ...]:
        """Each ``(input, source)`` seen: on ground (True), in air (False), or None if unusable.

        The vote stage's step: advances each input's debounce to ``t`` (call it on the chain's
        time grid only; to read the votes at any time use :meth:`peek_votes`).
        """
        return self._votes(t, True)

    def peek_votes(self, t: float) -> tuple[tuple[str, bool | None], ...]:
        """The votes :meth:`votes` would give at ``t``, changing nothing (for BITE, the status)."""
        return self._votes(t, False)

    def _votes(self, t: float, commit: bool) -> tuple[tuple[str, bool | None], ...]:
        out: list[tuple[str, bool | None]] = []
        deb = self.config.discrete_debounce_s
        debounce = self._debounce
        for name, read in self.inputs.items():
            params = self.store.sources(name, t)
            if not params:
                continue
            single = len(params) == 1
            by_source = debounce.get(name)
            if by_source is None:
                by_source = {}
                if commit:
                    debounce[name] = by_source
            for p in params:
                d = by_source.get(p.source)
                key = name if single else f"{name}@{p.source}" if d is None else d.key
                if p.validity is not _VALID:
                    out.append((key, None))
                    continue
                raw = read(p.value)
                if d is None:
                    if commit:
                        by_source[p.source] = _Debounced(raw, key=f"{name}@{p.source}")
                    out.append((key, raw))
                    continue
                accepted, candidate, since = d.accepted, d.candidate, d.since
                if raw == accepted:
                    candidate = None
                elif candidate is not raw:
                    candidate, since = raw, t
                if candidate is not None and t - since >= deb:
                    accepted, candidate = candidate, None
                if commit:
                    d.accepted, d.candidate, d.since = accepted, candidate, since
                out.append((key, accepted))
        return tuple(out)

    # --- values --------------------------------------------------------------------------------
    def value(self, name: str, t: float) -> float | None:
        """The trusted value of ``name`` at ``t`` (module doc), or None."""
        vals: dict[str, float] | None = None
        one: float | None = None
        for p in self.store.sources(name, t):
            v = p.value
            if p.validity is _VALID and isinstance(v, (int, float)):
                if one is None and vals is None:
                    one = float(v)
                    first = p.source
                    continue
                if vals is None:
                    vals = {first: one}  # type: ignore[dict-item]
                vals[p.source] = float(v)
        if vals is None:  # no value, or one: used as it is
            if name in self.current:
                self._agree(name, t)
            return one
        tol = self.config.tolerances.get(name)
        if tol is not None and max(vals.values()) - min(vals.values()) > tol:
            self._disagree(name, t, {k: round(v, 3) for k, v in vals.items()})
            return None
        self._agree(name, t)
        return sum(vals.values()) / len(vals)

    def check_votes(self, votes: tuple[tuple[str, bool | None], ...], t: float) -> None:
        """Record an air/ground disagreement when the valid votes go both ways."""
        cast = {k: v for k, v in votes if v is not None}
        if True in cast.values() and False in cast.values():
            self._disagree("air_ground", t, cast)
        elif "air_ground" in self.current:
            self._agree("air_ground", t)

    def disagreeing(self, t: float) -> list[str]:
        """Names whose sources disagree now (any duration; not those agreeing again)."""
        if not self.current:
            return []
        return sorted(n for n, d in self.current.items() if d.agreeing_since is None)

    def reported(self, t: float) -> list[Disagreement]:
        """Current episodes that have lasted at least ``report_after_s`` at ``t``."""
        return [d for d in self.current.values()
                if t - d.since_t >= self.config.report_after_s and d.agreeing_since is None]

    # --- episodes ------------------------------------------------------------------------------
    def _disagree(self, name: str, t: float, values: dict[str, Any]) -> None:
        d = self.current.get(name)
        if d is None:
            self.current[name] = Disagreement(name, t, values)
        else:
            d.agreeing_since = None

    def _agree(self, name: str, t: float) -> None:
        d = self.current.get(name)
        if d is None:
            return
        if d.agreeing_since is None:
            d.agreeing_since = t
        if t - d.agreeing_since < self.config.report_after_s:
            return  # one episode until the sources have agreed for report_after_s
        del self.current[name]
        d.until_t = d.agreeing_since
        if d.until_t - d.since_t >= self.config.report_after_s:
            self.history.append(d)
            self.counts[name] += 1
