"""``ground-receiver downlink``: keygen, publish to the fleet, status (issue 17, acceptance 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ground_receiver.cli import main as cli


def test_keygen_publish_status(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/ground.db"
    key = tmp_path / "ground.pem"
    assert cli(["downlink", "--database-url", url, "keygen", str(key)]) == 0
    assert len(capsys.readouterr().out.strip()) == 44  # base64 of 32 bytes
    assert cli(["downlink", "--database-url", url, "keygen", str(key)]) == 1  # never overwritten
    doc = tmp_path / "cfg.json"
    doc.write_text(json.dumps({"link_budgets": {"satcom": 2_500_000}}))
    assert cli(["downlink", "--database-url", url, "publish", "config", str(doc)]) == 1
    assert "downlink_key_file" in capsys.readouterr().err  # no key configured: nothing signed
    monkeypatch.setenv("GROUND_RECEIVER_DOWNLINK_KEY_FILE", str(key))
    assert cli(["downlink", "--database-url", url, "publish", "config", str(doc)]) == 1
    assert "no aircraft known" in capsys.readouterr().err
    for ac in ("F-A", "F-B"):
        assert cli(["downlink", "--database-url", url, "publish", "config", str(doc),
                    "--aircraft", ac]) == 0
    assert cli(["downlink", "--database-url", url, "publish", "config", str(doc),
                "--aircraft", "F-A"]) == 0
    capsys.readouterr()
    assert cli(["downlink", "--database-url", url, "status"]) == 0
    out = capsys.readouterr().out
    assert "F-A\tconfig\tpublished v2\tapplied v0" in out
    assert "F-B\tconfig\tpublished v1\tapplied v0" in out
    doc.write_text("[1, 2]")
    assert cli(["downlink", "--database-url", url, "publish", "notice", str(doc),
                "--aircraft", "F-A"]) == 1
    assert "JSON object" in capsys.readouterr().err
