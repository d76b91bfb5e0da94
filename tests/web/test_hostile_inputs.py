"""Issue 13 at the web edge, through the real apps: error bodies, login throttling, order limits.

The hostile tests (tests/hostile) replay each attack on the real service; these check the same
rules cheaply, with a real writer and journal but no subprocess.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from appliance.avionics.chain import AvionicsChain
from appliance.content.orders import Orders
from appliance.daemon.bite import orders_bite
from appliance.settings import AdminAuthSettings, AdminUser
from appliance.store.engine import make_engine
from appliance.store.journal import Journal
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import admin, passenger
from appliance.web.admin.auth import AdminAuth
from appliance.web.validation import MAX_ERROR_BYTES, MAX_ERRORS, BadJSON, strict_json
from firmware_bridge.labels import LabelTable

PASSWORD = "correct horse"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Writer, Any, Path]]:
    db = tmp_path / "j.db"
    upgrade(make_engine(db), db)
    w = Writer(make_engine(db))
    w.start()
    yield w, make_engine(db, readonly=True), db
    w.stop()


def client(app: Any, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 1234)),
                             base_url="http://t")


def order(key: str, seat: str = "12A", sku: str = "COFFEE", qty: Any = 1) -> dict[str, Any]:
    return {"idempotency_key": key, "seat": seat, "items": [{"sku": sku, "qty": qty}]}


# -- error bodies ----------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_422_never_echoes_and_never_500s(store: tuple[Writer, Any, Path]) -> None:
    w, reader, _ = store
    app = passenger.create_app(AvionicsChain(LabelTable.default()),
                               Orders(w, reader, "F-T", lambda: (0.0, "local")))
    big = "A" * 100_000
    bodies = [
        json.dumps(order("key-nan-0001")).replace('"qty": 1', '"qty": NaN'),
        json.dumps({**order("key-inf-0001"), "tip": 1}).replace('"tip": 1', '"tip": Infinity'),
        json.dumps({**order("key-big-0001"), "seat": big}),
        json.dumps({**order("key-many-001"), "items": [{"sku": big, "qty": -1}] * 20}),
        '{"idempotency_key": "key-sur-0001", "seat": "\\ud800", "items": []}',
        '{"\\udfff": 1}',
        "{not json",
    ]
    async with client(app) as c:
        for body in bodies:
            r = await c.post("/api/v1/orders", content=body.encode(),
                             headers={"content-type": "application/json"})
            assert r.status_code == 422, (body[:60], r.status_code)
            assert len(r.content) <= MAX_ERROR_BYTES and b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" \
                not in r.content, (body[:60], r.content[:200])
            detail = r.json()["detail"]
            assert 1 <= len(detail) <= MAX_ERRORS
            assert all(set(d) == {"loc", "msg", "type"} for d in detail), detail


def test_strict_json() -> None:
    assert strict_json(b'{"a": ["\\ud83d\\ude00", 1.5]}') == {"a": ["\U0001F600", 1.5]}
    for bad in (b"NaN", b'{"a": -Infinity}', b'["\\ud800"]', b'{"\\udc00": 1}', b'"\xed\xa0\x80"',
                b"{", b"\xff", b"[" * 100_000):
        with pytest.raises(BadJSON):
            strict_json(bad)


# -- orders ----------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_orders_menu_rate_limit_and_bound(store: tuple[Writer, Any, Path]) -> None:
    w, reader, db = store
    orders = Orders(w, reader, "F-T", lambda: (0.0, "local"), max_queued=4)
    limits = passenger.OrderLimits.per_minute(6, 2, 6, 2)
    app = passenger.create_app(AvionicsChain(LabelTable.default()), orders, order_limits=limits)
    async with client(app, "10.0.0.2") as c, client(app, "10.0.0.3") as c3, \
            client(app, "10.0.0.4") as c4, client(app, "10.0.0.5") as c5:
        r = await c.post("/api/v1/orders", json=order("sku-00001", sku="CAVIAR"))
        assert r.status_code == 422 and "CAVIAR" in r.text and "menu" in r.text
        assert r.json()["detail"][0]["loc"] == ["body", "items", 0, "sku"]
        assert (await c.post("/api/v1/orders", json=order("rate-0001", seat="1A"))).status_code \
            == 201
        r = await c.post("/api/v1/orders", json=order("rate-0002", seat="2A"))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # the address had 2
        assert (await c3.post("/api/v1/orders", json=order("seat-0001", seat="1A"))).status_code \
            == 201
        r = await c3.post("/api/v1/orders", json=order("seat-0002", seat="1A"))
        assert r.status_code == 429  # seat 1A had its 2
        for i in range(2):
            assert (await c4.post("/api/v1/orders", json=order(f"fill-{i:04d}", seat=f"{3 + i}B"))
                    ).status_code == 201, i
        assert orders.queued == 4
        r = await c5.post("/api/v1/orders", json=order("full-0001", seat="9C"))
        assert r.status_code == 503 and "bound" in r.json()["detail"]
        # A retry of a stored order is still answered at the bound.
        assert (await c5.post("/api/v1/orders", json=order("fill-0000", seat="3B"))).status_code \
            == 200
    assert orders.refused_full == 1 and limits.limited == 2
    assert orders_bite(orders.queued, 4, orders.refused_full, limits.limited)["state"] == "red"
    # The ground takes two: the next count lets orders in again, and BITE says so.
    con = sqlite3.connect(db)
    con.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 2)")
    con.commit()
    assert await orders.refresh() == 2
    assert orders_bite(orders.queued, 4, 1, 2)["state"] == "green"
    await orders.place("after-0001", "9C", [{"sku": "TEA", "qty": 1}])
    assert orders.queued == 3


# -- admin login -----------------------------------------------------------------------------------

def admin_app(tmp: Path, w: Writer, reader: Any, **cfg: Any) -> tuple[Any, AdminAuth]:
    users = [AdminUser(name="crew1", role="crew", password_hash=CHEAP.hash(PASSWORD))]
    auth = AdminAuth(users, "svc-token-0123", AdminAuthSettings(**cfg))
    chain = AvionicsChain(LabelTable.default())
    app = admin.create_app(admin.AdminDeps(chain=chain, journal=Journal(w, reader, "F-T"),
                                           auth=auth, status=dict, utc=lambda: (0.0, "local")))
    return app, auth


def login(user: str = "crew1", password: str = "wrong") -> dict[str, str]:
    return {"user": user, "password": password}


@pytest.mark.anyio
async def test_parallel_logins_count_as_they_start(tmp_path: Path,
                                                   store: tuple[Writer, Any, Path]) -> None:
    app, _ = admin_app(tmp_path, store[0], store[1])
    async with client(app, "10.1.0.1") as c:
        rs = await asyncio.gather(*[c.post("/admin/v1/login", json=login(password=f"w{i}"))
                                    for i in range(30)])
        codes = [r.status_code for r in rs]
        assert codes.count(401) <= 5 and codes.count(429) >= 25, codes
        assert all(int(r.headers["retry-after"]) >= 1 for r in rs if r.status_code == 429)
        r = await c.post("/admin/v1/login", json=login(password=PASSWORD))
        assert r.status_code == 429  # the address is locked, right password or not
    async with client(app, "10.1.0.2") as c:
        assert (await c.post("/admin/v1/login", json=login(password=PASSWORD))).status_code == 200


@pytest.mark.anyio
async def test_account_locks_whatever_the_address(tmp_path: Path,
                                                  store: tuple[Writer, Any, Path]) -> None:
    app, _ = admin_app(tmp_path, store[0], store[1], account_max_failures=6)
    codes = []
    for a in range(4):
        async with client(app, f"10.2.0.{a}") as c:
            for _ in range(2):
                codes.append((await c.post("/admin/v1/login", json=login())).status_code)
    assert codes == [401] * 6 + [429] * 2, codes
    async with client(app, "10.2.0.99") as c:
        r = await c.post("/admin/v1/login", json=login(password=PASSWORD))
        assert r.status_code == 429 and "account" in r.json()["detail"]
        # Unknown user names are not accounts: only their address counts.
        assert (await c.post("/admin/v1/login", json=login(user="nobody"))).status_code == 401
        # The service token still works while the account is locked.
        r = await c.get("/admin/v1/whoami", headers={"Authorization": "Bearer svc-token-0123"})
        assert r.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("body", [
    b'{"user": "\\ud800", "password": "x"}', b'{"user": "crew1", "password": NaN}',
    b'{"user": "crew1"}', b'{"user": "crew1", "password": "x", "extra": 1}', b"[]", b"{",
    b'{"user": "crew1", "password": "' + b"x" * 5000 + b'"}',
])
async def test_every_bad_login_is_a_4xx_that_counts(tmp_path: Path, store: tuple[Writer, Any, Path],
                                                   body: bytes) -> None:
    app, _ = admin_app(tmp_path, store[0], store[1], max_failures=3)
    async with client(app, "10.3.0.1") as c:
        for _ in range(3):
            r = await c.post("/admin/v1/login", content=body,
                             headers={"content-type": "application/json"})
            assert r.status_code in (413, 422), r.status_code
            assert len(r.content) <= MAX_ERROR_BYTES and b"xxxxxxxx" not in r.content
        r = await c.post("/admin/v1/login", json=login(password=PASSWORD))
        assert r.status_code == 429


@pytest.mark.anyio
async def test_password_checks_are_bounded(tmp_path: Path, store: tuple[Writer, Any, Path]) -> None:
    app, auth = admin_app(tmp_path, store[0], store[1], hash_concurrency=1, hash_queue=1)
    gate = threading.Event()
    running: list[int] = []
    real = auth.verify_password

    def slow(user: str, password: str) -> Any:
        running.append(1)
        gate.wait(10)
        return real(user, password)

    auth.verify_password = slow  # type: ignore[method-assign]

    async def one(i: int) -> httpx.Response:
        async with client(app, f"10.4.0.{i}") as c:
            return await c.post("/admin/v1/login", json=login(password=f"w{i}"))

    tasks = [asyncio.ensure_future(one(i)) for i in range(6)]
    while len(running) < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    assert len(running) == 1  # one slot: the second waits, the rest are refused
    gate.set()
    rs = await asyncio.gather(*tasks)
    codes = sorted(r.status_code for r in rs)
    assert codes == [401, 401, 503, 503, 503, 503], codes
    assert all(r.headers["retry-after"].isdigit() for r in rs if r.status_code == 503)
    assert auth.busy_refusals == 4
    # A refused-while-busy login did not count: those addresses can log in.
    async with client(app, "10.4.0.5") as c:
        assert (await c.post("/admin/v1/login", json=login(password=PASSWORD))).status_code == 200
