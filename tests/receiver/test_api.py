"""The ground receiver through its real app, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import zstandard
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from ground_receiver.app import create_app
from ground_receiver.db import conflicts, gaps, init_db, make_engine, records
from ground_receiver.settings import ReceiverSettings, hash_token
from ground_receiver.store import BatchStore

from .conftest import batch_body, zstd_stream

AC, TOKEN = "F-RCV", "receiver-token-0123456789"
OTHER, OTHER_TOKEN = "F-OTHER", "other-token-0123456789ab"
H = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
     "Content-Encoding": "zstd"}


@pytest.fixture
def app(db_url: str) -> Iterator[tuple[TestClient, BatchStore]]:
    engine = make_engine(db_url)
    init_db(engine)
    settings = ReceiverSettings(database_url=db_url, aircraft={AC: TOKEN,
                                                                OTHER: hash_token(OTHER_TOKEN)},
                                max_body_bytes=200_000, max_batch_bytes=1_000_000,
                                max_records=5000)
    store = BatchStore(engine, reorder_wait_s=0.2)
    with TestClient(create_app(settings, store)) as client:
        yield client, store
    engine.dispose()


def post(client: TestClient, body: bytes, headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, object]]:
    r = client.post("/v1/batches", content=body, headers=headers or H)
    return r.status_code, r.json()


def count(store: BatchStore, table: object) -> int:
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_batch_applied_in_order_and_watermarks_answered(app: tuple[TestClient, BatchStore]) -> None:
    client, store = app
    _, body = batch_body(AC, {"orders": [1, 2, 3], "logs": [1, 2]})
    status, ans = post(client, body)
    assert status == 200, ans
    assert ans["applied"] == 5 and ans["duplicates"] == 0 and ans["errors"] == []
    assert ans["watermarks"] == {"orders": 3, "logs": 2}
    r = client.get("/v1/watermarks", headers=H)
    assert r.json()["watermarks"] == {"orders": 3, "logs": 2} and r.json()["aircraft"] == AC
    with store.engine.connect() as c:
        keys = [k for (k,) in c.execute(select(records.c.idempotency_key).order_by(records.c.id))]
    assert keys == [f"{AC}:orders:1", f"{AC}:orders:2", f"{AC}:orders:3", f"{AC}:logs:1",
                    f"{AC}:logs:2"]


def test_duplicates_are_not_applied_twice(app: tuple[TestClient, BatchStore]) -> None:
    client, store = app
    post(client, batch_body(AC, {"orders": [1, 2, 3]})[1])
    status, ans = post(client, batch_body(AC, {"orders": [2, 3, 4, 5]})[1])
    assert status == 200
    assert (ans["applied"], ans["duplicates"], ans["conflicts"]) == (2, 2, 0)
    assert count(store, records) == 5


def test_same_batch_id_replays_the_answer(app: tuple[TestClient, BatchStore]) -> None:
    client, store = app
    bid, body = batch_body(AC, {"usage": [1, 2]})
    first = post(client, body)[1]
    status, again = post(client, body)
    assert status == 200 and again["duplicate"] is True and again["applied"] == first["applied"]
    assert count(store, records) == 2
    _, other = batch_body(AC, {"usage": [3]}, batch_id=bid)
    status, ans = post(client, other)
    assert status == 409 and ans["error"] == "batch_id_reused"


def test_same_key_other_content_is_a_conflict_never_applied(app: tuple[TestClient, BatchStore]) -> None:
    client, store = app
    post(client, batch_body(AC, {"orders": [1]})[1])
    status, ans = post(client, batch_body(AC, {"orders": [1]}, payload={"n": "changed"})[1])
    assert status == 200 and ans["conflicts"] == 1 and ans["applied"] == 0
    assert count(store, conflicts) == 1 and count(store, records) == 1


def test_a_hole_is_refused_for_that_stream_only(app: tuple[TestClient, BatchStore]) -> None:
    client, _ = app
    post(client, batch_body(AC, {"orders": [1, 2]})[1])
    status, ans = post(client, batch_body(AC, {"orders": [4, 5], "logs": [1]})[1])
    assert status == 200
    assert ans["errors"] == [{"stream": "orders", "code": "gap", "expected": 3, "got": 4,
                              "detail": ans["errors"][0]["detail"]}]  # type: ignore[index]
    assert ans["watermarks"] == {"orders": 2, "logs": 1}


def test_declared_drops_become_gaps_and_move_the_watermark(app: tuple[TestClient, BatchStore]) -> None:
    client, store = app
    post(client, batch_body(AC, {"logs": [1, 2]})[1])
    # 3..6 dropped by the aircraft (its disk budget), then 7 and 8 sent
    status, ans = post(client, batch_body(AC, {"logs": [7, 8]}, dropped={"logs": [(3, 6)]})[1])
    assert status == 200 and ans["errors"] == [] and ans["gaps"] == 1
    assert ans["watermarks"] == {"logs": 8}
    # a range partly below the watermark records only the part above it
    status, ans = post(client, batch_body(AC, {"logs": [11]}, dropped={"logs": [(5, 10)]})[1])
    assert ans["watermarks"] == {"logs": 11} and ans["gaps"] == 1
    with store.engine.connect() as c:
        got = [(r.seq_lo, r.seq_hi) for r in c.execute(select(gaps).order_by(gaps.c.id))]
    assert got == [(3, 6), (9, 10)]
    # a stream of nothing but a drop range
    status, ans = post(client, batch_body(AC, {"health": []}, dropped={"health": [(1, 40)]})[1])
    assert ans["watermarks"]["health"] == 40  # type: ignore[index]


@pytest.mark.parametrize("headers,code,status", [
    ({"Content-Type": "application/json"}, "unauthorized", 401),
    ({"Authorization": "Bearer wrong-token-0123456789", "Content-Type": "application/json"},
     "unauthorized", 401),
    ({"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}, "unsupported", 415),
    ({"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
      "Content-Encoding": "gzip"}, "unsupported", 415),
])
def test_auth_and_content_headers(app: tuple[TestClient, BatchStore], headers: dict[str, str],
                                  code: str, status: int) -> None:
    client, _ = app
    got, ans = post(client, batch_body(AC, {"orders": [1]})[1], headers=headers)
    assert (got, ans["error"]) == (status, code)
    assert client.get("/v1/watermarks").status_code == 401


def test_another_aircrafts_batch_is_forbidden(app: tuple[TestClient, BatchStore]) -> None:
    client, _ = app
    status, ans = post(client, batch_body(OTHER, {"orders": [1]})[1])
    assert (status, ans["error"]) == (403, "aircraft_mismatch")
    h = {**H, "Authorization": f"Bearer {OTHER_TOKEN}"}
    assert post(client, batch_body(OTHER, {"orders": [1]})[1], headers=h)[0] == 200
    assert client.get("/v1/watermarks", headers=H).json()["watermarks"] == {}


@pytest.mark.parametrize("body,why", [
    (b"not zstd at all", "zstd"),
    (zstandard.ZstdCompressor().compress(b"{not json"), "schema"),
    (zstandard.ZstdCompressor().compress(json.dumps({"v": 2, "aircraft": AC, "batch_id": "b" * 10,
                                                     "streams": []}).encode()), "v"),
    (zstandard.ZstdCompressor().compress(json.dumps(
        {"v": 1, "aircraft": AC, "batch_id": "bad id with spaces", "streams": []}).encode()),
     "batch_id"),
    (batch_body(AC, {"orders": [2, 1]})[1], "increasing"),
    (batch_body(AC, {"Bad-Stream": [1]})[1], "stream"),
])
def test_malformed_batches_get_a_clear_400(app: tuple[TestClient, BatchStore], body: bytes,
                                           why: str) -> None:
    client, store = app
    status, ans = post(client, body)
    assert status == 400 and ans["error"] == "malformed" and why in str(ans["detail"]), ans
    assert count(store, records) == 0


def test_oversized_batches_get_413(app: tuple[TestClient, BatchStore]) -> None:
    client, _ = app
    big = zstandard.ZstdCompressor().compress(b"x" * 300_000)  # fine compressed, 300 KB raw
    status, ans = post(client, bytes(300_000))  # body over max_body_bytes
    assert (status, ans["error"]) == (413, "too_large")
    raw = json.dumps({"v": 1, "aircraft": AC, "batch_id": "bomb-0001",
                      "streams": [{"stream": "logs", "records": [
                          {"seq": 1, "created": 0, "payload": "y" * 2_000_000}]}]}).encode()
    for body in (zstandard.ZstdCompressor().compress(raw), zstd_stream(raw)):  # with/without size
        status, ans = post(client, body)
        assert (status, ans["error"]) == (413, "too_large"), ans
    assert len(big) < 200_000
    _, many = batch_body(AC, {"logs": list(range(1, 5002))})
    status, ans = post(client, many)
    assert (status, ans["error"]) == (413, "too_large") and "5001 records" in str(ans["detail"])


def test_plain_json_is_accepted_without_encoding(app: tuple[TestClient, BatchStore]) -> None:
    client, _ = app
    h = {k: v for k, v in H.items() if k != "Content-Encoding"}
    status, ans = post(client, batch_body(AC, {"orders": [1]}, compress=False)[1], headers=h)
    assert status == 200 and ans["applied"] == 1


def test_health(app: tuple[TestClient, BatchStore]) -> None:
    client, _ = app
    assert client.get("/v1/health").json()["status"] == "ok"
