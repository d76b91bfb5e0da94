"""Modes (GROUND, FLIGHT, MAINTENANCE) and the policy table saying what each opens (``policy.toml``)."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Literal, cast

__all__ = ["GateScope", "Mode", "ModePolicy", "PolicyTable", "SyncScope"]

SyncScope = Literal["all", "priority", "none"]
GateScope = Literal["portal", "closed"]


class Mode(enum.StrEnum):
    """The service's mode. MAINTENANCE is an admin override, allowed on the ground only."""

    GROUND = "GROUND"
    FLIGHT = "FLIGHT"
    MAINTENANCE = "MAINTENANCE"


@dataclass(frozen=True, slots=True)
class ModePolicy:
    """What one mode opens.

    ``passenger_gate``: what the cabin network's gate lets phones reach ("portal": the portal, and
    everything once accepted; "closed": DHCP and DNS only). ``gate_reset_on_entry``: entering this
    mode returns every accepted phone to the portal (at landing, for the next flight's passengers).
    """

    passenger_services: bool
    flight_only_content: bool
    hangar_intake: bool
    software_activation: bool
    sync: MappingProxyType[str, SyncScope]
    passenger_gate: GateScope = "portal"
    gate_reset_on_entry: bool = False


class PolicyTable:
    """The policy of every mode; ``PolicyTable.default()`` reads the shipped ``policy.toml``."""

    def __init__(self, policies: dict[Mode, ModePolicy]) -> None:
        """Raises ValueError unless every mode has a policy."""
        missing = set(Mode) - set(policies)
        if missing:
            raise ValueError(f"policy table lacks {sorted(missing)}")
        self._p = policies

    def __getitem__(self, mode: Mode) -> ModePolicy:
        """The policy of ``mode``."""
        return self._p[mode]

    @classmethod
    def from_toml(cls, text: str) -> PolicyTable:
        """Parse the table; raises ValueError on an unknown mode, key or sync scope."""
        data = tomllib.loads(text)
        out: dict[Mode, ModePolicy] = {}
        for name, row in data.items():
            sync = row.pop("sync", {})
            if any(v not in ("all", "priority", "none") for v in sync.values()):
                raise ValueError(f"{name}: bad sync scope in {sync}")
            if row.get("passenger_gate", "portal") not in ("portal", "closed"):
                raise ValueError(f"{name}: bad passenger_gate {row['passenger_gate']!r}")
            try:
                out[Mode(name)] = ModePolicy(**row, sync=MappingProxyType(
                    cast(dict[str, SyncScope], sync)))
            except TypeError as e:
                raise ValueError(f"{name}: {e}") from e
        return cls(out)

    @classmethod
    def default(cls) -> PolicyTable:
        """The shipped table."""
        return cls.from_toml(resources.files(__package__).joinpath("policy.toml").read_text())
