"""Parameters: one decoded, validity-checked value from the avionics, and the latest-value store.

A :class:`Parameter` is what every source (serial card, CAN, replay) produces: name, value, unit,
validity, card time ``t`` in seconds and the source it came from. The :class:`ParameterStore` keeps
the latest of each and answers with staleness applied at the time asked (staleness agent).

One parameter can come from several sources (the serial card's left and right systems by SDI,
``card/sdi1``; the CAN units by node, ``can/node2``; serial and CAN together): the store keeps the
latest of each ``(name, source)`` (:meth:`ParameterStore.sources`, for the vote and the
cross-checks of :mod:`appliance.avionics.redundancy`), and as "the" value of a name the latest
*usable* one: an invalid value from one source does not hide a fresh valid one from another.
A source name is hierarchical: ``card`` covers ``card/sdi1`` (:meth:`ParameterStore.expire_source`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

from firmware_bridge.labels import LabelTable

__all__ = ["DISCRETE_MAX_AGE_S", "SOURCE_SKEW_S", "Parameter", "ParameterStore", "SourceStats", "Validity"]

#: Discrete inputs come at 4 Hz; three periods.
DISCRETE_MAX_AGE_S: Final = 0.75
#: How far (s) one source's delivery may lag the chain's latest time when several share it.
SOURCE_SKEW_S: Final = 5.0

Value = float | int | str | bool


class Validity(enum.StrEnum):
    """Why a parameter can or cannot be used."""

    VALID = "valid"
    NO_COMPUTED_DATA = "no_computed_data"
    FUNCTIONAL_TEST = "functional_test"
    FAILURE_WARNING = "failure_warning"
    OUT_OF_RANGE = "out_of_range"
    FAULT = "fault"  #: the card flagged the input (open circuit)
    STALE = "stale"
    IMPLAUSIBLE = "implausible"  #: a value the aircraft cannot have (see avionics.position)


_STALE: Final = Validity.STALE


class Parameter:
    """One value: ``t`` is the card time in seconds when it was received.

    Treated as immutable (a changed parameter is a new one: :meth:`_replace`). A plain class, not
    a named tuple: once compiled (``appliance.compiled``) it is a native class, built by a direct
    call and read field by field, where a named tuple is built through ``tuple.__new__``: one is
    built per ARINC word on the hot path. Compares, hashes, prints and unpacks as the named tuple
    it was: ``(name, value, unit, validity, t, source)``.
    """

    name: str
    value: Value
    unit: str
    validity: Validity
    t: float
    source: str

    def __init__(self, name: str, value: Value, unit: str, validity: Validity, t: float,
                 source: str) -> None:
        """The fields in this order (positional, as the named tuple's)."""
        self.name = name
        self.value = value
        self.unit = unit
        self.validity = validity
        self.t = t
        self.source = source

    @property
    def valid(self) -> bool:
        """True if the value may be used."""
        return self.validity is Validity.VALID

    def astuple(self) -> tuple[str, Value, str, Validity, float, str]:
        """``(name, value, unit, validity, t, source)``."""
        return (self.name, self.value, self.unit, self.validity, self.t, self.source)

    def _replace(self, **changes: Any) -> Parameter:
        """A copy with the fields in ``changes`` replaced (as a named tuple's ``_replace``)."""
        f: dict[str, Any] = {"name": self.name, "value": self.value, "unit": self.unit,
                             "validity": self.validity, "t": self.t, "source": self.source}
        bad = set(changes) - set(f)
        if bad:
            raise ValueError(f"no such fields: {sorted(bad)}")
        f.update(changes)
        return Parameter(f["name"], f["value"], f["unit"], f["validity"], f["t"], f["source"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parameter):
            return NotImplemented
        return self.astuple() == other.astuple()

    def __hash__(self) -> int:
        return hash(self.astuple())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.astuple())

    def __repr__(self) -> str:
        return (f"Parameter(name={self.name!r}, value={self.value!r}, unit={self.unit!r}, "
                f"validity={self.validity!r}, t={self.t!r}, source={self.source!r})")


@dataclass(slots=True)
class SourceStats:
    """Counters of one bus source: what came in and what was thrown away, and why."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    bytes_in: int = 0
    frames: int = 0
    words: int = 0
    crc_errors: int = 0
    bad_length: int = 0
    garbage_bytes: int = 0
    parity_errors: int = 0
    unknown_labels: int = 0
    decode_errors: int = 0
    bad_frames: int = 0
    no_computed_data: int = 0
    functional_test: int = 0
    failure_warning: int = 0
    out_of_range: int = 0
    discrete_frames: int = 0
    heartbeats: int = 0
    last_frame_t: float | None = None
    #: Frames rejected because their card time ran ahead of host time (see avionics.cardtime).
    card_time_jumps: int = 0
    #: Times the card-time check re-anchored on frames it had rejected (resync) or a card reset.
    card_time_resyncs: int = 0
    card_time_resets: int = 0
    #: True while the latest frame was rejected (a card-time jump is going on).
    card_time_rejecting: bool = False
    #: How far (card s) the latest rejected frame was ahead of what host time allows.
    card_time_ahead_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (for the admin API)."""
        return asdict(self)

    @property
    def bad_words(self) -> int:
        """Words thrown away: parity, unknown label, undecodable."""
        return self.parity_errors + self.unknown_labels + self.decode_errors


class ParameterStore:
    """Latest parameter by name and by ``(source, name)``, staleness from the label table's rates.

    The chain's hot path writes :attr:`latest`, the source's dict of :meth:`of_source` and
    :attr:`source_now` directly (as :meth:`put` does).
    """

    def __init__(self, table: LabelTable) -> None:
        """Take the max age of each label parameter from ``table``; discretes use 0.75 s."""
        #: The latest usable parameter by name (what the stages read; see :meth:`put`).
        self.latest: dict[str, Parameter] = {}
        self._latest = self.latest
        #: source -> name -> its latest parameter.
        self.by_source: dict[str, dict[str, Parameter]] = {}
        #: (source, top source, its dict), sorted by source.
        self._order: list[tuple[str, str, dict[str, Parameter]]] = []
        #: top source name (``card`` for ``card/sdi1``) -> its latest card time (s).
        self.source_now: dict[str, float] = {}
        self._max_age: dict[str, float] = {s.name: s.max_age_s for s in table}
        self.now = 0.0  #: latest card time seen (s)

    def max_age(self, name: str) -> float:
        """Age (s) after which ``name`` is stale."""
        return self._max_age.get(name, DISCRETE_MAX_AGE_S)

    def of_source(self, source: str) -> dict[str, Parameter]:
        """The dict name -> latest parameter of ``source`` (created on first use)."""
        named = self.by_source.get(source)
        if named is None:
            named = self.by_source[source] = {}
            self._order = sorted((s, s.split("/", 1)[0], d) for s, d in self.by_source.items())
        return named

    def put(self, p: Parameter) -> None:
        """Store ``p`` as the latest of its ``(source, name)``, and usually of its name.

        Not of its name when ``p`` is invalid while the name's latest is a valid, fresh value from
        another source.
        """
        name = p.name
        cur = self._latest.get(name)
        if (cur is None or p.validity is Validity.VALID or cur.source == p.source
                or cur.validity is not Validity.VALID or p.t - cur.t > self.max_age(name)):
            self._latest[name] = p
        self.of_source(p.source)[name] = p
        top = p.source.split("/", 1)[0]
        if p.t > self.source_now.get(top, -float("inf")):
            self.source_now[top] = p.t
        if p.t > self.now:
            self.now = p.t

    def restart_time(self, t: float) -> None:
        """The card's clock restarted (card reset): card time is ``t`` (s) from now on."""
        self.now = t

    def get(self, name: str, now: float | None = None) -> Parameter | None:
        """The latest ``name``, marked STALE if older than its max age at ``now``; None if never seen."""
        p = self._latest.get(name)
        if p is None:
            return None
        if (self.now if now is None else now) - p.t > self._max_age.get(
                name, DISCRETE_MAX_AGE_S) and p.validity is not Validity.STALE:
            return p._replace(validity=Validity.STALE)
        return p

    def value(self, name: str, now: float | None = None) -> Value | None:
        """The value of ``name`` if it is valid and fresh at ``now``, else None."""
        p = self._latest.get(name)
        if p is None or p.validity is not Validity.VALID or (
                (self.now if now is None else now) - p.t
                > self._max_age.get(name, DISCRETE_MAX_AGE_S)):
            return None
        return p.value

    def sources(self, name: str, now: float | None = None) -> list[Parameter]:
        """The latest ``name`` of every source that sent it (staleness applied), by source.

        Stale: older than its max age behind its own source's latest time (the source sends, but
        not this), or behind ``now`` by more than its max age plus :data:`SOURCE_SKEW_S` (the
        source fell behind or silent). With one source both are the single-source rule.
        """
        if now is None:
            now = self.now
        age = self._max_age.get(name, DISCRETE_MAX_AGE_S)
        order = self._order
        stale = _STALE
        if len(order) == 1:  # one source (the common case): the same rule, without the loop
            _, top, named = order[0]
            p = named.get(name)
            if p is None:
                return []
            if p.validity is not stale:
                pt = p.t
                if now - pt > age + SOURCE_SKEW_S:
                    return [p._replace(validity=stale)]
                own = self.source_now.get(top, now)
                if (now if own > now else own) - pt > age:
                    return [p._replace(validity=stale)]
            return [p]
        lag = age + SOURCE_SKEW_S
        src_now = self.source_now
        out = []
        for _, top, named in order:
            p = named.get(name)
            if p is None:
                continue
            if p.validity is not stale:
                pt = p.t
                if now - pt > lag:
                    p = p._replace(validity=stale)
                else:
                    own = src_now.get(top, now)
                    if (now if own > now else own) - pt > age:
                        p = p._replace(validity=stale)
            out.append(p)
        return out

    def all(self, now: float | None = None) -> list[Parameter]:
        """Every parameter of every source seen, staleness applied, by name then source."""
        names = sorted({n for named in self.by_source.values() for n in named})
        return [p for n in names for p in self.sources(n, now)]

    def expire_source(self, source: str) -> None:
        """Mark every parameter of ``source`` (and of its sub-sources) stale (the source was lost)."""
        prefix = source + "/"

        def lost(src: str) -> bool:
            return src == source or src.startswith(prefix)
        for name, p in list(self._latest.items()):
            if lost(p.source):
                self._latest[name] = p._replace(validity=Validity.STALE)
        for src, named in self.by_source.items():
            if lost(src):
                for name, p in list(named.items()):
                    named[name] = p._replace(validity=Validity.STALE)
