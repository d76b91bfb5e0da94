"""The access rule as a table, and the catalog body built once per change with a stable ETag."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from appliance.content.catalog import Access, access
from appliance.content.manifest import MANIFEST, Manifest
from appliance.modes.policy import Mode, PolicyTable

from .conftest import NOW, Env, copy_pkg

P = PolicyTable.default()
DAY = 86400.0


def m(**kw: object) -> Manifest:
    base: dict[str, object] = {"id": "x", "title": "X", "kind": "book", "languages": ["en"],
                               "licence": "PD", "entry": "a.html",
                               "files": {"a.html": {"size": 1, "sha256": "0" * 64}}}
    return Manifest.model_validate(base | kw)


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


TABLE = [
    (m(), Mode.GROUND, NOW, Access.OK),
    (m(), Mode.FLIGHT, NOW, Access.OK),
    (m(), Mode.MAINTENANCE, NOW, Access.CLOSED),
    (m(flight_only=True), Mode.GROUND, NOW, Access.LOCKED),
    (m(flight_only=True), Mode.FLIGHT, NOW, Access.OK),
    (m(flight_only=True), Mode.MAINTENANCE, NOW, Access.CLOSED),
    (m(not_before=iso(NOW + DAY)), Mode.FLIGHT, NOW, Access.NOT_LICENSED),
    (m(not_before=iso(NOW)), Mode.FLIGHT, NOW, Access.OK),  # from not_before inclusive
    (m(not_after=iso(NOW)), Mode.FLIGHT, NOW, Access.NOT_LICENSED),  # to not_after exclusive
    (m(not_after=iso(NOW + 1)), Mode.FLIGHT, NOW, Access.OK),
    (m(not_before="2024-07-06", not_after="2024-07-07"), Mode.GROUND, NOW, Access.OK),
    (m(not_before="2024-07-07"), Mode.GROUND, NOW, Access.NOT_LICENSED),
    (m(not_after="2024-07-06", flight_only=True), Mode.FLIGHT, NOW, Access.NOT_LICENSED),
]


@pytest.mark.parametrize(("manifest", "mode", "utc", "want"), TABLE)
def test_access(manifest: Manifest, mode: Mode, utc: float, want: Access) -> None:
    assert access(manifest, P[mode], utc) is want


def test_manifest_rejects_inverted_window() -> None:
    with pytest.raises(ValueError, match="not after"):
        m(not_before="2024-07-07", not_after="2024-07-06")


def _variant(pkg: Path, dst: Path, **fields: object) -> Path:
    out = copy_pkg(pkg, dst)
    man = json.loads((out / MANIFEST).read_text())
    man.update(fields)
    (out / MANIFEST).write_text(json.dumps(man))
    return out


def test_catalog_body_is_built_once_per_change(env: Env, book_pkg: Path, tmp_path: Path) -> None:
    env.install(book_pkg)
    env.install(_variant(book_pkg, tmp_path / "fo", id="flight-book", title="Flight book",
                         flight_only=True))
    env.install(_variant(book_pkg, tmp_path / "old", id="expired", title="Old",
                         not_after="2024-07-01"))
    env.install(_variant(book_pkg, tmp_path / "later", id="later", title="Later",
                         not_before=iso(NOW + 3600)))
    b1 = env.catalog.body()
    for _ in range(100):
        assert env.catalog.body() is b1
    assert env.catalog.builds == 1
    doc = json.loads(b1.body)
    by_id = {t["id"]: t for t in doc["titles"]}
    assert set(by_id) == {"book", "flight-book"}  # outside their window: not listed
    assert by_id["flight-book"]["available"] is False
    assert by_id["flight-book"]["message"] == "Available after take-off"
    assert by_id["flight-book"]["entry"] is None and by_id["book"]["entry"].startswith("/media/book/")
    assert doc["menu"] and doc["services"] == "open"
    env.mode = Mode.FLIGHT  # a mode change: rebuilt once
    b2 = env.catalog.body()
    assert b2.etag != b1.etag and env.catalog.body() is b2 and env.catalog.builds == 2
    assert all(t["available"] for t in json.loads(b2.body)["titles"])
    env.utc = NOW + 7200  # crossing a licensing boundary: rebuilt, "later" appears
    assert {t["id"] for t in json.loads(env.catalog.body().body)["titles"]} == {
        "book", "flight-book", "later"}
    env.utc = NOW + 7300  # same licensing period: no rebuild
    builds = env.catalog.builds
    env.catalog.body()
    assert env.catalog.builds == builds
    env.mode = Mode.MAINTENANCE
    closed = env.catalog.body()
    assert closed.status == 503 and json.loads(closed.body)["services"] == "closed"
