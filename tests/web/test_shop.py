"""The onboard shop through the real apps, the real single writer and SQLite (issue 16, part 3).

Orders checked against the menu in force (unknown SKU, out of stock, too many: 422 in words, no
stock taken), number and total, stock taken in the order's own commit; the status machine
(journaled and queued for the ground on each change, cancellation restores stock); the crew's
routes behind the admin login; the passenger's status read; a menu bundle through the intake
replacing the menu in one commit (and a bad one changing nothing).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.avionics.chain import AvionicsChain
from appliance.content.menu import MenuActivator, MenuError, ensure_menu, parse_menu, replace_menu
from appliance.content.order_status import TRANSITIONS, OrderBook, next_state
from appliance.content.orders import Orders
from appliance.errors import BundleRefused, OrderStateError
from appliance.intake.bundle import METADATA, load_envelope, sign
from appliance.intake.hangar import build_bundle
from appliance.settings import AdminAuthSettings, AdminUser
from appliance.store.engine import make_engine
from appliance.store.journal import Journal
from appliance.store.migrate import upgrade
from appliance.store.writer import Writer
from appliance.web import admin, passenger
from appliance.web.admin.auth import AdminAuth, hash_password
from appliance.web.admin.shop import crew_html, shop_admin_router
from appliance.web.passenger.shop import shop_router
from firmware_bridge.labels import LabelTable
from tests.intake.helpers import KEYS, World

MENU = """
[[item]]
sku = "COFFEE"
name = {en = "Coffee", fr = "Café"}
price = 3.0
currency = "EUR"
stock = 5
[[item]]
sku = "SANDWICH"
name = "Ham sandwich"
price = 7.5
currency = "EUR"
stock = 2
allergens = ["gluten"]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rig:
    """A journal, the passenger app with the shop routes, the admin app with the crew routes."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "j.db"
        upgrade(make_engine(self.db), self.db)
        self.writer = Writer(make_engine(self.db))
        self.writer.start()
        reader = make_engine(self.db, readonly=True)
        self.writer.submit(lambda c: replace_menu(c, parse_menu(MENU.encode()), 1, "test")).result()
        utc = lambda: (1720249163.0, "avionics")  # noqa: E731
        self.orders = Orders(self.writer, reader, "F-TEST", utc)
        self.book = OrderBook(self.writer, reader, "F-TEST", utc)
        chain = AvionicsChain(LabelTable.default())
        self.app = passenger.create_app(chain, self.orders, routers=[shop_router(self.book)])
        self.auth = AdminAuth([AdminUser(name="cc", role="crew", password_hash=HASH)], None,
                              AdminAuthSettings())
        self.admin = admin.create_app(admin.AdminDeps(
            chain=chain, journal=Journal(self.writer, reader, "F-TEST"), auth=self.auth,
            status=lambda: {}, utc=utc, pages={"/crew": crew_html()},
            routers=[shop_admin_router(self.book)]))

    def sql(self, q: str) -> list[tuple[Any, ...]]:
        con = sqlite3.connect(self.db)
        try:
            return con.execute(q).fetchall()
        finally:
            con.close()

    def stock(self) -> dict[str, int]:
        return dict(self.sql("SELECT sku, stock FROM menu_items"))  # type: ignore[arg-type]


HASH = hash_password("crew-pass")


@pytest.fixture
def rig(tmp_path: Path):  # type: ignore[no-untyped-def]
    r = Rig(tmp_path)
    yield r
    r.auth.close()
    r.writer.stop()


def client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


def order(key: str, *items: tuple[str, int], seat: str = "12A") -> dict[str, Any]:
    return {"idempotency_key": key, "seat": seat,
            "items": [{"sku": s, "qty": q} for s, q in items]}


@pytest.mark.anyio
async def test_unknown_sku_is_refused_in_words_and_nothing_is_stored(rig: Rig) -> None:
    async with client(rig.app) as c:
        r = await c.post("/api/v1/orders", json=order("key-unknown-1", ("COFFEE", 1), ("CAVIAR", 1)))
    assert r.status_code == 422
    (d,) = r.json()["detail"]
    assert d["type"] == "not_on_menu" and d["loc"] == ["body", "items", 1, "sku"]
    assert "CAVIAR is not on the menu" in d["msg"]
    assert rig.sql("SELECT count(*) FROM orders") == [(0,)]
    assert rig.sql("SELECT count(*) FROM outbox WHERE stream='orders'") == [(0,)]
    assert rig.stock() == {"COFFEE": 5, "SANDWICH": 2}  # the coffee line took nothing


@pytest.mark.anyio
async def test_valid_order_has_number_and_total_and_takes_stock_once(rig: Rig) -> None:
    body = order("key-valid-01", ("COFFEE", 2), ("SANDWICH", 1))
    async with client(rig.app) as c:
        r1 = await c.post("/api/v1/orders", json=body)
        r2 = await c.post("/api/v1/orders", json=body)  # a retry: same order, stock taken once
        menu = (await c.get("/api/v1/menu")).json()
    assert r1.status_code == 201 and r2.status_code == 200
    a = r1.json()
    assert a["number"] == r2.json()["number"] == 1
    assert (a["total"], a["currency"], a["status"]) == (1350, "EUR", "placed")
    assert rig.stock() == {"COFFEE": 3, "SANDWICH": 1}
    assert {i["sku"]: i["stock"] for i in menu["items"]} == {"COFFEE": 3, "SANDWICH": 1}
    assert menu["items"][0]["names"]["fr"] == "Café" and menu["items"][1]["allergens"] == ["gluten"]
    (payload,) = rig.sql("SELECT payload FROM outbox WHERE stream='orders'")[0]
    sent = json.loads(payload)
    assert sent["total"] == 1350 and sent["items"][1] == {"sku": "SANDWICH", "qty": 1,
                                                          "price": 750, "name": "Ham sandwich"}


@pytest.mark.anyio
async def test_out_of_stock_and_too_many_are_refused_without_taking_stock(rig: Rig) -> None:
    async with client(rig.app) as c:
        out = await c.post("/api/v1/orders", json=order("key-stock-01", ("SANDWICH", 3)))
        many = await c.post("/api/v1/orders",
                            json=order("key-many-001", ("COFFEE", 6), ("COFFEE", 5)))
        bounds = await c.post("/api/v1/orders", json=order("key-bound-01", ("COFFEE", 11)))
        seat = await c.post("/api/v1/orders", json=order("key-seat-001", ("COFFEE", 1), seat=""))
        last = await c.post("/api/v1/orders", json=order("key-last-001", ("SANDWICH", 2)))
        gone = await c.post("/api/v1/orders", json=order("key-gone-001", ("SANDWICH", 1)))
    assert out.status_code == 422 and out.json()["detail"][0]["type"] == "out_of_stock"
    assert "Ham sandwich is out of stock (only 2 left)" in out.json()["detail"][0]["msg"]
    assert many.status_code == 422 and many.json()["detail"][0]["type"] == "too_many"
    assert bounds.status_code == 422 and bounds.json()["detail"][0]["loc"][-1] == "qty"
    assert seat.status_code == 422 and "seat" in seat.json()["detail"][0]["loc"]
    assert last.status_code == 201
    assert gone.status_code == 422 and "none left" in gone.json()["detail"][0]["msg"]
    assert rig.stock() == {"COFFEE": 5, "SANDWICH": 0}


async def _login(c: httpx.AsyncClient) -> dict[str, str]:
    r = await c.post("/admin/v1/login", json={"user": "cc", "password": "crew-pass"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.mark.anyio
async def test_crew_moves_orders_on_journaled_and_queued_and_the_passenger_sees_it(rig: Rig) -> None:
    async with client(rig.app) as p, client(rig.admin) as a:
        n1 = (await p.post("/api/v1/orders", json=order("key-flow-001", ("COFFEE", 2)))).json()
        n2 = (await p.post("/api/v1/orders",
                           json=order("key-flow-002", ("SANDWICH", 2), seat="3C"))).json()
        assert (await a.get("/admin/v1/shop/orders")).status_code == 401
        assert (await a.get("/crew")).status_code == 200
        h = await _login(a)
        view = (await a.get("/admin/v1/shop/orders", headers=h)).json()
        assert list(view["seats"]) == ["3C", "12A"] and view["open"] == 2
        url = f"/admin/v1/shop/orders/{n1['number']}/status"
        seen = []
        for s in ("preparing", "delivered"):
            assert (await a.post(url, json={"status": s}, headers=h)).status_code == 200
            seen.append((await p.get(f"/api/v1/orders/{n1['number']}",
                                     params={"key": "key-flow-001"})).json()["status"])
        again = await a.post(url, json={"status": "cancelled"}, headers=h)
        skip = await a.post(f"/admin/v1/shop/orders/{n2['number']}/status",
                            json={"status": "delivered"}, headers=h)
        cancel = await a.post(f"/admin/v1/shop/orders/{n2['number']}/status",
                              json={"status": "cancelled"}, headers=h)
        stranger = await p.get(f"/api/v1/orders/{n1['number']}", params={"key": "key-flow-002"})
        missing = await a.post("/admin/v1/shop/orders/99/status", json={"status": "preparing"},
                               headers=h)
        card = await a.post(url, json={"status": "paid"}, headers=h)
    assert seen == ["preparing", "delivered"]
    assert again.status_code == 409 and "delivered cannot become cancelled" in again.json()["detail"]
    assert skip.status_code == 409 and cancel.status_code == 200
    assert stranger.status_code == 404 and missing.status_code == 404 and card.status_code == 422
    assert rig.stock() == {"COFFEE": 3, "SANDWICH": 2}  # the cancelled sandwiches are back
    rows = rig.sql("SELECT json_extract(data, '$.status'), json_extract(data, '$.by') "
                   "FROM journal WHERE kind='order' ORDER BY id")
    assert rows == [("preparing", "cc"), ("delivered", "cc"), ("cancelled", "cc")]
    assert rig.sql("SELECT count(*) FROM outbox WHERE stream='orders'") == [(2,)]
    queued = [json.loads(p)["data"]["status"] for (p,) in
              rig.sql("SELECT payload FROM outbox WHERE stream='order_status' ORDER BY seq")]
    assert queued == ["preparing", "delivered", "cancelled"]
    audited = rig.sql("SELECT count(*) FROM journal WHERE kind='admin'")[0][0]
    assert audited >= 5  # login + every status request, as every admin action


@given(st.lists(st.sampled_from(["placed", "preparing", "delivered", "cancelled", "paid"]),
                max_size=8))
@settings(max_examples=200, deadline=None)
def test_status_machine_property(requests: list[str]) -> None:
    """Any sequence of requests: final states absorb, delivery only after preparing."""
    state, path = "placed", ["placed"]
    for want in requests:
        try:
            state = next_state(state, want)
            path.append(state)
        except OrderStateError:
            assert want not in TRANSITIONS[state]
    assert all(b in TRANSITIONS[a] for a, b in itertools.pairwise(path))
    assert "delivered" not in path or path[path.index("delivered") - 1] == "preparing"
    assert path.count("delivered") + path.count("cancelled") <= 1


def test_menu_documents_are_checked() -> None:
    for bad, why in [(MENU.replace('"EUR"\nstock = 2', '"USD"\nstock = 2'), "same currency"),
                     (MENU.replace("3.0", "3.005"), "two decimals"),
                     (MENU.replace("SANDWICH", "COFFEE"), "twice"),
                     (MENU.replace('name = "Ham sandwich"', 'name = {fr = "Jambon"}'), "English"),
                     (MENU.replace("stock = 5", "stock = -1"), "stock")]:
        with pytest.raises(MenuError, match=why):
            parse_menu(bad.encode())
    items = parse_menu(json.dumps({"items": [{"sku": "TEA", "name": "Tea", "price": 2,
                                              "currency": "GBP", "stock": 4}]}).encode(), "m.json")
    assert items[0].price == 200 and items[0].name == {"en": "Tea"}


def _menu_bundle(tmp: Path, version: int, text: str, suffix: str = ".toml", tag: str = "") -> Path:
    src = tmp / f"menu-{version}{suffix}"
    src.write_text(text)
    out = tmp / f"menu-{version}.bundle"
    build_bundle("menu", f"menu-v{version}{tag}", version, [src], out)
    env = load_envelope(out / METADATA)
    for k in KEYS[:2]:  # the content keys sign menus (threshold 2)
        env = sign(env, k)
    (out / METADATA).write_bytes(env.to_json())
    return out


def test_a_menu_bundle_through_the_intake_replaces_the_menu_in_one_commit(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.service.activators["menu"] = MenuActivator(w.writer)
    con = sqlite3.connect(tmp_path / "journal.db")
    try:
        w.writer.submit(ensure_menu).result()
        before = dict(con.execute("SELECT sku, price FROM menu_items"))
        assert before["COFFEE"] == 300
        new = MENU.replace("3.0", "3.4").replace("7.5", "8.9")
        assert asyncio.run(w.push(_menu_bundle(tmp_path, 1, new)))["state"] == "active"
        after = dict(con.execute("SELECT sku, price FROM menu_items"))
        assert after == {"COFFEE": 340, "SANDWICH": 890}  # the old items are gone with it
        state = con.execute("SELECT value FROM state WHERE key='menu.version'").fetchone()[0]
        assert json.loads(state) == {"version": 1, "name": "menu-v1"}
        # A menu that does not parse is refused at activation and changes nothing.
        bad = _menu_bundle(tmp_path, 2, MENU.replace('"EUR"\nstock = 2', '"USD"\nstock = 2'))
        with pytest.raises(BundleRefused, match="same currency"):
            asyncio.run(w.push(bad))
        assert dict(con.execute("SELECT sku, price FROM menu_items")) == after
        # Another menu signed with a version already installed is refused before a byte is sent.
        (tmp_path / "again").mkdir()
        with pytest.raises(BundleRefused, match="replay"):
            asyncio.run(w.push(_menu_bundle(tmp_path / "again", 1, new, tag="-again")))
        assert w.service.installed()["menu"]["version"] == 1
    finally:
        con.close()
        w.close()


def test_the_packaged_menu_is_only_the_first_default(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    upgrade(make_engine(db), db)
    w = Writer(make_engine(db))
    w.start()
    try:
        assert w.submit(ensure_menu).result() is True
        con = sqlite3.connect(db)
        assert con.execute("SELECT count(*) FROM menu_items WHERE stock IS NOT NULL").fetchone() \
            == (0,)  # the placeholder menu counts no stock: it never runs out
        con.close()
        w.submit(lambda c: replace_menu(c, parse_menu(MENU.encode()), 4, "m4")).result()
        assert w.submit(ensure_menu).result() is False
        con = sqlite3.connect(db)
        assert sorted(r[0] for r in con.execute("SELECT sku FROM menu_items")) == \
            ["COFFEE", "SANDWICH"]
        con.close()
    finally:
        w.stop()


def test_a_menu_bundle_follows_the_mode_policy_as_content_does(tmp_path: Path) -> None:
    from appliance.errors import PolicyError
    from appliance.modes.policy import Mode

    w = World(tmp_path, mode=Mode.FLIGHT)
    w.service.activators["menu"] = MenuActivator(w.writer)
    try:
        with pytest.raises(PolicyError, match="not allowed in FLIGHT"):
            asyncio.run(w.push(_menu_bundle(tmp_path, 1, MENU)))
        (tmp_path / "u").mkdir()
        unsigned = _menu_bundle(tmp_path / "u", 1, MENU)
        w.mode = Mode.GROUND
        env = load_envelope(unsigned / METADATA)
        (unsigned / METADATA).write_bytes(sign(env.model_copy(update={"signatures": []}),
                                               KEYS[3]).to_json())  # a key nobody pinned
        with pytest.raises(BundleRefused, match="unknown key"):
            asyncio.run(w.push(unsigned))
    finally:
        w.close()


def test_every_string_of_the_shop_script_is_in_every_language() -> None:
    import re
    from importlib import resources

    from appliance.web.passenger.i18n import PortalLanguages

    js = resources.files("appliance.web.passenger").joinpath("assets", "shop.js").read_text()
    used = set(re.findall(r"\bt\(\"([a-z_]+\.[A-Za-z_.]+)\"", js))
    built = {f"shop.status.{s}" for s in TRANSITIONS}
    built |= {f"shop.err.{c}" for c in ("not_on_menu", "out_of_stock", "too_many")}
    assert "`shop.status.${o.status}`" in js and "`shop.err.${d.type}`" in js
    assert len(used) > 10
    for lang, cat in PortalLanguages().catalogs.items():
        assert sorted((used | built) - set(cat)) == [], lang
    assert "card number" not in js.lower() and "cvv" not in js.lower()


def test_the_hangar_builds_a_menu_bundle_from_toml_or_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from appliance.intake.bundlefile import open_bundle
    from appliance.intake.hangar_cli import main

    src = tmp_path / "menu.json"
    src.write_text(json.dumps({"item": [{"sku": "TEA", "name": "Tea", "price": 2.5,
                                         "currency": "EUR", "stock": 3}]}))
    out = tmp_path / "m.bundle"
    assert main(["build", "--kind", "menu", "--name", "menu-1", "--version", "1",
                 str(src), "-o", str(out)]) == 0
    meta = load_envelope(open_bundle(out).metadata).meta()
    assert meta.kind == "menu" and list(meta.files) == ["menu.json"]
    bad = tmp_path / "menu.toml"
    bad.write_text("[[item]\nsku = ")
    assert main(["build", "--kind", "menu", "--name", "menu-2", "--version", "2",
                 str(bad), "-o", str(tmp_path / "b.bundle")]) != 0
    assert "menu.toml" in capsys.readouterr().err
