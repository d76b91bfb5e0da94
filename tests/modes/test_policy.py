from __future__ import annotations

import pytest

from appliance.modes.policy import Mode, PolicyTable


def test_shipped_policy() -> None:
    p = PolicyTable.default()
    assert p[Mode.FLIGHT].hangar_intake is False and p[Mode.FLIGHT].software_activation is False
    assert p[Mode.GROUND].hangar_intake is True
    assert p[Mode.MAINTENANCE].passenger_services is False
    assert p[Mode.FLIGHT].sync["satcom"] == "priority"


@pytest.mark.parametrize("text", [
    "[GROUND]\npassenger_services = true\n",  # missing keys and modes
    "[BOGUS]\n",
])
def test_bad_policy_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        PolicyTable.from_toml(text)
