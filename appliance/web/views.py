"""Read-only views of the avionics chain for the web apps (no hardware, no writes)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..avionics.chain import AvionicsChain
from ..avionics.params import ParameterStore

__all__ = ["flight_view", "signals_view"]

#: Passenger field -> parameter name.
_FLIGHT_FIELDS = {
    "altitude": "pressure_altitude",
    "computed_airspeed": "computed_airspeed",
    "true_airspeed": "true_airspeed",
    "ground_speed": "ground_speed",
    "vertical_rate": "altitude_rate",
    "track": "track_angle_true",
    "heading": "true_heading",
}


def _field(store: ParameterStore, name: str, now: float) -> dict[str, Any]:
    p = store.get(name, now)
    if p is None:
        return {"value": None, "unit": None, "validity": "no_data"}
    valid = p.valid
    return {"value": p.value if valid else None, "unit": p.unit, "validity": str(p.validity)}


def flight_view(chain: AvionicsChain) -> dict[str, Any]:
    """The passenger's flight info: mode, phase, values each with its validity, UTC and source."""
    store = chain.store
    now = store.now
    utc, source = chain.clock.utc(now)
    out: dict[str, Any] = {
        "mode": str(chain.mode),
        "phase": str(chain.phase.phase),
        "air_ground": str(chain.ag.state),
        "utc": {"value": dt.datetime.fromtimestamp(utc, dt.UTC).isoformat(timespec="seconds"),
                "source": source, "validity": "valid" if source == "avionics" else "local_clock"},
    }
    for key, name in _FLIGHT_FIELDS.items():
        out[key] = _field(store, name, now)
    for key in ("track", "heading"):  # ARINC sends ±180°; people read 0-360°
        if isinstance(out[key]["value"], float):
            out[key]["value"] = round(out[key]["value"] % 360.0, 2)
    lat, lon = _field(store, "latitude", now), _field(store, "longitude", now)
    pos_valid = lat["validity"] == "valid" and lon["validity"] == "valid"
    out["position"] = {"latitude": lat["value"], "longitude": lon["value"], "unit": "deg",
                       "validity": "valid" if pos_valid else
                       (lat["validity"] if lat["validity"] != "valid" else lon["validity"])}
    good = chain.position.last_good
    if out["position"]["validity"] == "implausible" and good is not None:
        # an implausible position is never shown: the map holds the last good one
        out["position"].update(latitude=good.lat, longitude=good.lon, held=True,
                               held_age_s=round(now - good.t, 1),
                               reason=chain.position.last_reason)
    parts = [store.value(f"flight_number_{i}", now) for i in range(1, 5)]
    number = "".join(str(p) for p in parts).strip() if all(p is not None for p in parts) else None
    out["flight_number"] = {"value": number, "validity": "valid" if number else "no_data"}
    return out


def signals_view(chain: AvionicsChain, now_wall_age: float = 0.0) -> dict[str, Any]:
    """Every parameter of every source, the source counters, and the disagreements.

    A parameter: value, unit, validity, age in s of card time, source. Disagreements: between
    redundant sources, now and recently (``appliance.avionics.redundancy``).
    """
    store = chain.store
    now = store.now
    return {
        "card_time_s": now,
        "parameters": [
            {"name": p.name, "value": p.value, "unit": p.unit, "validity": str(p.validity),
             "age_s": round(now - p.t + now_wall_age, 3), "source": p.source}
            for p in store.all(now)
        ],
        "sources": {name: {**d.stats.as_dict(), "bad_words": d.stats.bad_words}
                    for name, d in chain.decoders.items()},
        "disagreements": _disagreements(chain),
    }


def _disagreements(chain: AvionicsChain) -> dict[str, Any]:
    """Redundant sources that disagree now (any duration), and the recent finished episodes."""
    red = chain.redundancy

    def utc(t: float) -> float:
        return chain.clock.at(t)
    return {"current": [d.as_dict(utc) for d in red.current.values()],
            "recent": [d.as_dict(utc) for d in list(red.history)[-20:]],
            "episodes": dict(red.counts)}
