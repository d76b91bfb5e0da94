"""Command line: config errors exit 78; replay reads both recording formats."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.settings import load_settings


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("body", [
    'bogus_key = 1\n',
    '[passenger]\nport = "not a port"\n',
    '[serial]\nbaud = 9600\n',  # unknown nested key
    'this is not toml',
    '[can]\nenabled = true\nchannel_name = "card"\n',  # serial (on by default) is named "card"
])
def test_bad_config_exits_78(tmp_path: Path, body: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    r = run("run", "--config", str(cfg))
    assert r.returncode == 78, r.stderr
    assert "config" in r.stderr and "Traceback" not in r.stderr


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('aircraft_id = "F-FILE"\n[serial]\nport = "/dev/ttyX"\n')
    monkeypatch.setenv("APPLIANCE_AIRCRAFT_ID", "F-ENV")
    s = load_settings(cfg)
    assert s.aircraft_id == "F-ENV" and s.serial.port == "/dev/ttyX"


def test_replay_raw_mode_s(flight_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(flight_path), "--fault", "parity=0.01"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if " mode " in ln]
    assert len(lines) == 2
    assert "GROUND -> FLIGHT" in lines[0] and lines[0].startswith("2024-07-06 06:59:")
    assert "FLIGHT -> GROUND" in lines[1] and lines[1].startswith("2024-07-06 07:58:")
    assert "[avionics]" in lines[0] and "votes=" in lines[0]


def test_replay_sample_list_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The traffic package's other format: a gzipped JSON list sampled every 10 s (ms timestamps)."""
    t0 = 1_700_000_000_000
    recs = []
    for i in range(120):  # 20 minutes: taxi, take off at 5 min, climb, descend, land at 15 min
        t = i * 10
        if t < 300 or t >= 900:
            alt, gs = ("ground" if i % 2 else 0), (10.0 if t < 240 or t > 960 else 140.0)
        else:
            alt, gs = 500 + min(t - 300, 900 - t) * 40, 250.0
        recs.append({"timestamp": t0 + t * 1000, "altitude": alt, "groundspeed": gs,
                     "latitude": 43.6, "longitude": 1.36, "track": 140.0, "callsign": "TEST1"})
    path = tmp_path / "flight.json.gz"
    path.write_bytes(gzip.compress(json.dumps(recs).encode()))
    assert main(["replay", str(path), "--json"]) == 0
    events = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    modes = [(e["from"], e["to"], e["utc"] - t0 / 1000) for e in events if e["kind"] == "mode"]
    assert [(a, b) for a, b, _ in modes] == [("GROUND", "FLIGHT"), ("FLIGHT", "GROUND")]
    assert 290 <= modes[0][2] <= 310 and 890 <= modes[1][2] <= 910


def test_replay_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("garbage")
    r = run("replay", str(bad))
    assert r.returncode == 2 and "found text starting 'garbage'" in r.stderr
    assert "expected" in r.stderr and "Traceback" not in r.stderr
