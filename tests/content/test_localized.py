"""Titles, synopses and ratings per language in the package manifest (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from appliance.content.manifest import Manifest

BASE = {"id": "film", "title": "Film", "kind": "video", "languages": ["en"], "licence": "x",
        "entry": "hls/master.m3u8", "files": {"hls/master.m3u8": {"size": 1, "sha256": "0" * 64}}}


def test_a_package_without_translations_keeps_its_version() -> None:
    m = Manifest.model_validate(BASE)
    assert "localized" not in json.loads(m.canonical())
    loc = Manifest.model_validate({**BASE, "localized": {"fr": {"title": "Le Film"}}})
    assert json.loads(loc.canonical())["localized"]["fr"]["title"] == "Le Film"
    assert loc.canonical() != m.canonical()


@pytest.mark.parametrize("bad", [{"FR!": {"title": "x"}}, {"fr": {"title": ""}},
                                 {"fr": {"plot": "x"}}, {"fr": {"rating": "x" * 17}}])
def test_bad_translations_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Manifest.model_validate({**BASE, "localized": bad})


def test_media_package_refuses_a_bad_localized_option(tmp_path: Path) -> None:
    src = tmp_path / "book.txt"
    src.write_text("Chapter 1\n\nText.\n")
    res = subprocess.run([sys.executable, "-m", "media", "package", str(src), "--out",
                          str(tmp_path / "out"), "--id", "b", "--title", "B", "--licence", "x",
                          "--localized", "fr:plot=Résumé"], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "media package: --localized 'fr:plot=Résumé' is not LANG:FIELD=TEXT with FIELD title, "
        "description or rating"]
    ok = subprocess.run([sys.executable, "-m", "media", "package", str(src), "--out",
                         str(tmp_path / "ok"), "--id", "b", "--title", "B", "--licence", "x",
                         "--localized", "fr:title=Le Livre", "--localized", "es:title=El Libro"],
                        capture_output=True, text=True, check=True)
    assert ok.returncode == 0
    man = json.loads((tmp_path / "ok" / "package.json").read_text())
    assert man["localized"]["fr"]["title"] == "Le Livre" and man["localized"]["es"]["title"] == "El Libro"
