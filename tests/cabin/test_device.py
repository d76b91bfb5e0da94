"""The simulated device, the error mapping and the configuration values, as tables."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.cabin.device import Faults, SimDevice
from appliance.cabin.driver import raise_for_answer
from appliance.cabin.errors import (
    AuthFailedError,
    BusyError,
    ConflictError,
    CutOffError,
    DeviceError,
    RejectedError,
    SessionExpired,
    UnreachableError,
    classify,
)
from appliance.cabin.model import ApConfig, ConfigSpec, DeviceStatus, Ssid


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def device(**kw: Any) -> tuple[SimDevice, Clock, list[dict[str, Any]]]:
    clock, log = Clock(), []
    d = SimDevice("ap", ApConfig(ssids=(Ssid("CREW"), Ssid("PAX", False))), password="pw",
                  clock=clock, log=log.append, **kw)
    return d, clock, log


def session(d: SimDevice) -> str:
    (status, body), _ = d.handle("POST", "/api/v1/login", None, {"user": "admin", "password": "pw"})
    assert status == 200
    return str(body["token"])


def stage(d: SimDevice, tok: str, **cfg: Any) -> None:
    new = ApConfig.from_json({**d.running.to_json(), **cfg})
    (status, _), _ = d.handle("PUT", "/api/v1/config/candidate", tok, {"config": new.to_json()})
    assert status == 200


def test_commit_confirmed_rolls_back_unless_confirmed_in_time() -> None:
    d, clock, log = device()
    tok = session(d)
    stage(d, tok, channel=44)
    (status, body), _ = d.handle("POST", "/api/v1/commit", tok, {"tag": "j1", "confirm_timeout_s": 5})
    assert status == 200 and body["pending"] and d.running.channel == 44
    clock.t += 5.1
    d.expire()
    assert d.running.channel == 36 and d.pending is None and "j1" not in d.recent
    assert [r["effect"] for r in log] == ["commit", "rollback"]
    (status, _), _ = d.handle("POST", "/api/v1/confirm", tok, {"tag": "j1"})
    assert status == 409  # too late: nothing to confirm


def test_confirm_keeps_and_tags_make_repeats_no_ops() -> None:
    d, _, log = device()
    tok = session(d)
    stage(d, tok, channel=44)
    for _ in range(2):  # a retried commit (lost answer) is not a second change
        (status, _), _ = d.handle("POST", "/api/v1/commit", tok, {"tag": "j1", "confirm_timeout_s": 5})
        assert status == 200
    for _ in range(2):
        (status, _), _ = d.handle("POST", "/api/v1/confirm", tok, {"tag": "j1"})
        assert status == 200
    (status, _), reboot = d.handle("POST", "/api/v1/reboot", tok, {"tag": "r1"})
    assert status == 202 and reboot
    (status, body), reboot = d.handle("POST", "/api/v1/reboot", tok, {"tag": "r1"})
    assert status == 200 and body["already"] and not reboot
    assert [r["effect"] for r in log] == ["commit", "confirm", "reboot"]
    assert d.status().recent_tags == ("j1", "r1")


def test_reboot_rolls_back_pending_forgets_sessions_and_boots_not_ready() -> None:
    d, clock, log = device(faults=Faults(ready_s=2.0))
    tok = session(d)
    stage(d, tok, channel=44)
    d.handle("POST", "/api/v1/commit", tok, {"tag": "j1", "confirm_timeout_s": 30})
    d.shutdown("test")
    assert d.running.channel == 36 and not d.up
    d.boot()
    (status, body), _ = d.handle("GET", "/api/v1/status", tok, None)
    assert status == 503 and body["error"] == "not_ready"
    clock.t += 2.0
    (status, body), _ = d.handle("GET", "/api/v1/status", tok, None)
    assert status == 401 and body["error"] == "session_expired"
    assert [r["effect"] for r in log] == ["commit", "rollback", "boot"]


@pytest.mark.parametrize(("body", "code"), [
    ({"user": "admin", "password": "nope"}, "auth_failed"),
    ({"user": "root", "password": "pw"}, "auth_failed"),
])
def test_bad_credentials(body: dict[str, str], code: str) -> None:
    d, _, _ = device()
    (status, answer), _ = d.handle("POST", "/api/v1/login", None, body)
    assert status == 401 and answer["error"] == code


def test_invalid_candidate_and_commit_without_one() -> None:
    d, _, _ = device()
    tok = session(d)
    (status, _), _ = d.handle("PUT", "/api/v1/config/candidate", tok, {"config": {"channel": 45}})
    assert status == 400
    (status, body), _ = d.handle("POST", "/api/v1/commit", tok, {"tag": "x"})
    assert status == 409 and body["error"] == "conflict"


@pytest.mark.anyio
async def test_a_command_during_another_is_answered_busy_and_logged_as_overlap() -> None:
    log: list[dict[str, Any]] = []
    d = SimDevice("ap", ApConfig(), password="pw", faults=Faults(latency_s=0.05), log=log.append)
    a, b = await asyncio.gather(
        d.serve("GET", "/api/v1/status", None, None, "job-a", "127.0.0.1"),
        d.serve("GET", "/api/v1/status", None, None, "job-b", "127.0.0.1"))
    assert a is not None and b is not None
    assert sorted([a[0], b[0]]) == [401, 409]  # one processed (no session), one refused busy
    assert d.overlaps == 1 and [r.get("overlap", False) for r in log].count(True) == 1


@pytest.mark.anyio
async def test_a_config_that_excludes_the_manager_cuts_it_off() -> None:
    d = SimDevice("ap", ApConfig(mgmt_allow=("10.0.0.0/8",)), password="pw")
    assert await d.serve("GET", "/api/v1/status", None, None, "poll", "127.0.0.1") is None
    assert await d.serve("GET", "/api/v1/status", None, None, "poll", "10.1.2.3") is not None


@pytest.mark.parametrize(("status", "body", "error", "failure"), [
    (401, {"error": "auth_failed"}, AuthFailedError, "auth_failed"),
    (401, {"error": "session_expired"}, SessionExpired, "not_ready"),
    (503, {"error": "not_ready", "retry_after_s": 1.5}, BusyError, "not_ready"),
    (409, {"error": "busy"}, BusyError, "not_ready"),
    (409, {"error": "conflict"}, ConflictError, "error"),
    (400, {"error": "invalid"}, RejectedError, "error"),
    (502, None, UnreachableError, "not_ready"),
    (500, {"error": "internal"}, DeviceError, "error"),
])
def test_answers_map_to_errors_and_failure_classes(status: int, body: Any, error: type,
                                                   failure: str) -> None:
    with pytest.raises(error) as info:
        raise_for_answer("ap", status, body)
    assert type(info.value) is error and classify(info.value) == failure


def test_classify_cut_off() -> None:
    assert classify(CutOffError("ap", "x")) == "cut_off"
    raise_for_answer("ap", 200, {})  # 2xx: no error


def test_spec_applies_only_what_it_names() -> None:
    cfg = ApConfig(channel=36, tx_power_dbm=12, ssids=(Ssid("CREW"), Ssid("PAX", False), Ssid("X")))
    spec = ConfigSpec.from_json({"channel": 44, "ssids": {"PAX": True, "NEW": False}})
    out = spec.apply_to(cfg)
    assert out.channel == 44 and out.tx_power_dbm == 12
    assert out.ssid_states() == {"CREW": True, "PAX": True, "X": True, "NEW": False}
    assert spec.diff(cfg) == {"channel": (36, 44), "ssid:PAX": (False, True), "ssid:NEW": (None, False)}
    assert spec.matches(out) and not spec.diff(out)
    assert ConfigSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("bad", [{"channel": 45}, {"tx_power_dbm": 31}, {"radio_on": "yes"},
                                 {"mgmt_allow": ["not-a-cidr"]}, {"colour": "red"},
                                 {"ssids": {"x" * 33: True}}])
def test_spec_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ConfigSpec.from_json(bad)


def test_status_round_trips_through_json() -> None:
    d, _, _ = device()
    st = d.status()
    assert DeviceStatus.from_json(st.to_json()) == st
    with pytest.raises(ValueError):
        DeviceStatus.from_json({"model": "x"})
