"""``appliance replay DIR --summary``: every recording under a folder, on worker processes.

The folder holds two excerpts of the real AFR34ZG recording (take-off and landing, raw Mode-S
JSONL, one gzipped, one in a sub-folder), a file that is not a recording, and a hidden file that
is skipped. A spoofed position jump is injected into both with ``--fault``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest

from appliance.avionics.fleet import find_recordings, summarise_folder
from appliance.cli import main

JUMP = "position-jump=0.5,0@+60/10"  # 10 s at 4 Hz: 40 bad positions in each excerpt


def utc(h: int, m: int, s: int = 0) -> float:
    return dt.datetime(2024, 7, 6, h, m, s, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def folder(flight_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    lines = flight_path.read_text().splitlines()

    def excerpt(t0: float, t1: float) -> str:
        return "\n".join(ln for ln in lines if t0 <= json.loads(ln)["timestamp"] < t1) + "\n"

    (root / "takeoff.jsonl").write_text(excerpt(utc(6, 57, 30), utc(7, 0, 30)))
    (root / "later").mkdir()
    (root / "later" / "landing.jsonl.gz").write_bytes(
        gzip.compress(excerpt(utc(7, 57), utc(7, 59, 30)).encode()))
    (root / "notes.json").write_text('{"pilot": "me", "coffee": true}')
    (root / ".hidden.jsonl").write_text("not even read")
    (root / "README.txt").write_text("not a recording by name")
    return root


def test_find_recordings(folder: Path) -> None:
    assert [str(p.relative_to(folder)) for p in find_recordings(folder)] == \
        ["later/landing.jsonl.gz", "notes.json", "takeoff.jsonl"]


def table_rows(out: str) -> dict[str, list[str]]:
    """The table's rows by file: each cell's text, its wrapped lines joined with spaces."""
    rows: dict[str, list[str]] = {}
    current: list[str] | None = None
    for ln in out.splitlines():
        if not ln.startswith("│"):
            continue
        cells = [c.strip() for c in ln.strip("│").split("│")]
        if cells[0] and cells[0] != "file":
            current = rows[cells[0]] = cells
        elif current is not None and not cells[0]:
            for i, c in enumerate(cells):
                current[i] = f"{current[i]} {c}".strip()
    return rows


def test_summary_table(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(folder), "--summary", "--fault", JUMP]) == 2  # one refused
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert list(rows) == ["later/landing.jsonl.gz", "notes.json", "takeoff.jsonl"]
    up, down = rows["takeoff.jsonl"], rows["later/landing.jsonl.gz"]
    assert "06:59:2" in up[2] and "GROUND->FLIGHT" in up[2]
    assert "07:58:4" in down[2] and "FLIGHT->GROUND" in down[2]
    for cells in (up, down):
        assert cells[1].endswith("min") and cells[4] == "40" and cells[5].endswith("x"), cells
    assert "takeoff" in up[3] and "landing" in down[3]
    assert rows["notes.json"][2].startswith(
        "refused: notes.json: found a JSON object with keys 'pilot', 'coffee'; expected")
    assert "2 recording(s) replayed, 1 refused" in out
    assert f"on {min(os.cpu_count() or 1, 3)} worker(s)" in out


def test_summary_json(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(folder), "--summary", "--json", "--fault", JUMP]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["workers"] == min(os.cpu_count() or 1, 3) and doc["wall_s"] > 0
    recs = {r["file"]: r for r in doc["recordings"]}
    up, down = recs["takeoff.jsonl"], recs["later/landing.jsonl.gz"]
    assert [(t["from"], t["to"]) for t in up["transitions"]] == [("GROUND", "FLIGHT")]
    assert up["transitions"][0]["utc"].startswith("2024-07-06T06:59:2")
    assert up["transitions"][0]["time_source"] == "avionics"
    assert [(t["from"], t["to"]) for t in down["transitions"]][-1] == ("FLIGHT", "GROUND")
    assert down["transitions"][-1]["utc"].startswith("2024-07-06T07:58:4")
    assert "takeoff" in up["phases"] and "landing" in down["phases"]
    assert up["bad_positions"] == down["bad_positions"] == 40
    assert 170 <= up["duration_s"] <= 180 and up["speed_x"] > 0 and up["error"] is None
    assert "expected" in recs["notes.json"]["error"]


def test_one_worker_gives_the_same_summaries(folder: Path) -> None:
    many, _ = summarise_folder(folder, [JUMP], workers=2)
    one, _ = summarise_folder(folder, [JUMP], workers=1)
    strip = [(r.file, r.duration_s, r.transitions, r.phases, r.bad_positions, r.error)
             for r in many]
    assert strip == [(r.file, r.duration_s, r.transitions, r.phases, r.bad_positions, r.error)
                     for r in one]


def test_a_folder_needs_summary_and_an_empty_one_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    assert main(["replay", str(tmp_path)]) == 2
    assert "add --summary" in capsys.readouterr().err
    assert main(["replay", str(tmp_path), "--summary"]) == 2
    assert "no recording under" in capsys.readouterr().err
